"""Every path under a state root is computed here and nowhere else.

Layout of a state root (default /var/lib/corral)::

    host.toml                       id of this root (names its cgroups, links, nft table)
    templates/<name>/rootfs/        read-only template tree, shared by every container
    templates/<name>/template.toml  metadata
    containers/<name>/config.toml   desired state (TOML)
    containers/<name>/state.json    runtime facts (init pid, start time, cgroup)
    containers/<name>/upper/ work/  the container's own copy-on-write layer
    containers/<name>/rootfs/       mount point, used only inside the container's mount namespace
    locks/<name>.lock               per-container flock
    console/<name>.log              what the container's init printed
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/lib/corral"


def default_root() -> Path:
    return Path(os.environ.get("CORRAL_ROOT") or DEFAULT_ROOT)


@dataclass(frozen=True, slots=True)
class StateRoot:
    root: Path

    @property
    def host_file(self) -> Path:
        return self.root / "host.toml"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def console(self) -> Path:
        return self.root / "console"

    def template_dir(self, name: str) -> Path:
        return self.templates / name

    def template_rootfs(self, name: str) -> Path:
        return self.templates / name / "rootfs"

    def template_meta(self, name: str) -> Path:
        return self.templates / name / "template.toml"

    def container_dir(self, name: str) -> Path:
        return self.containers / name

    def config_file(self, name: str) -> Path:
        return self.containers / name / "config.toml"

    def state_file(self, name: str) -> Path:
        return self.containers / name / "state.json"

    def upper(self, name: str) -> Path:
        return self.containers / name / "upper"

    def work(self, name: str) -> Path:
        return self.containers / name / "work"

    def mountpoint(self, name: str) -> Path:
        return self.containers / name / "rootfs"

    def lock_file(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    def console_log(self, name: str) -> Path:
        return self.console / f"{name}.log"
