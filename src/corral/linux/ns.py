"""Namespaces: unshare(2), setns(2), sethostname(2), prctl(2) bits used at spawn."""

from __future__ import annotations

import ctypes

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

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]


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


def make_userns(uid_base: int, gid_base: int, size: int, inside: int = 0) -> int:
    """A new user namespace mapping ids inside..inside+size-1 to the host's
    ``*_base``...; its fd (also used only as an id map for idmapped mounts).

    A helper child unshares it and this process (privileged in the parent
    namespace) writes the maps, as newuidmap does; the namespace lives on
    through the returned fd after the helper is gone.
    """
    import os

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            unshare(CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)  # hold the namespace until the parent has its fd
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(1, "unshare(CLONE_NEWUSER) failed")
        for name, base in (("uid_map", uid_base), ("gid_map", gid_base)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"{inside} {base} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)
