"""Attach a compiled seccomp-BPF program: the start path's side of linux/seccomp.py.

Compiling (linux/seccomp.py) imports dataclasses and tables worth ~20 ms;
attaching needs only ctypes, so a container's start and ``exec`` load this
module and a cached program (runtime/filters.py).
"""

from __future__ import annotations

import ctypes
import os

from corral.linux._libc import libc

SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_NR = {"x86_64": 317, "aarch64": 277, "riscv64": 277}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(program: bytes) -> None:
    """Filter the calling thread (and all it forks and execs) with ``program``.

    Without no_new_privs the kernel wants CAP_SYS_ADMIN in the caller's user
    namespace, which a container's init and Corral's exec child hold here.
    """
    if not program or len(program) % 8:
        raise ValueError(f"bad seccomp program of {len(program)} bytes")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    ret = libc.syscall(ctypes.c_long(_SECCOMP_NR[os.uname().machine]),
                       ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                       ctypes.byref(prog))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SET_MODE_FILTER): {os.strerror(err)}")
