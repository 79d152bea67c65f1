"""The cgroup driver interface: one manager per container, whatever the layout.

Two cgroups per container in every hierarchy Corral uses:

    <top>/<name>/          "outer": limits and accounting live here
    <top>/<name>/payload/  "inner": every process of the container; the
                           container's cgroup namespace shows it as "/",
                           so a systemd inside manages its own subtree
                           without being able to lift the outer limits.

``<top>`` is ``corral`` for the default state root and ``corral-<id>`` for
others, so two state roots never touch each other's cgroups.

Callers branch on ``CgroupManager.caps`` (what the layout can do), never on
the class or layout name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CgroupCaps:
    kill: bool  # cgroup.kill exists (atomic kill of the whole tree)
    freeze: bool  # a freezer (cgroup.freeze on v2, freezer controller on v1)
    events: bool  # cgroup.events "populated" can be watched
    controllers: frozenset[str]  # controllers available for limits: cpu, memory, pids, io, cpuset


@dataclass(frozen=True, slots=True)
class CgroupStats:
    pids: int = 0
    memory_bytes: int = 0
    cpu_usage_ns: int = 0


class CgroupManager(abc.ABC):
    layout: str  # "v1", "v2" or "hybrid"; for display only
    caps: CgroupCaps

    def __init__(self, root: Path, group: str) -> None:
        self.root = root  # normally /sys/fs/cgroup; a fake tree in unit tests
        self.group = group  # "<top>/<name>"

    @abc.abstractmethod
    def create(self) -> None:
        """Create outer and inner cgroups in every hierarchy; idempotent."""

    @abc.abstractmethod
    def procs_files(self) -> list[Path]:
        """The inner cgroup's cgroup.procs files, one per hierarchy.

        A new process writes "0" to each (joining itself) before it unshares
        its cgroup namespace, so the namespace root is the inner cgroup.
        """

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every process in the container (outer and all descendants)."""

    @abc.abstractmethod
    def populated(self) -> bool: ...

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL every process in the container."""

    @abc.abstractmethod
    def freeze(self) -> None: ...

    @abc.abstractmethod
    def thaw(self) -> None: ...

    @abc.abstractmethod
    def frozen(self) -> bool: ...

    @abc.abstractmethod
    def stats(self) -> CgroupStats: ...

    @abc.abstractmethod
    def exists(self) -> bool: ...

    @abc.abstractmethod
    def destroy(self) -> None:
        """Kill what is left, then remove the cgroups bottom-up; idempotent."""
