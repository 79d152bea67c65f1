"""Every path under a state root is computed here and nowhere else.

Layout of a state root (default /var/lib/corral)::

    templates/<name>/rootfs/        read-only template tree, shared by every container
    templates/<name>/template.toml  metadata (incl. its versions)
    templates/<name>/v<N>/          version N>1: the changes of an update, a layer over N-1
    layers/<id>/upper/              read-only layers of containers (frozen uppers), shared
                                    by their snapshots and clones
    containers/<name>/snapshots/<snap>.toml  a snapshot: its layer chain and template version
    containers/<name>/config.toml   desired state (TOML)
    /run/corral/state/<id>/<name>.json  runtime facts (init pid, start time, cgroup),
                                    outside the root: see ``StateRoot.state_file``
    containers/<name>/upper/ work/  the container's own copy-on-write layer
    containers/<name>/rootfs/       a privileged container's mount point (made by its first
                                    start), used only inside its own mount namespace
    locks/<name>.lock               per-container flock
    console/<name>.log              what the container's init printed

Paths are plain strings (``os.path``): pathlib costs milliseconds to import
on every container start.
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/corral"
RUNTIME_STATE = "/run/corral/state"


def root_id(root: str) -> str:
    """Short id of a state root, derived from its path: names its cgroups and links.

    Derived rather than stored so that no file must be read (and parsed) on
    the start path; two state roots on one machine have different paths.
    """
    import zlib

    return f"{zlib.crc32(root.encode()) & 0xFFFFFF:06x}"


def default_root() -> str:
    return os.environ.get("CORRAL_ROOT") or DEFAULT_ROOT


class StateRoot:
    __slots__ = ("root", "id", "templates", "containers", "locks", "console", "layers",
                 "runtime")

    def __init__(self, root: str) -> None:
        self.root = root
        self.id = root_id(root)
        self.runtime = f"{RUNTIME_STATE}/{self.id}"
        self.templates = f"{root}/templates"
        self.containers = f"{root}/containers"
        self.locks = f"{root}/locks"
        self.console = f"{root}/console"
        self.layers = f"{root}/layers"

    def layer(self, layer_id: str) -> str:
        return f"{self.layers}/{layer_id}"

    def layer_tree(self, layer_id: str) -> str:
        """What overlayfs stacks: the frozen upper inside the layer directory."""
        return f"{self.layers}/{layer_id}/upper"

    def snapshots(self, name: str) -> str:
        return f"{self.containers}/{name}/snapshots"

    def snapshot_file(self, name: str, snap: str) -> str:
        return f"{self.containers}/{name}/snapshots/{snap}.toml"

    def template_version_dir(self, name: str, version: int) -> str:
        """Version 1 is the built tree itself; later versions are layers over it."""
        return self.template_rootfs(name) if version == 1 else f"{self.templates}/{name}/v{version}"

    def template_dir(self, name: str) -> str:
        return f"{self.templates}/{name}"

    def template_rootfs(self, name: str) -> str:
        return f"{self.templates}/{name}/rootfs"

    def template_meta(self, name: str) -> str:
        return f"{self.templates}/{name}/template.toml"

    def container_dir(self, name: str) -> str:
        return f"{self.containers}/{name}"

    def config_file(self, name: str) -> str:
        return f"{self.containers}/{name}/config.toml"

    def state_file(self, name: str) -> str:
        """A running container's runtime facts, on the host's /run (tmpfs), as
        runc and LXC keep theirs.  They describe processes, which a reboot ends
        anyway: an empty /run then says every container is stopped.  And a
        start/stop cycle no longer makes and deletes an inode on the state
        root's disk filesystem, whose allocator (ext4 without a journal) steps
        over recently deleted inodes one by one: a mass start after a mass
        stop spent ~5% of its CPU there."""
        return f"{self.runtime}/{name}.json"

    def legacy_state_file(self, name: str) -> str:
        """Where earlier versions kept it: read for containers they started."""
        return f"{self.containers}/{name}/state.json"

    def upper(self, name: str) -> str:
        return f"{self.containers}/{name}/upper"

    def work(self, name: str) -> str:
        return f"{self.containers}/{name}/work"

    def disk_image(self, name: str) -> str:
        return f"{self.containers}/{name}/disk.img"

    def disk_mount(self, name: str) -> str:
        return f"{self.containers}/{name}/disk"

    def mountpoint(self, name: str) -> str:
        return f"{self.containers}/{name}/rootfs"

    def lock_file(self, name: str) -> str:
        return f"{self.locks}/{name}.lock"

    def console_log(self, name: str) -> str:
        return f"{self.console}/{name}.log"
