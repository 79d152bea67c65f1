"""Disk quota: the container's own layer on a btrfs image of its own size.

The state root's filesystem here has no project quota (and Corral must not
remount it), so a container with ``--disk`` gets a sparse image file holding
its copy-on-write layer.  Writes past the size fail with ENOSPC inside that
container only; the shared template below is not counted.

No mount of it ever appears in the host's namespace: the image is attached to
a loop device by the host, mounted by the container's init inside its own
mount namespace, and then the loop device is released (``losetup -d`` on a
mounted device only marks it to free itself), so it disappears by itself
when the container's mount namespace does -- a crash leaves nothing.

The image is btrfs with mixed block groups (data and metadata share them):
all of the size holds files, and mkfs accepts images from 16 MiB.  It is
resized live, with CAP_SYS_ADMIN only: growing makes the image file and the
loop device larger (``losetup -c``), then btrfs; shrinking makes btrfs move
its data below the new end first (it refuses, ENOSPC, when that does not fit)
and only then the loop device and the file.  The filesystem is reached
through a second mount of its loop device in a short-lived private mount
namespace (the kernel shares the superblock with the container's mount); a
stopped container's image is attached for the time of the resize.  The
kernel resizes btrfs only to 256 MiB or more (``BTRFS_IOC_RESIZE``): a
smaller image can grow to that, but not to less.  Copies of an image (clones, restores) keep
its btrfs UUID; Linux 6.7 and later mount such a copy beside its source
under a temporary one (earlier kernels refuse the second mount).

Images made before are ext4, told apart by their superblock (``fstype``),
and keep ext4's ways: growing live needs CAP_SYS_RESOURCE (ext4's online
resize), shrinking needs the container stopped.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess

from corral.errors import CommandError, InvalidStateError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MIN_SIZE = 16 << 20  # mkfs.btrfs --mixed refuses less (measured: 16 MiB exactly)
RESIZE_MIN = 256 << 20  # BTRFS_IOC_RESIZE refuses a target below 256 MiB (EINVAL)
_BTRFS_IOC_RESIZE = 0x50009403  # _IOW(0x94, 3, struct btrfs_ioctl_vol_args), 4096 bytes
_BTRFS_SUPER = 0x10000  # the primary superblock: magic at +0x40, total/used bytes at +0x70
_EXT4_MAGIC_AT = 0x438


def _run(argv: list[str], what: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CommandError(f"{what}: {argv[0]} exited {p.returncode}: {tail[0]}")
    return p.stdout


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g}M"


def create(image: str, size: int) -> None:
    """A sparse btrfs image of ``size`` bytes (no space is used until written)."""
    if size < MIN_SIZE:
        raise ValidationError(f"--disk {size} is too small",
                              hint=f"Give at least {_mib(MIN_SIZE)}.")
    with open(image, "wb") as f:
        f.truncate(size)
    # Mixed block groups: no space set apart for metadata, so the whole size
    # holds files (separate groups leave a 128M image 47M of data) and 16 MiB
    # is enough (separate groups need 109 MiB).
    _run(["mkfs.btrfs", "-q", "-f", "--mixed", image], "cannot make the disk image")


def new_identity(image: str) -> None:
    """Give a copied btrfs image a filesystem id of its own.

    The kernel keeps one record per btrfs fsid: before Linux 6.7 it refuses
    to mount a copy while its source is mounted (a clone beside its running
    source, a restore beside the original).  ``btrfstune -m`` rewrites only
    the superblock (the old id stays as metadata_uuid, Linux >= 5.0).
    """
    if fstype(image) == "btrfs":
        _run(["btrfstune", "-f", "-m", image], "cannot give the copied disk image a new id")


def fstype(image: str) -> str:
    """The image's filesystem from its superblock: ``btrfs``, or ``ext4`` (older images)."""
    with open(image, "rb") as f:
        # ext4's first: mkfs.btrfs zeroes the start of a btrfs image, while
        # an ext4 image's data may hold anything where btrfs's magic would be.
        f.seek(_EXT4_MAGIC_AT)
        if f.read(2) == b"\x53\xef":
            return "ext4"
        f.seek(_BTRFS_SUPER + 0x40)
        if f.read(8) == b"_BHRfS_M":
            return "btrfs"
    raise InvalidStateError(f"disk image {image} is neither btrfs nor ext4")


def describe(image: str) -> str:
    """One line for ``corral info``: the mechanism and the image's filesystem."""
    try:
        kind = fstype(image)
    except (OSError, InvalidStateError):
        kind = "unreadable image"
    return f"image ({kind} on a loop device, mounted only inside the container)"


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


def sync(running_root: str) -> None:
    """Write out what a running container wrote: btrfs counts data it has not yet
    allocated (delayed allocation) as free, so ``usage`` right after a write is low."""
    from corral.linux import fs

    try:
        fd = os.open(running_root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # it has just stopped: nothing more to write
    try:
        fs.syncfs(fd)  # overlayfs passes it on to its upper layer's filesystem
    finally:
        os.close(fd)


def usage(image: str, running_root: str | None) -> int:
    """Bytes used: from the live filesystem when running, else the image's superblock."""
    if running_root is not None:
        try:
            st = os.statvfs(running_root)  # overlayfs reports its upper layer's filesystem
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        except OSError:
            pass
    # Stopped: the superblock's counters (the sparse file's allocation would
    # still count blocks of files deleted since).
    try:
        kind = fstype(image)
    except (OSError, InvalidStateError):
        kind = None
    if kind == "btrfs":
        with open(image, "rb") as f:
            f.seek(_BTRFS_SUPER + 0x78)
            return int(struct.unpack("<Q", f.read(8))[0])  # bytes_used: data and metadata
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


def _truncate(image: str, size: int) -> None:
    with open(image, "r+b") as f:
        f.truncate(size)


def resize(image: str, size: int, running: bool) -> None:
    """Grow or shrink a btrfs image to ``size`` bytes, live if its container runs.

    Growing: the file, the loop device, then btrfs.  Shrinking: btrfs first
    (it moves its data below the new end, or refuses and nothing changed),
    then the loop device and the file.  A failed grow puts the file back.
    """
    if size < RESIZE_MIN:
        raise ValidationError(f"--disk {_mib(size)}: a btrfs disk is resized only to "
                              f"{_mib(RESIZE_MIN)} or more (the kernel's limit)",
                              hint=f"Choose {_mib(RESIZE_MIN)} or more.")
    old = os.stat(image).st_size
    if size == old:
        return
    loop = loop_of(image)  # a running container's, released but still bound
    if running and loop is None:
        # Never a second loop device for a mounted image: two block devices
        # for one filesystem would each be written as if alone.
        raise InvalidStateError("the container's disk is not attached")
    ours = loop is None
    if size > old:
        _truncate(image, size)
        try:
            if ours:
                loop = attach(image)
            else:
                _run(["losetup", "-c", loop], "cannot refresh the loop device's size")
            _btrfs_resize(loop, size, shrink=False)
        except BaseException:
            if ours and loop is not None:
                release(loop)
                loop = None
            _truncate(image, old)
            if loop is not None:
                subprocess.run(["losetup", "-c", loop], capture_output=True)
            raise
        if ours:
            release(loop)
        return
    if ours:
        loop = attach(image)
    try:
        _btrfs_resize(loop, size, shrink=True)
    finally:
        if ours:
            release(loop)
    _truncate(image, size)
    if not ours:
        _run(["losetup", "-c", loop], "cannot refresh the loop device's size")


def _btrfs_resize(loop: str, size: int, *, shrink: bool) -> None:
    """BTRFS_IOC_RESIZE to ``size`` bytes, through a private mount of ``loop``."""

    def resize_at(point: str) -> None:
        import fcntl

        from corral.linux import fs

        args = bytearray(4096)  # struct btrfs_ioctl_vol_args: fd (unused), then the size text
        text = str(size).encode()
        args[8:8 + len(text)] = text
        fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fs.syncfs(fd)  # data still to be allocated takes part in a shrink
            try:
                fcntl.ioctl(fd, _BTRFS_IOC_RESIZE, args)
            except OSError as exc:
                if not (shrink and exc.errno == errno.ENOSPC):
                    raise
                # The chunks past the new end must move below it, into chunks
                # btrfs allocates there; space of files deleted just before may
                # still sit in emptied or half-used chunks that btrfs frees later,
                # by itself.  Compact them now (a balance of the chunks at most
                # half used), then once more.
                fs.syncfs(fd)
                subprocess.run(["btrfs", "balance", "start", "-dusage=50", "-musage=50", point],
                               capture_output=True)
                fcntl.ioctl(fd, _BTRFS_IOC_RESIZE, args)
        finally:
            os.close(fd)

    err, message = _in_private_mount(loop, "btrfs", resize_at)
    if shrink and err == errno.ENOSPC:
        raise ValidationError(f"btrfs cannot shrink the disk to {_mib(size)}: its data could "
                              "not be moved below the new end (nothing changed)",
                              hint="btrfs moves whole extents, and the free space below "
                                   "was too scattered for them: free more inside the "
                                   "container, or choose a larger size.")
    if message:
        raise CommandError(f"cannot resize the disk's btrfs to {_mib(size)}: {message}")


def can_grow_live() -> bool:
    """ext4's online resize needs CAP_SYS_RESOURCE (some sandboxes withhold it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))
    return False


def grow_live(image: str, size: int) -> None:
    """Grow an ext4 image under a running container: file, loop device, then ext4 online."""
    if not can_grow_live():
        from corral.errors import UnsupportedError

        raise UnsupportedError(
            "growing a running container's ext4 disk needs CAP_SYS_RESOURCE, which this "
            "process does not have", hint="Stop the container and set --disk again.")
    loop = loop_of(image)
    if loop is None:
        raise InvalidStateError("the container's disk is not attached")
    _truncate(image, size)
    _run(["losetup", "-c", loop], "cannot refresh the loop device's size")

    def grow_at(_point: str) -> None:
        # resize2fs finds the mount (ours, in this namespace) and grows online.
        if subprocess.run(["resize2fs", loop], capture_output=True).returncode != 0:
            raise CommandError("resize2fs failed")

    if _in_private_mount(loop, "ext4", grow_at)[1]:
        raise CommandError(f"cannot grow the filesystem on {loop} online")


def _in_private_mount(loop: str, kind: str, work: Callable[[str], None]) -> tuple[int, str]:
    """Run ``work(point)`` in a forked child with ``loop`` mounted at ``point``.

    The mount is made in the child's own mount namespace: the host never
    sees it, and it goes with the child whatever happens.  A live
    filesystem is mounted once more (the kernel shares its superblock).
    Returns the failure's errno (0 if none) and message ('' on success).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        report = ""
        try:
            import tempfile

            from corral.linux import mount, ns

            ns.unshare(ns.CLONE_NEWNS)
            mount.mount(None, "/", None, mount.MS_REC | mount.MS_PRIVATE)
            point = tempfile.mkdtemp(prefix="corral-disk-")
            try:
                mount.mount(loop, point, kind, mount.MS_NOSUID | mount.MS_NODEV)
                try:
                    work(point)
                finally:
                    mount.umount2(point, mount.MNT_DETACH)
            finally:
                os.rmdir(point)
        except BaseException as exc:
            code = getattr(exc, "errno", None) or 0
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            report = f"{code} {reason}"
        finally:
            try:
                os.write(w, report.encode()[:4000])
            finally:
                os._exit(1 if report else 0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if not report and os.waitstatus_to_exitcode(status) != 0:
        report = f"0 the helper process ended with status {status}"
    if not report:
        return 0, ""
    code, _, message = report.partition(" ")
    return int(code), message


def _check_ext4(image: str) -> None:
    """e2fsck -f: resize2fs refuses an image mounted since its last check (as every
    container's is once it ran), and a resize wants a clean filesystem anyway."""
    p = subprocess.run(["e2fsck", "-f", "-y", image], capture_output=True, text=True)
    if p.returncode not in (0, 1):  # 1: errors found and corrected
        raise CommandError(f"cannot check the disk image: e2fsck exited {p.returncode}")


def grow_offline(image: str, size: int) -> None:
    """Grow a stopped container's ext4 image to ``size`` bytes."""
    with open(image, "r+b") as f:
        f.truncate(size)
    _check_ext4(image)
    _run(["resize2fs", image], "cannot grow the disk image")


def shrink_offline(image: str, size: int) -> None:
    """Shrink a stopped container's ext4 image, refusing when its data would not fit."""
    used = usage(image, None)
    _check_ext4(image)
    p = subprocess.run(["resize2fs", image, f"{size // 1024}K"], capture_output=True, text=True)
    if p.returncode != 0:
        raise ValidationError(f"the container's files do not fit in {size} bytes "
                              f"(about {used} in use)",
                              hint="Free space inside it first, or choose a larger size.")
    _truncate(image, size)


def info(image: str) -> dict[str, Any]:
    try:
        size = os.stat(image).st_size
    except FileNotFoundError:
        return {"method": None}
    try:
        kind: str | None = fstype(image)
    except (OSError, InvalidStateError):
        kind = None
    return {"method": "image", "image": image, "size_bytes": size, "fstype": kind}


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

    def moved(i: int) -> int:
        return i - old + new if old <= i < old + size else i

    def shift_at(point: str) -> None:
        for dirpath, dirs, files in os.walk(point):
            for n in (dirpath, *(os.path.join(dirpath, f) for f in dirs + files)):
                st = os.lstat(n)
                mode = st.st_mode
                os.chown(n, moved(st.st_uid), moved(st.st_gid), follow_symlinks=False)
                if not os.path.islink(n) and mode & 0o6000:
                    os.chmod(n, mode & 0o7777)  # chown clears setuid/setgid: put back

    kind = fstype(image)
    loop = attach(image)
    try:
        if _in_private_mount(loop, kind, shift_at)[1]:
            raise CommandError(f"cannot move the files of {image} to their new ids")
    finally:
        release(loop)
