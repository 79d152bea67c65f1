"""ctypes access to libc: one ``call`` helper that retries EINTR and names the op."""

from __future__ import annotations

import os

from corral.linux import ffi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

libc = ffi.CDLL(None, use_errno=True)

# Syscalls glibc 2.36 has no wrapper for.  asm-generic numbers (aarch64,
# riscv64) differ from x86_64's historical table for the older calls.
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "pidfd_getfd": 438, "mount_setattr": 442,
               "open_tree": 428, "move_mount": 429, "clone3": 435},
    "aarch64": {"pivot_root": 41, "pidfd_getfd": 438, "mount_setattr": 442,
                "open_tree": 428, "move_mount": 429, "clone3": 435},
    "riscv64": {"pivot_root": 41, "pidfd_getfd": 438, "mount_setattr": 442,
                "open_tree": 428, "move_mount": 429, "clone3": 435},
}
SYSCALL_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["aarch64"])


def call(name: str, fn: Any, *args: Any, path: str | None = None) -> int:
    """Call ``fn(*args)``; on -1 raise OSError naming ``name`` (and ``path``)."""
    while True:
        ret = fn(*args)
        if ret != -1:
            return int(ret)
        err = ffi.get_errno()
        if err == 4:  # EINTR
            continue
        what = f"{name}({path})" if path else name
        raise OSError(err, f"{what}: {os.strerror(err)}")


def syscall(name: str, *args: Any, path: str | None = None) -> int:
    return call(name, libc.syscall, SYSCALL_NR[name], *args, path=path)
