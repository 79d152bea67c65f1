"""Which cgroup hierarchies the host has mounted, for showing them inside a container.

Read from /proc/self/mountinfo (fields after " - " are fstype, source,
super options; the controllers of a v1 hierarchy are its super options).
"""

from __future__ import annotations

V1_OPTS_IGNORED = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec",
                   "clone_children", "xattr", "nsdelegate", "memory_recursiveprot",
                   "favordynmods", "memory_localevents", "memory_hugetlb_accounting"}


_seen: dict[tuple[str, str], tuple[tuple[str, str, str], ...]] = {}


def host_cgroup_mounts(mountinfo: str = "/proc/self/mountinfo",
                       base: str = "/sys/fs/cgroup") -> tuple[tuple[str, str, str], ...]:
    """(target relative to base, fstype, mount options) per hierarchy.

    Read once per process: the host's cgroup hierarchies do not change while
    a command starts its containers (``start --all`` asks once per container).
    """
    key = (mountinfo, base)
    if key not in _seen:
        _seen[key] = _read_cgroup_mounts(mountinfo, base)
    return _seen[key]


def _read_cgroup_mounts(mountinfo: str, base: str) -> tuple[tuple[str, str, str], ...]:
    mounts: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            fstype, _source, superopts = post.split()[:3]
            point = fields[4]
            if fstype not in ("cgroup", "cgroup2") or not point.startswith(base):
                continue
            rel = point[len(base):].lstrip("/")
            if rel in seen or "/" in rel:
                continue
            seen.add(rel)
            if fstype == "cgroup2":
                mounts.append((rel, "cgroup2", ""))
            else:
                opts = [o for o in superopts.split(",") if o not in V1_OPTS_IGNORED]
                if any(o.startswith("name=") for o in opts):
                    opts = ["none", *opts]
                mounts.append((rel, "cgroup", ",".join(opts)))
    return tuple(mounts)
