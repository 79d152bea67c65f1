"""mount(2), umount2(2), pivot_root(2)."""

from __future__ import annotations

from corral.linux import ffi
from corral.linux._libc import call, libc, syscall

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

libc.mount.argtypes = [ffi.c_char_p, ffi.c_char_p, ffi.c_char_p, ffi.c_ulong,
                       ffi.c_char_p]
libc.umount2.argtypes = [ffi.c_char_p, ffi.c_int]


def _b(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    call("mount", libc.mount, _b(source), _b(target), _b(fstype), flags, _b(data), path=target)


def umount2(target: str, flags: int = 0) -> None:
    call("umount2", libc.umount2, _b(target), flags, path=target)


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", _b(new_root), _b(put_old), path=new_root)


# -- the new mount API: detached trees and idmapped mounts (Linux 5.12+) ---------------------

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x100000


class _MountAttr(ffi.Structure):
    _fields_ = (("attr_set", ffi.c_uint64), ("attr_clr", ffi.c_uint64),
                ("propagation", ffi.c_uint64), ("userns_fd", ffi.c_uint64))


def open_tree_idmapped(path: str, userns_fd: int) -> int:
    """A detached copy of the mount tree at ``path`` whose file owners are seen
    through ``userns_fd``'s id map (on-disk id N appears as the host id N maps to)."""
    fd = open_tree_clone(path)
    try:
        set_idmap(fd, userns_fd)
    except BaseException:
        import os

        os.close(fd)
        raise
    return fd


def set_idmap(tree_fd: int, userns_fd: int) -> None:
    """Make a detached tree (from open_tree, never attached yet) idmapped through
    ``userns_fd``; every fd of the tree, in any process, sees the change."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    syscall("mount_setattr", tree_fd, b"", AT_EMPTY_PATH, ffi.byref(attr),
            ffi.sizeof(attr))


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at ``path`` (a bind mount not yet attached)."""
    return syscall("open_tree", AT_FDCWD, _b(path), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
                   path=path)


def move_mount(tree_fd: int, target: str) -> None:
    """Attach a detached tree (from open_tree) at ``target``."""
    syscall("move_mount", tree_fd, b"", AT_FDCWD, _b(target), MOVE_MOUNT_F_EMPTY_PATH,
            path=target)
