"""A child process born in a container's cgroups, without the kernel's attach wait.

Writing a PID to ``cgroup.procs`` takes ``cgroup_threadgroup_rwsem`` for
writing, which first waits for an RCU grace period when no writer ran
lately: 5-15 ms, once per start or exec.  Two ways around it, one per
cgroup version:

* cgroup v1: a single-threaded process writing "0" to ``tasks`` moves only
  itself, and the kernel skips the global lock for that case;
* cgroup v2: the child is cloned straight into its cgroup
  (``linux.clone.fork_into_cgroup``), which takes the lock only for reading.

Old kernels without clone3 fall back to fork + cgroup.procs.
"""

from __future__ import annotations

import os


class CgroupJoin:
    """The files of one set of cgroups (one per hierarchy), opened by the parent."""

    __slots__ = ("tasks", "v2_dir", "v2_procs", "moved")

    def __init__(self, procs_files: list[str] | tuple[str, ...]) -> None:
        self.tasks: list[int] = []
        self.v2_dir = -1
        self.v2_procs = -1
        self.moved = False  # the child was forked into the v2 cgroup
        try:
            for procs in procs_files:
                cgroup = os.path.dirname(procs)
                try:
                    self.tasks.append(os.open(f"{cgroup}/tasks", os.O_WRONLY | os.O_CLOEXEC))
                except FileNotFoundError:  # cgroup2 has no tasks file
                    self.v2_dir = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    self.v2_procs = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def fork(self) -> int:
        """``os.fork()``; the child must call ``join`` before anything else."""
        if self.v2_dir >= 0:
            from corral.linux import clone

            try:
                pid = clone.fork_into_cgroup(self.v2_dir)
            except OSError as exc:
                if exc.errno not in clone.UNSUPPORTED:
                    raise
            else:
                self.moved = True
                return pid
        return os.fork()

    def clone(self, flags: int) -> int:
        """The container's init: clone3 with namespace ``flags``, born in the
        cgroup2 directory when there is one; it must call ``join`` first.
        Raises OSError (errno in ``linux.clone.UNSUPPORTED``) where clone3
        cannot do that."""
        from corral.linux import clone

        pid = clone.clone(flags, self.v2_dir)
        self.moved = self.v2_dir >= 0
        return pid

    def join(self) -> None:
        """In the child: move into the v1 cgroups (and v2, when not born there)."""
        for fd in self.tasks:
            os.write(fd, b"0")
        if self.v2_procs >= 0 and not self.moved:
            os.write(self.v2_procs, b"0")
        self.close()

    def close(self) -> None:
        for fd in (*self.tasks, self.v2_dir, self.v2_procs):
            if fd >= 0:
                os.close(fd)
        self.tasks = []
        self.v2_dir = self.v2_procs = -1
