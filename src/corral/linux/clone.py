"""fork(2) by clone3: the child born in a cgroup2 directory (CLONE_INTO_CGROUP),
and in new namespaces.

Moving a process into a cgroup by writing cgroup.procs takes the kernel's
``cgroup_threadgroup_rwsem`` for writing, and when no writer ran in the last
RCU grace period that first waits for one (``rcu_sync_enter``: 5-15 ms here,
a third of a container's start).  A child cloned straight into its cgroup
takes the same lock only for reading: no wait (Linux >= 5.7).  crun does the
same.  (On cgroup v1, writing "0" to ``tasks`` moves only the calling thread
and skips the lock as well: see ``runtime.cgjoin``.)

Python's own ``os.fork`` is fork(2) wrapped in ``PyOS_BeforeFork`` /
``PyOS_AfterFork_*``; this is the same with clone3 in the middle.  The call
goes through a ``PyDLL`` so the GIL stays held across it, as in ``os.fork``.
The child is as after ``os.fork`` except that glibc's cached thread id is
the parent's: it must not use pthread_kill/raise (nothing of ours does: it
sets up namespaces, then execs or forks with glibc's fork, which resets it).
"""

from __future__ import annotations

import os

from corral.linux import ffi
from corral.linux._libc import SYSCALL_NR
from corral.linux.ns import CLONE3_UNSUPPORTED, CLONE_INTO_CGROUP, SIGCHLD

UNSUPPORTED = CLONE3_UNSUPPORTED  # errnos of a clone3 that cannot: fall back


class _CloneArgs(ffi.Structure):
    _fields_ = tuple((name, ffi.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup"))


_pylibc = ffi.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ffi.c_long
_api = ffi.pythonapi



def fork_into_cgroup(cgroup_dir_fd: int) -> int:
    """Like ``os.fork()``, the child starting in the cgroup2 directory of the fd."""
    return clone(0, cgroup_dir_fd)


def clone(flags: int, cgroup_dir_fd: int = -1) -> int:
    """Like ``os.fork()``, with clone(2) ``flags`` (new namespaces), the child
    starting in the cgroup2 directory of ``cgroup_dir_fd`` unless it is -1."""
    if cgroup_dir_fd >= 0:
        flags |= CLONE_INTO_CGROUP
    args = _CloneArgs(flags=flags, exit_signal=SIGCHLD, cgroup=max(cgroup_dir_fd, 0))
    _api.PyOS_BeforeFork()
    pid = _pylibc.syscall(ffi.c_long(SYSCALL_NR["clone3"]), ffi.byref(args),
                          ffi.c_size_t(ffi.sizeof(args)))
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ffi.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return int(pid)
