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


def remove_top(top: str, root: str = DEFAULT_ROOT) -> None:
    """rmdir ``top`` in every hierarchy where it is empty (no container below it)."""
    for base in [root] + [f"{root}/{h}" for h in _subdirs(root)]:
        try:
            os.rmdir(f"{base}/{top}")
        except OSError:
            pass  # absent, or a container's cgroups below it (ENOTEMPTY/EBUSY)


def _subdirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


__all__ = ["CgroupManager", "detect", "list_groups", "manager", "remove_top"]
