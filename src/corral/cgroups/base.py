"""The cgroup driver interface: one manager per container, whatever the layout.

Two cgroups per container in every hierarchy Corral uses:

    <top>/<name>/          "outer": limits and accounting live here
    <top>/<name>/payload/  "inner": every process of the container; the
                           container's cgroup namespace shows it as "/",
                           so a systemd inside manages its own subtree
                           without being able to lift the outer limits.

except in the v1 hierarchies of an unprivileged container, where the outer
cgroup holds the processes itself.  Its limit files belong to host root,
which the container's user namespace does not map, so its root can neither
write them nor, from its cgroup namespace, reach anything above; handed the
directory and its tasks/cgroup.procs files it manages its own subtree as
well.  One cgroup fewer in each v1 hierarchy is measured memory: every
memory cgroup carries a table sized by the host's count of filesystem
shrinkers (every mounted superblock), which itself grows with the number of
containers, so at a thousand containers the second memory cgroup alone cost
~150 KB each.  v2 keeps the pair (its no-internal-process rule), and so do
privileged containers, whose root is host root and could write outer files.

``<top>`` is ``corral`` for the default state root and ``corral-<id>`` for
others, so two state roots never touch each other's cgroups.

Callers branch on ``CgroupManager.caps`` (what the layout can do), never on
the class or layout name.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class CgroupCaps:
    """What a layout offers: kill (cgroup.kill), freeze, events, limit controllers."""

    __slots__ = ("kill", "freeze", "events", "controllers")

    def __init__(self, *, kill: bool, freeze: bool, events: bool,
                 controllers: frozenset[str]) -> None:
        self.kill = kill
        self.freeze = freeze
        self.events = events
        self.controllers = controllers


class CgroupStats:
    """Usage read from the kernel's files (never estimated)."""

    FIELDS = ("pids", "pids_limit", "memory_bytes", "memory_limit_bytes", "swap_bytes",
              "swap_limit_bytes", "cpu_usage_ns", "io_read_bytes", "io_write_bytes",
              "oom_kills", "memory_failcnt", "pids_failcnt")
    __slots__ = FIELDS

    def __init__(self, **kw: Any) -> None:
        for f in self.FIELDS:
            setattr(self, f, kw.get(f, 0))

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}


class CgroupManager:
    """Interface of one container's cgroups; see ``fs`` for the implementations."""

    layout: str  # "v1", "v2" or "hybrid"; for display only
    caps: CgroupCaps

    def __init__(self, root: str, group: str) -> None:
        self.root = root  # normally /sys/fs/cgroup; a fake tree in unit tests
        self.group = group  # "<top>/<name>"

    def create(self, *, restrict_devices: bool = True, v1_inner: bool = True) -> None:
        """Create outer and inner cgroups in every hierarchy; idempotent.

        ``v1_inner=False`` (unprivileged containers): none inside the outer
        cgroup of a v1 hierarchy, whose processes then live in the outer one.
        """
        raise NotImplementedError

    def procs_files(self, *, v1_inner: bool | None = None) -> list[str]:
        """The inner cgroup's cgroup.procs files, one per hierarchy.

        ``v1_inner``: as given to ``create`` (for a container whose cgroups are
        about to be made); None: as the existing cgroups show.

        A new process writes "0" to each (joining itself) before it unshares
        its cgroup namespace, so the namespace root is the inner cgroup.
        """
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process in the container (outer and all descendants)."""
        raise NotImplementedError

    def init_pid(self) -> int | None:
        """The container's init (PID 1 of its PID namespace), found in its cgroups."""
        raise NotImplementedError

    def populated(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL every process in the container."""
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def stats(self) -> CgroupStats:
        raise NotImplementedError

    def usage(self) -> tuple[int, int]:
        """(processes, memory bytes), cheaply, for listings."""
        raise NotImplementedError

    def tasks(self) -> int:
        """Tasks (threads) in the container, cheaply: pids.current where there is one."""
        raise NotImplementedError

    def memory(self) -> tuple[int, int, int, int]:
        """(memory bytes, its limit, swap bytes, its limit), cheaply; -1: no limit.

        For views of the container's own machine (the sysinfo agent).  On v1
        the swap limit is memory+swap's minus memory's; -1 where the kernel
        does not account swap.
        """
        raise NotImplementedError

    def apply(self, limits: dict[str, Any]) -> None:
        """Write ``limits`` (see ``resources``) to the outer cgroup; live, idempotent."""
        raise NotImplementedError

    def exists(self) -> bool:
        raise NotImplementedError

    def destroy(self, *, uncharge: bool = True) -> None:
        """Kill what is left, then remove the cgroups bottom-up; idempotent.

        ``uncharge``: first release the memory (page cache) still charged to
        them, which would keep a removed memory cgroup alive (see fs.py).
        Not needed when the container's files are deleted next: their pages
        go with them, and the memory cgroup is freed then.
        """
        raise NotImplementedError
