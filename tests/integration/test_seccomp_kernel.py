"""The default seccomp profile on the real kernel, in a forked child, no container.

The child sets no_new_privs, installs the filter, tries each call and
writes what it saw to a pipe as JSON; the parent asserts.  Arguments are
chosen so that every call fails harmlessly (EFAULT, EINVAL, EBADF...) were
the filter missing, so a broken filter shows up as a wrong errno, never as
a changed host.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import threading
import time

import pytest

from corral.linux import seccomp
from corral.runtime.seccomp_profile import build, default_profile

CLONE_FS = 0x0000_0200
CLONE_NEWUTS = 0x0400_0000
CLONE_NEWUSER = 0x1000_0000
SIGCHLD = 17
PR_SET_NO_NEW_PRIVS = 38
BAD_PTR = 1  # never mapped: a pointer argument the kernel would answer EFAULT for

libc = ctypes.CDLL(None, use_errno=True)


def _sys(name: str, *args: int) -> tuple[int, int]:
    """syscall(name, *args) -> (return value, errno or 0)."""
    nr = seccomp.syscall_nr(name)
    assert nr is not None, name
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return ret, (ctypes.get_errno() if ret == -1 else 0)


# Denied calls, with arguments that fail harmlessly when not filtered.
DENIED_CALLS: dict[str, tuple[int, ...]] = {
    "keyctl": (0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring, no create
    "add_key": (BAD_PTR, BAD_PTR, BAD_PTR, 0, -3),
    "request_key": (BAD_PTR, BAD_PTR, BAD_PTR, 0),
    "bpf": (-1, BAD_PTR, 0),
    "perf_event_open": (BAD_PTR, 0, -1, -1, 0),
    "userfaultfd": (-1,),  # unknown flags
    "kexec_load": (0, 0, BAD_PTR, 0x00FF_0000),  # unknown KEXEC_ARCH
    "kexec_file_load": (-1, -1, 0, BAD_PTR, -1),
    "init_module": (BAD_PTR, 0, BAD_PTR),
    "finit_module": (-1, BAD_PTR, 0),
    "delete_module": (BAD_PTR, 0),
    "open_by_handle_at": (-1, BAD_PTR, 0),
    "iopl": (4,),  # level > 3 is EINVAL
    "ioperm": (0x10000, 1, 0),  # beyond the port range
    "swapon": (BAD_PTR, 0),
    "swapoff": (BAD_PTR,),
    "settimeofday": (BAD_PTR, BAD_PTR),
    "clock_settime": (1, BAD_PTR),  # CLOCK_MONOTONIC cannot be set anyway
    "clock_adjtime": (1, BAD_PTR),
    "adjtimex": (BAD_PTR,),
    "acct": (BAD_PTR,),
    "quotactl": (0, BAD_PTR, 0, BAD_PTR),
    "syslog": (10, 0, 0),  # SYSLOG_ACTION_SIZE_BUFFER only reads
}


def _child(w: int) -> None:
    out: dict[str, object] = {}
    ns = libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), ctypes.c_ulong(0),
                    ctypes.c_ulong(0), ctypes.c_ulong(0))
    assert ns == 0
    t0 = time.perf_counter()
    seccomp.install(build(default_profile()))
    out["install_ms"] = (time.perf_counter() - t0) * 1000
    with open("/proc/self/status") as f:
        out["mode"] = next(line.split()[1] for line in f if line.startswith("Seccomp:"))

    out["denied"] = {name: _sys(name, *args) for name, args in DENIED_CALLS.items()}
    # CLONE_FS with CLONE_NEWUSER is EINVAL in the kernel, so an unfiltered
    # clone cannot start a stray copy of this process.
    out["clone_newuser"] = _sys("clone", CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0)
    ctypes.set_errno(0)
    out["unshare_newuser"] = (libc.unshare(CLONE_NEWUSER), ctypes.get_errno())
    ctypes.set_errno(0)
    out["unshare_newuts"] = (libc.unshare(CLONE_NEWUTS), ctypes.get_errno())
    out["clone3"] = _sys("clone3", 0, 0)  # size 0 would be EINVAL unfiltered
    out["personality_query"] = _sys("personality", 0xFFFF_FFFF)
    out["personality_1234"] = _sys("personality", 0x1234)
    out["personality_linux"] = _sys("personality", 0)
    out["vsock"] = _sys("socket", 40, socket.SOCK_STREAM, 0)
    ctypes.set_errno(0)
    x32 = libc.syscall(ctypes.c_long(seccomp.X32_SYSCALL_BIT | 39))  # x32 getpid
    out["x32_getpid"] = (x32, ctypes.get_errno() if x32 == -1 else 0)

    # Ordinary work still goes through.
    out["getpid"] = _sys("getpid")[0] == os.getpid()
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    out["read"] = len(os.read(fd, 100)) > 0
    os.close(fd)
    r, w2 = os.pipe()
    out["write"] = os.write(w2, b"x") == 1 and os.read(r, 1) == b"x"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.close()
    out["socket_inet"] = True
    pid = os.fork()  # clone without CLONE_NEWUSER
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    # pthread_create tries clone3 first; ENOSYS must send it back to clone.
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(threading.get_native_id()))
    t.start()
    t.join()
    out["thread"] = bool(seen) and seen[0] != threading.get_native_id()
    os.write(w, json.dumps(out).encode())


def test_default_profile_on_the_kernel() -> None:
    if os.uname().machine not in seccomp.ARCHES:
        pytest.skip("no seccomp syscall table for this machine")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            _child(w)
        except BaseException as e:  # noqa: BLE001 -- report anything to the parent
            os.write(w, json.dumps({"error": repr(e)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    status = os.waitpid(pid, 0)[1]
    assert os.WIFEXITED(status), f"child died: {status:#x}"  # e.g. killed by the filter
    got = json.loads(b"".join(chunks))
    assert "error" not in got, got.get("error")
    assert os.waitstatus_to_exitcode(status) == 0

    assert got["mode"] == "2"  # SECCOMP_MODE_FILTER
    for name, (ret, err) in got["denied"].items():
        assert (ret, err) == (-1, errno.EPERM), f"{name}: {ret}, {errno.errorcode.get(err)}"
    assert got["clone_newuser"] == [-1, errno.EPERM]
    assert got["unshare_newuser"] == [-1, errno.EPERM]
    assert got["unshare_newuts"] == [0, 0]
    assert got["clone3"] == [-1, errno.ENOSYS]
    assert got["personality_query"][1] == 0
    assert got["personality_1234"] == [-1, errno.EPERM]
    assert got["personality_linux"][1] == 0
    assert got["vsock"] == [-1, errno.EPERM]
    assert got["x32_getpid"] == [-1, errno.ENOSYS]
    for ok in ("getpid", "read", "write", "socket_inet", "thread"):
        assert got[ok] is True, ok
    assert got["fork"] == 7
    assert got["install_ms"] < 100
