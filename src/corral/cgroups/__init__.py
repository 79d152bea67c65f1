"""cgroup drivers: detect the host's layout and return a manager per container.

    detect(root)            -> "v2" | "hybrid" | "v1"
    manager(group, ...)     -> CgroupManager for "<top>/<name>"
    list_groups(top, ...)   -> names of containers that have cgroups under <top>

Imports are kept to ``os``: this package is on every container start.
"""

from __future__ import annotations

import os

from corral.cgroups.base import CgroupManager

DEFAULT_ROOT = "/sys/fs/cgroup"


def detect(root: str = DEFAULT_ROOT) -> str:
    """Which layout the cgroup filesystems at ``root`` have (youki's setup detection)."""
    if os.path.exists(f"{root}/cgroup.controllers"):
        return "v2"
    if os.path.exists(f"{root}/unified/cgroup.procs"):
        return "hybrid"
    return "v1"


def manager(group: str, root: str = DEFAULT_ROOT, layout: str | None = None) -> CgroupManager:
    from corral.cgroups import fs

    layout = layout or detect(root)
    cls = {"v2": fs.V2Manager, "hybrid": fs.HybridManager, "v1": fs.V1Manager}[layout]
    return cls(root, group)


def list_groups(top: str, root: str = DEFAULT_ROOT) -> list[str]:
    """Container names with a cgroup under ``top`` in any hierarchy (for ``doctor``)."""
    names: set[str] = set()
    candidates = [root] + [f"{root}/{h}" for h in _subdirs(root)]
    for base in candidates:
        names.update(_subdirs(f"{base}/{top}"))
    return sorted(names)


def _subdirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


_primers: list[int] = []


def prime_attach(root: str = DEFAULT_ROOT) -> None:
    """Start the kernel's cgroup-attach grace period now, in a throwaway child.

    Moving a process into a cgroup takes ``cgroup_threadgroup_rwsem`` for
    writing; when no writer ran in the last RCU grace period the kernel first
    waits for one (``rcu_sync_enter``: ~10 ms here, most of a container
    start).  A child that "moves" itself into the cgroup it is already in
    changes nothing but opens that window, so the real moves made a few
    milliseconds later (after the interpreter has loaded the rest of
    Corral) find it open and cost well under a millisecond.
    """
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    target = None
    for line in lines:
        _hid, ctrl, path = line.split(":", 2)
        base = f"{root}/{ctrl.split(',')[0].removeprefix('name=')}" if ctrl else None
        for candidate in ((base,) if base else (root, f"{root}/unified")):
            procs = f"{candidate}{path}/cgroup.procs"
            if os.path.exists(procs):
                target = procs
                break
        if target:
            break
    if target is None:
        return
    pid = os.fork()
    if pid == 0:
        try:
            with open(target, "w") as f:
                f.write("0")
        finally:
            os._exit(0)
    _primers.append(pid)


def reap_primers() -> None:
    while _primers:
        try:
            os.waitpid(_primers.pop(), 0)
        except ChildProcessError:
            pass


__all__ = ["CgroupManager", "detect", "list_groups", "manager", "prime_attach", "reap_primers"]
