"""Filesystem facts the kernel gives only through statfs(2)."""

from __future__ import annotations

from corral.linux import ffi
from corral.linux._libc import call, libc


class _Statfs(ffi.Structure):
    # struct statfs on 64-bit Linux: f_type first, then 10 more words and spare.
    _fields_ = (("f_type", ffi.c_long), ("_rest", ffi.c_long * 15))


def statfs_type(path: str) -> int:
    """The filesystem's magic number (``f_type``) for ``path``."""
    buf = _Statfs()
    call("statfs", libc.statfs, path.encode(), ffi.byref(buf), path=path)
    return buf.f_type & 0xFFFFFFFF


def syncfs(fd: int) -> None:
    """Write the dirty data of the filesystem holding ``fd`` (syncfs(2))."""
    call("syncfs", libc.syncfs, ffi.c_int(fd))
