"""Filesystem facts the kernel gives only through statfs(2), and openat2(2)."""

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


RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_OPENAT2 = 437  # the same number on every architecture


class _OpenHow(ffi.Structure):
    _fields_ = (("flags", ffi.c_uint64), ("mode", ffi.c_uint64), ("resolve", ffi.c_uint64))


def open_beneath(dirfd: int, path: str, flags: int) -> int:
    """``path`` under ``dirfd`` with no symlink followed and no way out of it
    (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): for reading a tree a
    container controls as host root."""
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    return call("openat2", libc.syscall, ffi.c_long(_OPENAT2), ffi.c_int(dirfd), path.encode(),
                ffi.byref(how), ffi.c_size_t(ffi.sizeof(how)), path=path)
