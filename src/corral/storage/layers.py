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
    name = "dir"
    live_snapshot_constant_time = False

    def make_upper(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def freeze(self, upper: str, layer: str, *, in_use: bool) -> None:
        """Make ``layer`` hold what ``upper`` holds now; leave a usable upper behind."""
        if not in_use:
            os.rename(upper, layer)
            self.make_upper(upper)
            return
        import shutil
        import subprocess

        tmp = f"{layer}.tmp"
        # cp -a keeps owners, modes, hard links, xattrs (incl. trusted.overlay.*
        # opaque markers) and whiteouts (0/0 character devices).
        proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", upper, tmp],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CommandError(f"copying {upper} failed: {proc.stderr.strip()[-300:]}")
        os.rename(tmp, layer)

    def writable_copy(self, layer: str, upper: str) -> None:
        import subprocess

        proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", layer, upper],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CommandError(f"copying {layer} failed: {proc.stderr.strip()[-300:]}")

    def remove(self, path: str) -> None:
        from corral.store import remove_tree

        remove_tree(path)


class BtrfsLayers(DirLayers):
    name = "btrfs"
    live_snapshot_constant_time = True

    def make_upper(self, path: str) -> None:
        _btrfs("subvolume", "create", path)

    def freeze(self, upper: str, layer: str, *, in_use: bool) -> None:
        if not _is_subvolume(upper):  # made before the state root moved to btrfs
            super().freeze(upper, layer, in_use=in_use)
            return
        _btrfs("subvolume", "snapshot", "-r", upper, layer)

    def writable_copy(self, layer: str, upper: str) -> None:
        if _is_subvolume(layer):
            _btrfs("subvolume", "snapshot", layer, upper)
        else:
            super().writable_copy(layer, upper)

    def remove(self, path: str) -> None:
        if os.path.isdir(path) and _is_subvolume(path):
            # Read-only snapshots must be made writable before their files go.
            _btrfs("property", "set", "-ts", path, "ro", "false")
            _btrfs("subvolume", "delete", path)
        else:
            super().remove(path)


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
