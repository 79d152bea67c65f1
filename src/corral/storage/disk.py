"""Disk quota: the container's own layer on an ext4 image of its own size.

The state root's filesystem here has no project quota (and Corral must not
remount it), so a container with ``--disk`` gets a sparse image file holding
its copy-on-write layer.  Writes past the size fail with ENOSPC inside that
container only; the shared template below is not counted.

No mount of it ever appears in the host's namespace: the image is attached to
a loop device by the host, mounted by the container's init inside its own
mount namespace, and then the loop device is released (``losetup -d`` on a
mounted device only marks it to free itself), so it disappears by itself
when the container's mount namespace does -- a crash leaves nothing.

Growing is live (the image and loop device grow, then ext4 grows online
through a mount made in a short-lived private mount namespace; that needs
CAP_SYS_RESOURCE) or offline; shrinking needs the container stopped and its
data to fit.
"""

from __future__ import annotations

import os
import subprocess

from corral.errors import CommandError, InvalidStateError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MIN_SIZE = 16 << 20


def _run(argv: list[str], what: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CommandError(f"{what}: {argv[0]} exited {p.returncode}: {tail[0]}")
    return p.stdout


def create(image: str, size: int) -> None:
    """A sparse ext4 image of ``size`` bytes (no space is used until written)."""
    if size < MIN_SIZE:
        raise ValidationError(f"--disk {size} is too small", hint="Give at least 16M.")
    with open(image, "wb") as f:
        f.truncate(size)
    # Lazy init: mkfs writes a few MiB whatever the size; no reserved blocks.
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1",
          image], "cannot make the disk image")


def attach(image: str) -> str:
    """A loop device for ``image`` (the init mounts it, then ``release`` lets it go)."""
    return _run(["losetup", "--find", "--show", image], "cannot attach the disk image").strip()


def release(loop: str) -> None:
    """Mark ``loop`` to free itself when its last mount goes (immediately if unused)."""
    subprocess.run(["losetup", "-d", loop], capture_output=True)


def loop_of(image: str) -> str | None:
    """The loop device currently backed by ``image``, if any."""
    real = os.path.realpath(image)
    try:
        entries = os.listdir("/sys/block")
    except OSError:
        return None
    for name in entries:
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                if f.read().strip() == real:
                    return f"/dev/{name}"
        except OSError:
            continue
    return None


def usage(image: str, running_root: str | None) -> int:
    """Bytes used: from the live filesystem when running, else the image's allocation."""
    if running_root is not None:
        try:
            st = os.statvfs(running_root)  # overlayfs reports its upper layer's filesystem
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        except OSError:
            pass
    # Stopped: the superblock's counters (the sparse file's allocation would
    # still count blocks of files deleted since).
    p = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True)
    fields = {}
    for line in p.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        return (int(fields["Block count"]) - int(fields["Free blocks"])) * \
            int(fields["Block size"])
    except (KeyError, ValueError):
        try:
            return os.stat(image).st_blocks * 512
        except OSError:
            return 0


def can_grow_live() -> bool:
    """ext4's online resize needs CAP_SYS_RESOURCE (some sandboxes withhold it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def grow_live(image: str, size: int) -> None:
    """Grow the image under a running container: file, loop device, then ext4 online."""
    if not can_grow_live():
        from corral.errors import UnsupportedError

        raise UnsupportedError(
            "growing a running container's disk needs CAP_SYS_RESOURCE, which this "
            "process does not have", hint="Stop the container and set --disk again.")
    loop = loop_of(image)
    if loop is None:
        raise InvalidStateError("the container's disk is not attached")
    with open(image, "r+b") as f:
        f.truncate(size)
    _run(["losetup", "-c", loop], "cannot refresh the loop device's size")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _resize_in_private_namespace(loop)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise CommandError(f"cannot grow the filesystem on {loop} online")


def _resize_in_private_namespace(loop: str) -> int:
    """Mount the live filesystem once more, in a mount namespace of our own (the
    kernel shares the superblock), and grow it online to the device's size."""
    import tempfile

    from corral.linux import mount, ns

    ns.unshare(ns.CLONE_NEWNS)
    mount.mount(None, "/", None, mount.MS_REC | mount.MS_PRIVATE)
    point = tempfile.mkdtemp(prefix="corral-resize-")
    try:
        mount.mount(loop, point, "ext4", 0)
        try:
            # resize2fs finds the mount (ours, in this namespace) and grows online.
            return subprocess.run(["resize2fs", loop], capture_output=True).returncode
        finally:
            mount.umount2(point, mount.MNT_DETACH)
    finally:
        os.rmdir(point)


def shrink_offline(image: str, size: int) -> None:
    """Shrink a stopped container's image, refusing when its data would not fit."""
    used = usage(image, None)
    p = subprocess.run(["e2fsck", "-f", "-y", image], capture_output=True, text=True)
    if p.returncode not in (0, 1):  # 1: errors found and corrected
        raise CommandError(f"cannot check the disk image: e2fsck exited {p.returncode}")
    p = subprocess.run(["resize2fs", image, f"{size // 1024}K"], capture_output=True, text=True)
    if p.returncode != 0:
        raise ValidationError(f"the container's files do not fit in {size} bytes "
                              f"(about {used} in use)",
                              hint="Free space inside it first, or choose a larger size.")
    with open(image, "r+b") as f:
        f.truncate(size)


def info(image: str) -> dict[str, Any]:
    try:
        return {"method": "image", "image": image, "size_bytes": os.stat(image).st_size}
    except FileNotFoundError:
        return {"method": None}


def shift_ids(image: str, old: int, new: int, size: int = 65536) -> None:
    """Give the files of a stopped container's image to another id range.

    A disk-quota container's upper lives in its image, written with its host
    ids; a clone or a restore has a range of its own, and an image's files
    cannot be idmapped beneath overlayfs as its upper.  So they are chowned
    once (only the image's own files: the shared template stays untouched).
    Done in a forked child in a private mount namespace: the host never sees
    the mount.
    """
    if old == new:
        return
    loop = attach(image)
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _shift_in_private_namespace(loop, old, new, size)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise CommandError(f"cannot move the files of {image} to their new ids")
    finally:
        release(loop)


def _shift_in_private_namespace(loop: str, old: int, new: int, size: int) -> None:
    import tempfile

    from corral.linux import mount, ns

    ns.unshare(ns.CLONE_NEWNS)
    mount.mount(None, "/", None, mount.MS_REC | mount.MS_PRIVATE)
    point = tempfile.mkdtemp(prefix="corral-shift-")
    try:
        mount.mount(loop, point, "ext4", mount.MS_NOSUID | mount.MS_NODEV)
        try:
            def moved(i: int) -> int:
                return i - old + new if old <= i < old + size else i

            for dirpath, dirs, files in os.walk(point):
                for n in (dirpath, *(os.path.join(dirpath, f) for f in dirs + files)):
                    st = os.lstat(n)
                    mode = st.st_mode
                    os.chown(n, moved(st.st_uid), moved(st.st_gid), follow_symlinks=False)
                    if not os.path.islink(n) and mode & 0o6000:
                        os.chmod(n, mode & 0o7777)  # chown clears setuid/setgid: put back
        finally:
            mount.umount2(point, mount.MNT_DETACH)
    finally:
        os.rmdir(point)
