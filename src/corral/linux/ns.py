"""Namespaces: unshare(2), setns(2), sethostname(2), prctl(2) bits used at spawn."""

from __future__ import annotations

from corral.linux import ffi
from corral.linux._libc import call, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# /proc/<pid>/ns/<name> for each flag, in the order setns must join them
# (user first so the rest are entered with the new namespace's privileges).
NS_FILES = {
    CLONE_NEWUSER: "user",
    CLONE_NEWCGROUP: "cgroup",
    CLONE_NEWIPC: "ipc",
    CLONE_NEWUTS: "uts",
    CLONE_NEWNET: "net",
    CLONE_NEWPID: "pid",
    CLONE_NEWNS: "mnt",
}

CLONE_VM = 0x00000100
CLONE_INTO_CGROUP = 0x200000000  # clone3 only
SIGCHLD = 17  # a clone's exit signal, as fork's

# Kernels or seccomp profiles without clone3 (or without CLONE_INTO_CGROUP):
# the caller falls back to fork + cgroup.procs (linux.clone, linux.sysprog).
CLONE3_UNSUPPORTED = (38, 22, 7)  # ENOSYS, EINVAL, E2BIG

PR_SET_PDEATHSIG = 1
PR_GET_SECCOMP = 21
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

libc.sethostname.argtypes = [ffi.c_char_p, ffi.c_size_t]
libc.prctl.argtypes = [ffi.c_int, ffi.c_ulong, ffi.c_ulong, ffi.c_ulong,
                       ffi.c_ulong]


def unshare(flags: int) -> None:
    call("unshare", libc.unshare, flags)


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace(s) of ``fd``: a /proc/<pid>/ns file or a pidfd (several flags)."""
    call("setns", libc.setns, fd, nstype)


def sethostname(name: str) -> None:
    raw = name.encode()
    call("sethostname", libc.sethostname, raw, len(raw))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return call("prctl", libc.prctl, option, arg2, arg3, arg4, arg5)


_HOLDER_STACK = 16384

libc.clone.restype = ffi.c_int
libc.clone.argtypes = [ffi.c_void_p, ffi.c_void_p, ffi.c_int, ffi.c_void_p]


def make_userns(uid_base: int, gid_base: int, size: int, inside: int = 0) -> int:
    """A new user namespace mapping ids inside..inside+size-1 to the host's
    ``*_base``...; its fd (also used only as an id map for idmapped mounts).

    A holder process is cloned into the new namespace and this process
    (privileged in the parent namespace) writes its maps, as newuidmap does;
    the namespace lives on through the returned fd after the holder is gone.
    The holder shares this process's memory (CLONE_VM) and runs nothing but
    libc's pause() on a stack of its own until it is killed: no Python runs
    in it, and no page is copied for it, unlike a fork of the interpreter.
    """
    import _signal as signal
    import os

    stack = ffi.create_string_buffer(_HOLDER_STACK)
    top = (ffi.addressof(stack) + _HOLDER_STACK) & ~15
    # The holder shares our signal handlers' memory: with every signal blocked
    # (it inherits the mask) nothing but SIGKILL reaches it.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = call("clone", libc.clone, ffi.cast(libc.pause, ffi.c_void_p), top,
                   CLONE_VM | CLONE_NEWUSER | SIGCHLD, None)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        for name, base in (("uid_map", uid_base), ("gid_map", gid_base)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"{inside} {base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        del stack  # only now: the holder ran on it


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """Bring up ``lo`` in the caller's network namespace: a new one has it down,
    and a container with no network of its own still has a working loopback
    (as with runc, systemd-nspawn --private-network, Docker --network none)."""
    import _socket
    import fcntl

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        ifreq = bytearray(b"lo".ljust(40, b"\0"))  # struct ifreq: name[16], flags, ...
        fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq, True)
        flags = int.from_bytes(ifreq[16:18], "little") | IFF_UP
        ifreq[16:18] = flags.to_bytes(2, "little")
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, ifreq, True)
    finally:
        sock.close()
