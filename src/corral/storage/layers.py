"""Read-only layers and writable upper layers: the storage behind snapshots and clones.

A container's root is overlayfs: its writable upper over its own read-only
layers (frozen former uppers, newest first) over its template's version
layers.  Freezing the upper into a layer is what a snapshot or a clone
does; how that is done depends on the filesystem under the state root,
chosen here by detection (callers look at the driver's capabilities, never
at its name):

- ``dir`` (any filesystem, e.g. ext4): a stopped container's upper is
  *renamed* into a layer and a new empty upper made — constant time.  A
  running container's upper is in use by its overlay mount, so it is
  copied while the container is frozen (time grows with its own data).
- ``btrfs``: uppers are subvolumes; a layer is a read-only snapshot of the
  upper — constant time, also while the container runs (it is frozen for
  the instant of the cut).  This is the driver to use for many large,
  busy containers (put the state root on btrfs, as LXD's btrfs pool does).
"""

from __future__ import annotations

import os

from corral.errors import CommandError

BTRFS_SUPER_MAGIC = 0x9123683E


class DirLayers:
    """Layers on any filesystem.  A layer is ``layers/<id>/`` with the files in ``upper/``."""

    name = "dir"
    live_snapshot_constant_time = False

    def make_container_dir(self, path: str) -> None:
        os.mkdir(path, 0o700)

    def freeze(self, container_dir: str, layer: str, *, in_use: bool, owner: int = 0) -> bool:
        """Make ``layer/upper`` hold what ``container_dir/upper`` holds now.

        Returns True when the upper itself became the layer (the container
        must now stand on it, with a fresh empty upper owned by ``owner``,
        the container's root on the host), False when the layer is a copy and
        the container's upper still holds the same files.
        """
        upper = f"{container_dir}/upper"
        if not in_use:
            os.mkdir(layer, 0o755)
            os.rename(upper, f"{layer}/upper")
            os.mkdir(upper, 0o755)
            os.chown(upper, owner, owner)
            return True
        import subprocess

        tmp = f"{layer}.tmp"
        os.mkdir(tmp, 0o755)
        # cp -a keeps owners, modes, hard links, xattrs (incl. trusted.overlay.*
        # opaque markers) and whiteouts (0/0 character devices).
        proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", upper, f"{tmp}/upper"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            self.remove(tmp)
            raise CommandError(f"copying {upper} failed: {proc.stderr.strip()[-300:]}")
        os.rename(tmp, layer)
        return False

    def remove(self, path: str) -> None:
        from corral.store import remove_tree

        remove_tree(path)


class BtrfsLayers(DirLayers):
    """Each container directory is a subvolume; a layer is a read-only snapshot of it.

    The snapshot also holds the container's small files (config, work dir);
    only its ``upper/`` is used as a layer.  Upper and work must share a
    subvolume: overlayfs renames between them, which fails across subvolumes.
    """

    name = "btrfs"
    live_snapshot_constant_time = True

    def make_container_dir(self, path: str) -> None:
        _btrfs("subvolume", "create", path)
        os.chmod(path, 0o700)

    def freeze(self, container_dir: str, layer: str, *, in_use: bool, owner: int = 0) -> bool:
        if not _is_subvolume(container_dir):  # made before the state root moved to btrfs
            return super().freeze(container_dir, layer, in_use=in_use, owner=owner)
        _btrfs("subvolume", "snapshot", "-r", container_dir, layer)
        return False

    def remove(self, path: str) -> None:
        if os.path.isdir(path) and _is_subvolume(path):
            # Read-only snapshots must be made writable before they can go.
            _btrfs("property", "set", "-ts", path, "ro", "false")
            _btrfs("subvolume", "delete", path)
        else:
            super().remove(path)


def new_layer_id(owner: int) -> str:
    """A layer's name: when it was made, a random part, and whose ids its files carry.

    ``owner`` is the host id of the root of the container that wrote the
    layer (0: the host's ids, as templates and privileged containers have);
    a container with another range sees the layer through an idmapped mount.
    """
    import secrets
    import time

    return f"{int(time.time()):x}-{secrets.token_hex(6)}-{owner:x}"


def owner_of(layer_id: str) -> int:
    """The owner a layer's name records (0 for names from before owners were kept)."""
    parts = layer_id.split("-")
    try:
        return int(parts[2], 16) if len(parts) >= 3 else 0
    except ValueError:
        return 0


def _is_subvolume(path: str) -> bool:
    # A btrfs subvolume's root directory always has inode number 256.
    try:
        return os.stat(path).st_ino == 256
    except FileNotFoundError:
        return False


def _btrfs(*args: str) -> None:
    import subprocess

    proc = subprocess.run(["btrfs", "-q", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandError(f"btrfs {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def detect(path: str) -> DirLayers:
    """The layer driver for the filesystem that holds ``path``."""
    from corral.linux import fs

    if fs.statfs_type(path) == BTRFS_SUPER_MAGIC:
        import shutil

        if shutil.which("btrfs") is None:
            raise CommandError("the state root is on btrfs but the btrfs tool is missing",
                               hint="Install it: apt-get install btrfs-progs")
        return BtrfsLayers()
    return DirLayers()
