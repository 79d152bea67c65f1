"""Attach a compiled seccomp-BPF program: the start path's side of linux/seccomp.py.

Compiling (linux/seccomp.py) imports dataclasses and tables worth ~20 ms;
attaching needs only ctypes, so a container's start and ``exec`` load this
module and a cached program (runtime/filters.py).
"""

from __future__ import annotations

import os

from corral.linux import ffi
from corral.linux._libc import libc

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_NR = {"x86_64": 317, "aarch64": 277, "riscv64": 277}


class _SockFprog(ffi.Structure):
    _fields_ = (("len", ffi.c_ushort), ("filter", ffi.c_void_p))


def install(program: bytes, *, listener: bool = False) -> int:
    """Filter the calling thread (and all it forks and execs) with ``program``.

    Without no_new_privs the kernel wants CAP_SYS_ADMIN in the caller's user
    namespace, which a container's init and Corral's exec child hold here.
    With ``listener``, the program's SECCOMP_RET_USER_NOTIF calls wait on the
    fd returned (close-on-exec; linux/seccomp_notify.py answers them); the
    kernel refuses (EBUSY) a second listener in one process's filters.
    Otherwise -1.
    """
    if not program or len(program) % 8:
        raise ValueError(f"bad seccomp program of {len(program)} bytes")
    buf = ffi.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ffi.addressof(buf))
    ret = libc.syscall(ffi.c_long(_SECCOMP_NR[os.uname().machine]),
                       ffi.c_long(SECCOMP_SET_MODE_FILTER),
                       ffi.c_long(SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0),
                       ffi.byref(prog))
    if ret == -1:
        err = ffi.get_errno()
        raise OSError(err, f"seccomp(SET_MODE_FILTER): {os.strerror(err)}")
    return int(ret) if listener else -1
