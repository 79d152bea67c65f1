"""Turn a root-filesystem archive, a directory or an OCI image into a plain root tree.

::

    detect(source) -> "dir" | "tar" | "oci" | "oci-archive"
    import_into(source, dest, *, max_bytes=64 GiB, allow_devices=False, progress=None) -> dict

``dest`` is an existing, empty directory.  The caller builds into a scratch
directory and renames it into place, so on any error this module just
raises; what it must never do is write outside ``dest``.

The safety model, because archives and images come from strangers:

* Every path is created relative to a directory file descriptor, one
  component at a time, with ``O_NOFOLLOW``: a symlink in the tree is never
  followed while writing, whatever its target.  Absolute and relative
  symlink targets are both normal in a rootfs and are stored verbatim; a
  later member whose path goes *through* a symlink is refused.
* Member names must be relative and free of ``..``; hard links must name a
  regular file this import already wrote; device nodes and FIFOs need
  ``allow_devices``; the regular files may not add up to more than
  ``max_bytes``.
* Ownership is numeric, modes keep setuid/setgid bits (set after chown,
  which clears them), xattrs come from PAX ``SCHILY.xattr.*`` headers and
  are set after chown too (chown drops ``security.capability``).
  Directory modes and mtimes are applied at the end, deepest first, so
  writing their content neither fails on a read-only mode nor bumps the
  mtime.
* Archives are read in streaming mode and the compressed stream is checked
  to its end (gzip CRC, xz check, zstd exit status), so a truncated
  download is an error rather than a half tree.

Nothing here prints; errors are ``corral.errors`` exceptions.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import json
import lzma
import os
import platform
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from corral.errors import (
    CleanupError,
    ConflictError,
    UnsupportedError,
    ValidationError,
    from_oserror,
)

Progress = Callable[[str, int, int | None], None]

# Limits on what an archive may ask of us.  MAX_MEMBERS is a module constant
# so tests can lower it instead of building ten million headers.
MAX_MEMBERS = 10_000_000
MAX_NAME = 4096

_CHUNK = 1 << 20
_JSON_LIMIT = 4 << 20          # manifests, indexes, configs are small: no JSON bombs
_PROGRESS_STEP = 8 << 20       # report at most every 8 MiB of input
_DRAIN_LIMIT = 64 << 20        # bytes after the tar end marker we still read to check the stream
_HEADER_LIMIT = 1 << 20        # PAX / GNU long-name headers: tarfile reads them whole into memory

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a regular file must not hang the open.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY

_MAGIC_GZIP = b"\x1f\x8b"
_MAGIC_XZ = b"\xfd7zXZ\x00"
_MAGIC_ZSTD = b"\x28\xb5\x2f\xfd"

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"

_XATTR_NAMESPACES = ("user.", "trusted.", "security.")
_XATTR_ACLS = ("system.posix_acl_access", "system.posix_acl_default")
_PAX_XATTR = "SCHILY.xattr."

_REF_NAME = "org.opencontainers.image.ref.name"
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
_LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
_DIGEST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")

# uname -m -> OCI/Go architecture names
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "mips64": "mips64le", "loongarch64": "loong64"}


# --------------------------------------------------------------------------- helpers

def _opendir_nofollow(base_fd: int, parts: list[str]) -> int:
    """Open directory ``parts`` below ``base_fd``; a symlink anywhere fails (ELOOP/ENOTDIR)."""
    fd = os.dup(base_fd)
    try:
        for comp in parts:
            nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------------- detection

def detect(source: str) -> str:
    """Name the kind of ``source``: "dir", "tar", "oci" or "oci-archive"."""
    if source.startswith("oci:"):
        path, _ = _split_ref(source[4:], directory=True)
        if not os.path.isfile(os.path.join(path, "oci-layout")):
            raise ValidationError(f"'{path}' is not an OCI image layout "
                                  "(it has no oci-layout file)")
        return "oci"
    if source.startswith("oci-archive:"):
        _split_ref(source[12:], directory=False)
        return "oci-archive"
    if os.path.isdir(source):
        return "dir"
    if not os.path.lexists(source):
        raise ValidationError(f"source '{source}' does not exist")
    if not os.path.isfile(source):
        raise ValidationError(f"source '{source}' is neither a directory nor a regular file")
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise from_oserror(f"cannot open source '{source}'", exc) from exc
    try:
        kind = _sniff(fd)
    finally:
        os.close(fd)
    if kind is None:
        raise ValidationError(
            f"source '{source}' is not a tar, tar.gz, tar.xz or tar.zst archive",
            hint="Give a directory, a root filesystem tarball, oci:LAYOUT_DIR[:TAG] "
                 "or oci-archive:FILE[:TAG].")
    return "tar"


def _sniff(fd: int) -> str | None:
    """Name the container format from magic bytes; file names lie."""
    head = os.pread(fd, 512, 0)
    if head.startswith(_MAGIC_GZIP):
        return "gzip"
    if head.startswith(_MAGIC_XZ):
        return "xz"
    if head.startswith(_MAGIC_ZSTD):
        return "zstd"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def _split_ref(rest: str, *, directory: bool) -> tuple[str, str | None]:
    """Split ``PATH[:TAG]``; the path may itself contain colons, the tag may too."""
    def exists(path: str) -> bool:
        return os.path.isdir(path) if directory else os.path.isfile(path)

    if rest and exists(rest):
        return rest, None
    for i, ch in enumerate(rest):
        if ch == ":" and i and i + 1 < len(rest) and exists(rest[:i]):
            return rest[:i], rest[i + 1:]
    what = "OCI image layout directory" if directory else "OCI archive"
    raise ValidationError(f"{what} '{rest}' does not exist")


# --------------------------------------------------------------------------- entry point

def import_into(source: str, dest: str, *, max_bytes: int = 64 * 2**30,
                allow_devices: bool = False,
                progress: Progress | None = None) -> dict[str, Any]:
    """Fill the empty directory ``dest`` from ``source``; return metadata.

    "bytes" counts regular-file data written, "files" every entry written
    (directories, files, links, nodes; not the root, not whiteouts), both
    summed over all layers of an image.
    """
    fmt = detect(source)
    _check_dest(dest)
    if max_bytes < 0:
        raise ValidationError(f"size limit {max_bytes} is negative")
    result: dict[str, Any] = {"source": source, "format": fmt}

    tree = _Tree(dest, max_bytes=max_bytes, allow_devices=allow_devices, progress=progress)
    try:
        if fmt == "tar":
            _import_tar(tree, source)
            result["layers"] = 1
        elif fmt == "dir":
            _import_dir(tree, source, dest)
            result["layers"] = 1
        elif fmt == "oci":
            path, tag = _split_ref(source[4:], directory=True)
            result.update(_import_layout(tree, path, tag))
        else:
            path, tag = _split_ref(source[12:], directory=False)
            result.update(_import_oci_archive(tree, path, tag, dest, max_bytes, progress))
        tree.finish()
        result["bytes"] = tree.bytes
        result["files"] = tree.files
        result.update(_os_release(tree.root))
    finally:
        tree.close()
    return result


def _check_dest(dest: str) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        raise ValidationError(f"destination '{dest}' does not exist") from None
    except OSError as exc:
        raise from_oserror(f"cannot inspect destination '{dest}'", exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ValidationError(f"destination '{dest}' is not a directory")
    if os.listdir(dest):
        raise ValidationError(f"destination '{dest}' is not empty")


# --------------------------------------------------------------------------- the writer

@dataclass(frozen=True, slots=True)
class _Meta:
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: dict[str, bytes]


def _show(name: str) -> str:
    """A member name fit for a one-line message: escaped and not 4 KiB long."""
    text = name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= 200 else text[:200] + "..."


class _Tree:
    """Writes entries under ``dest`` without ever following a symlink.

    Paths are lists of components already cleaned by :meth:`clean`.  Every
    directory on the way is opened with ``O_NOFOLLOW`` relative to its
    parent's descriptor, so neither a hostile member nor a symlink the
    archive created earlier can redirect a write outside the tree.
    """

    def __init__(self, dest: str, *, max_bytes: int, allow_devices: bool,
                 progress: Progress | None) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.allow_devices = allow_devices
        self.progress = progress
        self.where = "archive member"     # message prefix: whose member is refused
        self.noun = "archive"             # what expands past the size limit
        self.bytes = 0                    # regular-file bytes written
        self.copied = 0                   # same, counted while copying, for progress
        self.files = 0                    # entries written (not counting the root)
        self.regular: set[str] = set()    # regular files written: valid hard-link targets
        self.dirs: dict[str, tuple[int, int]] = {}  # rel -> (mode, mtime_ns), applied at the end
        self._cached: tuple[str, int] | None = None  # last parent directory opened
        self._step = ""
        self._position: Callable[[], tuple[int, int | None]] = lambda: (self.copied, None)
        self._reported = -_PROGRESS_STEP
        try:
            self.root = os.open(dest, _DIR_FLAGS)
        except OSError as exc:
            raise from_oserror(f"cannot open destination '{dest}'", exc) from exc

    # -- bookkeeping

    def close(self) -> None:
        self._drop_cache("")
        os.close(self.root)

    def refuse(self, label: str, reason: str) -> ValidationError:
        return ValidationError(f"{self.where} '{_show(label)}' is refused: {reason}")

    @contextmanager
    def _writing(self, label: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise from_oserror(f"cannot write '{_show(label)}' into {self.dest}", exc) from exc

    def stage(self, step: str,
              position: Callable[[], tuple[int, int | None]] | None = None) -> None:
        self._step = step
        self._position = position or (lambda: (self.copied, None))
        self._reported = -_PROGRESS_STEP
        self.tick()

    def tick(self, final: bool = False) -> None:
        if self.progress is None:
            return
        done, total = self._position()
        if final or done - self._reported >= _PROGRESS_STEP:
            self._reported = done
            self.progress(self._step, done, total)

    def end_stage(self) -> None:
        """Report the stage's last position and freeze it (its input may close next)."""
        done, total = self._position()
        self._position = lambda: (done, total)
        self.tick(final=True)

    def clean(self, label: str, name: str, what: str = "path") -> list[str]:
        """Components of an archive path, or a refusal naming the member."""
        if "\0" in name:
            raise self.refuse(label, f"{what} contains a NUL byte")
        if len(os.fsencode(name)) > MAX_NAME:
            raise self.refuse(label, f"{what} is longer than {MAX_NAME} bytes")
        if name.startswith("/"):
            raise self.refuse(label, f"{what} is absolute")
        while name.startswith("./"):
            name = name[2:]
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse(label, f"{what} leaves the tree")
        return parts

    def _forget(self, rel: str, subtree: bool) -> None:
        self.regular.discard(rel)
        self.dirs.pop(rel, None)
        if subtree:
            prefix = rel + "/"
            self.regular = {p for p in self.regular if not p.startswith(prefix)}
            self.dirs = {p: v for p, v in self.dirs.items() if not p.startswith(prefix)}

    def _drop_cache(self, rel: str) -> None:
        """Close the cached directory if it is ``rel`` or below it ("" = any)."""
        if self._cached is None:
            return
        key, fd = self._cached
        if not rel or key == rel or key.startswith(rel + "/"):
            self._cached = None
            os.close(fd)

    # -- path walking

    def _walk(self, label: str, parts: list[str], *, create: bool, cache: bool) -> int | None:
        """Open the directory ``parts`` below the root, never through a symlink.

        With ``create``, missing directories are made (mode 0755, like tar's
        implicit parents); without, a missing one returns None.  A cached
        result is borrowed (do not close it); an uncached one is owned.
        """
        key = "/".join(parts)
        if cache:
            if not parts:
                return self.root
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        fd = os.dup(self.root)
        try:
            for comp in parts:
                created = False
                try:
                    st = os.lstat(comp, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    created = True
                else:
                    if stat.S_ISLNK(st.st_mode):
                        raise self.refuse(label, "path goes through a symlink")
                    if not stat.S_ISDIR(st.st_mode):
                        raise self.refuse(label, "path goes through a non-directory")
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self.refuse(label, "path goes through a symlink") from None
                    raise
                os.close(fd)
                fd = nfd
                if created:
                    os.fchmod(fd, 0o755)   # not subject to the umask: a rootfs must be traversable
        except BaseException:
            os.close(fd)
            raise
        if cache:
            self._drop_cache("")
            self._cached = (key, fd)
        return fd

    def _parent(self, label: str, parts: list[str], *, create: bool = True) -> int | None:
        return self._walk(label, parts[:-1], create=create, cache=True)

    def _clear(self, pfd: int, name: str, rel: str, *, keep_dir: bool = False) -> bool:
        """Remove whatever is at ``name``; with ``keep_dir`` a directory stays (returns True)."""
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self._drop_cache(rel)
            shutil.rmtree(name, dir_fd=pfd)   # fd-based, does not follow symlinks
            self._forget(rel, subtree=True)
        else:
            os.unlink(name, dir_fd=pfd)
            self._forget(rel, subtree=False)
        return False

    # -- metadata

    def _xattrs(self, label: str, target: int | str, xattrs: dict[str, bytes], kind: str) -> None:
        for key, value in xattrs.items():
            if not (key.startswith(_XATTR_NAMESPACES) or key in _XATTR_ACLS):
                raise self.refuse(label, f"xattr '{_show(key)}' is not in a known namespace")
            if key.startswith("user.") and kind not in ("file", "dir"):
                continue   # the kernel allows user.* only on files and directories
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as exc:
                # Unprivileged or SELinux-less hosts cannot take these; the
                # tree is still right without them.  Anything else is real.
                optional = key.startswith("trusted.") or key == "security.selinux"
                if optional and exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    continue
                raise from_oserror(f"cannot set xattr '{_show(key)}' on '{_show(label)}'", exc) \
                    from exc

    def _finish_fd(self, label: str, fd: int, meta: _Meta, kind: str) -> None:
        # chown first: it clears setuid/setgid bits and security.capability.
        os.fchown(fd, meta.uid, meta.gid)
        os.fchmod(fd, meta.mode)
        self._xattrs(label, fd, meta.xattrs, kind)
        os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))

    # -- entries

    def add_dir(self, label: str, parts: list[str], meta: _Meta) -> None:
        with self._writing(label):
            rel = "/".join(parts)
            if parts:
                pfd = self._parent(label, parts)
                assert pfd is not None
                name = parts[-1]
                if not self._clear(pfd, name, rel, keep_dir=True):
                    os.mkdir(name, 0o700, dir_fd=pfd)
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
                self.files += 1
            else:
                fd = os.dup(self.root)
            try:
                os.fchown(fd, meta.uid, meta.gid)
                self._xattrs(label, fd, meta.xattrs, "dir")
            finally:
                os.close(fd)
            # Mode and mtime wait for finish(): content written later would
            # bump the mtime, and a 0555 directory must still take files.
            self.dirs[rel] = (meta.mode, meta.mtime_ns)

    def add_file(self, label: str, parts: list[str], meta: _Meta, size: int,
                 read: Callable[[int], bytes]) -> None:
        if not parts:
            raise self.refuse(label, "the root of the tree must be a directory")
        if self.bytes + size > self.max_bytes:
            raise self.refuse(label, f"{self.noun} expands past the limit of "
                                     f"{self.max_bytes} bytes")
        with self._writing(label):
            pfd = self._parent(label, parts)
            assert pfd is not None
            name, rel = parts[-1], "/".join(parts)
            self._clear(pfd, name, rel)
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=pfd)
            try:
                left = size
                while left:
                    chunk = read(min(_CHUNK, left))
                    if not chunk:
                        raise self.refuse(label, "data ends before its stated size")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    left -= len(chunk)
                    self.copied += len(chunk)
                    self.tick()
                self._finish_fd(label, fd, meta, "file")
            finally:
                os.close(fd)
            self.regular.add(rel)
            self.bytes += size
            self.files += 1

    def add_symlink(self, label: str, parts: list[str], target: str, meta: _Meta) -> None:
        if not parts:
            raise self.refuse(label, "the root of the tree must be a directory")
        if not target or "\0" in target or len(os.fsencode(target)) > MAX_NAME:
            raise self.refuse(label, f"symlink target is empty or longer than {MAX_NAME} bytes")
        with self._writing(label):
            pfd = self._parent(label, parts)
            assert pfd is not None
            name = parts[-1]
            self._clear(pfd, name, "/".join(parts))
            # The target is stored, never resolved: absolute targets are
            # normal in a rootfs and only mean something inside the container.
            os.symlink(target, name, dir_fd=pfd)
            os.chown(name, meta.uid, meta.gid, dir_fd=pfd, follow_symlinks=False)
            self._xattrs(label, f"/proc/self/fd/{pfd}/{name}", meta.xattrs, "symlink")
            os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=pfd, follow_symlinks=False)
            self.files += 1

    def add_hardlink(self, label: str, parts: list[str], target: list[str]) -> None:
        rel, trel = "/".join(parts), "/".join(target)
        if not parts:
            raise self.refuse(label, "the root of the tree must be a directory")
        if rel == trel:
            raise self.refuse(label, "hard link points to itself")
        if trel.startswith(rel + "/"):
            raise self.refuse(label, "hard link would replace the directory of its own target")
        if trel not in self.regular:
            raise self.refuse(label, f"hard link target '{_show(trel)}' is not a regular file "
                                     "written earlier in the tree")
        with self._writing(label):
            tfd = self._walk(label, target[:-1], create=False, cache=False)
            if tfd is None:
                raise self.refuse(label, f"hard link target '{_show(trel)}' is missing")
            try:
                st = os.lstat(target[-1], dir_fd=tfd)
                if not stat.S_ISREG(st.st_mode):
                    raise self.refuse(label, f"hard link target '{_show(trel)}' is not a "
                                             "regular file")
                pfd = self._parent(label, parts)
                assert pfd is not None
                self._clear(pfd, parts[-1], rel)
                os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd,
                        follow_symlinks=False)
            finally:
                os.close(tfd)
            self.regular.add(rel)
            self.files += 1

    def add_special(self, label: str, parts: list[str], kind: str, meta: _Meta,
                    major: int = 0, minor: int = 0) -> None:
        """A character or block device ("chr", "blk") or a FIFO ("fifo")."""
        if not parts:
            raise self.refuse(label, "the root of the tree must be a directory")
        if kind == "chr" and major == 0 and minor == 0:
            # overlayfs' whiteout: meaningless (and hiding files) in a plain tree
            raise self.refuse(label, "an overlayfs whiteout (character device 0:0) is never valid "
                                     "in a root filesystem")
        if not self.allow_devices:
            what = "FIFOs" if kind == "fifo" else "device nodes"
            raise self.refuse(label, f"{what} are not allowed (allow_devices is off)")
        with self._writing(label):
            pfd = self._parent(label, parts)
            assert pfd is not None
            name = parts[-1]
            self._clear(pfd, name, "/".join(parts))
            if kind == "fifo":
                os.mkfifo(name, 0o600, dir_fd=pfd)
            else:
                fmt = stat.S_IFCHR if kind == "chr" else stat.S_IFBLK
                os.mknod(name, 0o600 | fmt, os.makedev(major, minor), dir_fd=pfd)
            os.chown(name, meta.uid, meta.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(name, meta.mode, dir_fd=pfd)   # just made by us: not a symlink
            self._xattrs(label, f"/proc/self/fd/{pfd}/{name}", meta.xattrs, kind)
            os.utime(name, ns=(meta.mtime_ns, meta.mtime_ns), dir_fd=pfd, follow_symlinks=False)
            self.files += 1

    def remove(self, label: str, parts: list[str]) -> None:
        """Delete ``parts`` (file or whole tree) if it exists: a layer's whiteout."""
        with self._writing(label):
            pfd = self._parent(label, parts, create=False)
            if pfd is not None:
                self._clear(pfd, parts[-1], "/".join(parts))

    def prune(self, label: str, parts: list[str], keep: Callable[[str], bool]) -> None:
        """Empty directory ``parts`` of everything ``keep`` rejects, recursing into kept dirs."""
        with self._writing(label):
            todo = [parts]
            while todo:
                dparts = todo.pop()
                fd = self._walk(label, dparts, create=False, cache=False)
                if fd is None:
                    continue
                try:
                    for name in os.listdir(fd):
                        child = [*dparts, name]
                        rel = "/".join(child)
                        if not keep(rel):
                            self._clear(fd, name, rel)
                        elif stat.S_ISDIR(os.lstat(name, dir_fd=fd).st_mode):
                            todo.append(child)
                finally:
                    os.close(fd)

    def finish(self) -> None:
        """Apply directory modes and mtimes, deepest first, the root last."""
        order = sorted(self.dirs, key=lambda r: r.count("/") if r else -1, reverse=True)
        for rel in order:
            mode, mtime_ns = self.dirs[rel]
            with self._writing(rel or "."):
                fd = self._walk(rel, rel.split("/") if rel else [], create=False, cache=False)
                if fd is None:
                    continue
                try:
                    os.fchmod(fd, mode)
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                finally:
                    os.close(fd)


# --------------------------------------------------------------------------- tar reading

class _TarInfo(tarfile.TarInfo):
    """tarfile's TarInfo with two guards.

    It remembers why tarfile stopped, since tarfile treats a truncated or
    garbled header after the first member as a silent end of archive; and it
    refuses extended headers that tarfile would read whole into memory.
    """

    def _proc_pax(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        self._check_header_size()
        return super()._proc_pax(tar)  # type: ignore[misc]

    def _proc_gnulong(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        self._check_header_size()
        return super()._proc_gnulong(tar)  # type: ignore[misc]

    def _check_header_size(self) -> None:
        if self.size > _HEADER_LIMIT:
            # ReadError, unlike a HeaderError, is not taken for the end of the archive.
            raise tarfile.ReadError(f"extended header of {self.size} bytes is larger than "
                                    f"{_HEADER_LIMIT}")

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        try:
            return super().fromtarfile(tar)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as exc:
            tar._corral_bad_end = str(exc)  # type: ignore[attr-defined]
            raise


class _FdReader:
    """A minimal ``read`` over a raw descriptor that counts input for progress."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        data = os.read(self.fd, _CHUNK if size is None or size < 0 else size)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


@contextmanager
def _tar_stream(fd: int, label: str) -> Iterator[tuple[tarfile.TarFile, Callable[[], int]]]:
    """Open the archive at ``fd`` as a streaming TarFile; yield it and a position function.

    gzip and xz are decompressed by the stdlib readers (which check CRCs and
    notice truncation, unlike tarfile's own "r|gz"); zstd goes through the
    zstd program, which Python 3.11 lacks.
    """
    kind = _sniff(fd)
    os.lseek(fd, 0, os.SEEK_SET)
    raw = _FdReader(fd)
    with ExitStack() as stack:
        proc: subprocess.Popen[bytes] | None = None
        stream: Any = raw
        position: Callable[[], int] = raw.tell
        if kind == "zstd":
            zstd = shutil.which("zstd")
            if zstd is None:
                raise UnsupportedError(f"cannot read {label}: it is zstd-compressed and the zstd "
                                       "program is not installed",
                                       hint="Install it: apt-get install zstd.")
            errlog = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen([zstd, "-dcq"], stdin=fd, stdout=subprocess.PIPE,
                                    stderr=errlog, close_fds=True)
            stack.callback(_reap, proc)
            stream = proc.stdout
            # The child shares our file offset, so lseek() on fd shows its progress.
            position = functools.partial(os.lseek, fd, 0, os.SEEK_CUR)
        elif kind == "gzip":
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))  # type: ignore
        elif kind == "xz":
            stream = stack.enter_context(lzma.LZMAFile(raw))  # type: ignore
        elif kind != "tar":
            raise ValidationError(f"{label} is not a tar, tar.gz, tar.xz or tar.zst archive")

        def zstd_failed() -> None:
            """Raise zstd's own complaint if it failed; it says more than tarfile."""
            if proc is not None and _drain(stream) and proc.wait() != 0:
                raise ValidationError(f"{label} is not valid zstd data: "
                                      f"{_tail(errlog, proc.returncode)}")

        try:
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|", tarinfo=_TarInfo,
                                                   encoding="utf-8", errors="surrogateescape"))
        except _CORRUPT as exc:
            zstd_failed()   # e.g. a cut-short .zst yields no output at all: "empty file"
            raise ValidationError(f"{label} is not a valid archive: {exc}") from None
        yield tar, position
        bad_end = getattr(tar, "_corral_bad_end", None)
        if bad_end:
            raise ValidationError(f"{label} is corrupt: {bad_end}")
        # Read on past the end marker so the decompressor checks its trailer.
        try:
            zstd_failed()
            _drain(stream)
        except _CORRUPT as exc:
            raise ValidationError(f"{label} is corrupt: {exc}") from None


def _drain(stream: Any) -> bool:
    """Read and drop the rest of a stream; True if its end was reached within the limit."""
    drained = 0
    while drained < _DRAIN_LIMIT:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return True
        drained += len(chunk)
    return False


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Stop a decompressor we no longer read from (it may be blocked on a full pipe)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(errlog: BinaryIO, returncode: int) -> str:
    """The last line zstd wrote to stderr, for a one-line message."""
    errlog.seek(0)
    lines = errlog.read()[-300:].decode(errors="replace").strip().splitlines()
    return lines[-1].strip() if lines else f"zstd exited with status {returncode}"


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo, label: str,
            what: str) -> Callable[[int], bytes]:
    fileobj = tar.extractfile(member)
    assert fileobj is not None

    def read(size: int) -> bytes:
        try:
            return fileobj.read(size)
        except _CORRUPT as exc:
            raise ValidationError(f"{what} is corrupt at member '{_show(label)}': {exc}") from None
    return read


class _Layer:
    """What one image layer wrote, so its whiteouts only hide lower layers."""

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.ancestors: set[str] = set()

    def record(self, parts: list[str]) -> None:
        self.paths.add("/".join(parts))
        for i in range(len(parts) - 1, -1, -1):
            prefix = "/".join(parts[:i])
            if prefix in self.ancestors:
                break
            self.ancestors.add(prefix)

    def owns(self, rel: str) -> bool:
        return rel in self.paths or rel in self.ancestors

    def whiteout(self, tree: _Tree, label: str, parts: list[str]) -> None:
        base, dparts = parts[-1], parts[:-1]
        if base == _OPAQUE:
            # Everything lower layers put under the directory goes; what this
            # layer wrote (before or after the marker) stays.
            tree.prune(label, dparts, self.owns)
            return
        if base.startswith(_WHITEOUT + _WHITEOUT):
            return   # aufs bookkeeping (.wh..wh.plnk etc.): never part of a tree
        name = base[len(_WHITEOUT):]
        if not name or name in (".", ".."):
            raise tree.refuse(label, "whiteout names no file")
        target = [*dparts, name]
        if not self.owns("/".join(target)):
            tree.remove(label, target)


def _meta_from_member(tree: _Tree, label: str, m: tarfile.TarInfo) -> _Meta:
    for ident in (m.uid, m.gid):
        # 2**32-1 is chown's "leave unchanged": it would keep the file root-owned.
        if not 0 <= ident < 2**32 - 1:
            raise tree.refuse(label, f"owner id {ident} is out of range")
    mtime = m.mtime
    mtime_ns = mtime * 1_000_000_000 if isinstance(mtime, int) else round(mtime * 1e9)
    if not -(2**62) < mtime_ns < 2**62:
        raise tree.refuse(label, "modification time is out of range")
    xattrs = {k[len(_PAX_XATTR):]: v.encode("utf-8", "surrogateescape")
              for k, v in m.pax_headers.items() if k.startswith(_PAX_XATTR)}
    return _Meta(m.mode & 0o7777, m.uid, m.gid, mtime_ns, xattrs)


def _extract(tree: _Tree, tar: tarfile.TarFile, layer: _Layer | None, what: str) -> None:
    """Apply every member of a streaming tar to the tree; ``what`` names the archive."""
    count = 0
    while True:
        try:
            member = tar.next()
        except _CORRUPT as exc:
            raise ValidationError(f"{what} is corrupt: {exc}") from None
        if member is None:
            break
        tar.members.clear()   # stream mode keeps every header otherwise: 10M members = GBs
        count += 1
        if count > MAX_MEMBERS:
            raise ValidationError(f"{what} is refused: it has more than {MAX_MEMBERS} members")
        _apply_member(tree, tar, member, layer, what)
        tree.tick()


def _apply_member(tree: _Tree, tar: tarfile.TarFile, m: tarfile.TarInfo,
                  layer: _Layer | None, what: str) -> None:
    label = m.name
    parts = tree.clean(label, m.name)
    if any(p.startswith(_WHITEOUT) for p in parts[:-1]):
        raise tree.refuse(label, "a whiteout marker cannot be a directory")
    if parts and parts[-1].startswith(_WHITEOUT):
        if layer is None:
            raise tree.refuse(label, "whiteout markers are only valid in image layers, "
                                     "not in a root filesystem archive")
        layer.whiteout(tree, label, parts)
        return
    if m.islnk():
        target = tree.clean(label, m.linkname, "hard link target")
        if layer is not None:
            layer.record(parts)
        tree.add_hardlink(label, parts, target)
        return
    meta = _meta_from_member(tree, label, m)
    if layer is not None:
        layer.record(parts)
    if m.isdir():
        tree.add_dir(label, parts, meta)
    elif m.isreg():
        tree.add_file(label, parts, meta, m.size, _reader(tar, m, label, what))
    elif m.issym():
        tree.add_symlink(label, parts, m.linkname, meta)
    elif m.ischr() or m.isblk():
        tree.add_special(label, parts, "chr" if m.ischr() else "blk", meta, m.devmajor, m.devminor)
    elif m.isfifo():
        tree.add_special(label, parts, "fifo", meta)
    else:
        raise tree.refuse(label, f"member type {m.type!r} is not supported")


def _import_tar(tree: _Tree, path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        total = os.fstat(fd).st_size
        label = f"archive '{path}'"
        with _tar_stream(fd, label) as (tar, position):
            tree.stage("extract", lambda: (position(), total))
            _extract(tree, tar, None, label)
        tree.end_stage()   # after the stream's trailer was read, before fd closes
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- directories

def _source_xattrs(target: int | str) -> dict[str, bytes]:
    follow = isinstance(target, int)
    try:
        keys = os.listxattr(target, follow_symlinks=follow)
        return {k: os.getxattr(target, k, follow_symlinks=follow) for k in keys}
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise


def _stat_meta(st: os.stat_result, xattrs: dict[str, bytes]) -> _Meta:
    return _Meta(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, xattrs)


def _import_dir(tree: _Tree, source: str, dest: str) -> None:
    """Copy a directory tree with the archive rules (no symlink followed, no devices...)."""
    real_src, real_dest = os.path.realpath(source), os.path.realpath(dest)
    if real_dest == real_src or real_dest.startswith(real_src.rstrip("/") + "/"):
        raise ValidationError(f"destination '{dest}' is inside the source directory '{source}'")
    tree.where, tree.noun = "source entry", "source directory"
    tree.stage("copy")
    try:
        src_root = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_oserror(f"cannot open source directory '{source}'", exc) from exc
    links: dict[tuple[int, int], list[str]] = {}
    count = 0
    try:
        tree.add_dir(".", [], _stat_meta(os.fstat(src_root), _source_xattrs(src_root)))
        todo: list[list[str]] = [[]]
        while todo:
            dparts = todo.pop()
            try:
                # Reopened from the top, no-follow, so that fds stay few however wide the tree.
                dfd = _opendir_nofollow(src_root, dparts)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise ValidationError(f"source directory '{source}' changed while it was "
                                          "being copied") from None
                raise from_oserror(f"cannot read source directory '{source}'", exc) from exc
            try:
                for name in sorted(os.listdir(dfd)):
                    count += 1
                    if count > MAX_MEMBERS:
                        raise ValidationError(f"source directory '{source}' is refused: it has "
                                              f"more than {MAX_MEMBERS} entries")
                    parts = [*dparts, name]
                    if _copy_entry(tree, dfd, name, parts, links):
                        todo.append(parts)
            except OSError as exc:
                raise from_oserror(f"cannot read source directory '{source}'", exc) from exc
            finally:
                os.close(dfd)
        tree.end_stage()
    finally:
        os.close(src_root)


def _copy_entry(tree: _Tree, dfd: int, name: str, parts: list[str],
                links: dict[tuple[int, int], list[str]]) -> bool:
    """Copy one entry of the source; True when it is a directory to descend into."""
    label = "/".join(parts)
    st = os.lstat(name, dir_fd=dfd)
    mode = st.st_mode
    proc_path = f"/proc/self/fd/{dfd}/{name}"
    if stat.S_ISDIR(mode):
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            xattrs = _source_xattrs(fd)
        finally:
            os.close(fd)
        tree.add_dir(label, parts, _stat_meta(st, xattrs))
        return True
    if stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            tree.add_hardlink(label, parts, links[key])
            return False
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != key:
                raise ValidationError(f"source entry '{_show(label)}' changed while it was "
                                      "being copied")
            tree.add_file(label, parts, _stat_meta(st, _source_xattrs(fd)), st.st_size,
                          lambda size: os.read(fd, size))
        finally:
            os.close(fd)
        if st.st_nlink > 1:
            links[key] = parts
    elif stat.S_ISLNK(mode):
        tree.add_symlink(label, parts, os.readlink(name, dir_fd=dfd),
                         _stat_meta(st, _source_xattrs(proc_path)))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        kind = "chr" if stat.S_ISCHR(mode) else "blk" if stat.S_ISBLK(mode) else "fifo"
        major, minor = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind != "fifo" else (0, 0)
        # Refused ones (no allow_devices) need no xattrs read first.
        xattrs = _source_xattrs(proc_path) if tree.allow_devices else {}
        tree.add_special(label, parts, kind, _stat_meta(st, xattrs), major, minor)
    elif stat.S_ISSOCK(mode):
        pass   # a socket belongs to a running process; like tar, leave it out
    else:
        raise tree.refuse(label, "file type is not supported")
    return False


# --------------------------------------------------------------------------- OCI images

def _host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _descriptor(obj: Any, what: str) -> tuple[str, str, int]:
    if not isinstance(obj, dict):
        raise ValidationError(f"{what} is not a descriptor object")
    digest, size, media = obj.get("digest"), obj.get("size"), obj.get("mediaType", "")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValidationError(f"{what} has a malformed digest {_show(str(digest))!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValidationError(f"{what} has a malformed size")
    if not isinstance(media, str):
        raise ValidationError(f"{what} has a malformed media type")
    return media, digest, size


class _Layout:
    """Read-only access to an OCI image layout; every blob is verified before use."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise from_oserror(f"cannot open OCI image layout '{path}'", exc) from exc

    def close(self) -> None:
        os.close(self.fd)

    def _open(self, parts: list[str]) -> int:
        """Open a file of the layout without following symlinks inside it."""
        fd = _opendir_nofollow(self.fd, parts[:-1])
        try:
            return os.open(parts[-1], _READ_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)

    def read_json(self, name: str) -> Any:
        try:
            fd = self._open([name])
        except FileNotFoundError:
            raise ValidationError(f"OCI image layout '{self.path}' has no {name}") from None
        except OSError as exc:
            raise from_oserror(f"cannot open {name} of OCI image layout '{self.path}'", exc) \
                from exc
        try:
            data = os.read(fd, _JSON_LIMIT + 1)
        finally:
            os.close(fd)
        return self._parse(data, f"{name} of OCI image layout '{self.path}'")

    @staticmethod
    def _parse(data: bytes, what: str) -> Any:
        if len(data) > _JSON_LIMIT:
            raise ValidationError(f"{what} is larger than {_JSON_LIMIT} bytes")
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise ValidationError(f"{what} is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise ValidationError(f"{what} is not a JSON object")
        return obj

    def blob(self, desc: Any, what: str,
             progress: Callable[[int], None] | None = None) -> int:
        """Open a blob and check its size and digest; return its fd at offset 0."""
        _, digest, size = _descriptor(desc, what)
        alg, hexdigest = digest.split(":")
        try:
            fd = self._open(["blobs", alg, hexdigest])
        except FileNotFoundError:
            raise ValidationError(f"blob {digest} is missing from OCI image layout "
                                  f"'{self.path}'") from None
        except OSError as exc:
            raise from_oserror(f"cannot open blob {digest}", exc) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValidationError(f"blob {digest} is corrupt: it is not a regular file")
            if st.st_size != size:
                raise ValidationError(f"blob {digest} is corrupt: {st.st_size} bytes instead "
                                      f"of {size}")
            hasher = hashlib.new(alg)
            done = 0
            while chunk := os.read(fd, _CHUNK):
                hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
            if hasher.hexdigest() != hexdigest:
                raise ValidationError(f"blob {digest} is corrupt: its content does not match "
                                      "its digest")
            os.lseek(fd, 0, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def blob_json(self, desc: Any, what: str) -> Any:
        _, digest, size = _descriptor(desc, what)
        if size > _JSON_LIMIT:
            raise ValidationError(f"{what} {digest} is larger than {_JSON_LIMIT} bytes")
        fd = self.blob(desc, what)
        try:
            data = os.read(fd, _JSON_LIMIT + 1)
        finally:
            os.close(fd)
        return self._parse(data, f"{what} {digest}")


def _tag_matches(ref: Any, tag: str) -> bool:
    """"latest" matches "latest" and "docker.io/library/debian:latest"."""
    if not isinstance(ref, str):
        return False
    if ref == tag:
        return True
    last = ref.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] == tag


def _ref(desc: Any) -> str | None:
    notes = desc.get("annotations") if isinstance(desc, dict) else None
    ref = notes.get(_REF_NAME) if isinstance(notes, dict) else None
    return ref if isinstance(ref, str) else None


def _select(layout: _Layout, tag: str | None) -> tuple[Any, str | None]:
    """The top-level descriptor for ``tag`` (default: the only image, or "latest")."""
    index = layout.read_json("index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise ValidationError(f"OCI image layout '{layout.path}' lists no images")
    tags = sorted({r for d in manifests if (r := _ref(d))})
    hint = f"Its tags: {', '.join(tags)}." if tags else "It has no tags."
    if tag is None:
        if len(manifests) == 1:
            return manifests[0], _ref(manifests[0])
        tag = "latest"
        hits = [d for d in manifests if _tag_matches(_ref(d), tag)]
        if not hits:
            raise ValidationError(f"OCI image layout '{layout.path}' holds {len(manifests)} "
                                  "images and none is tagged 'latest'",
                                  hint=f"Name one as oci:{layout.path}:TAG. {hint}")
    else:
        hits = [d for d in manifests if _tag_matches(_ref(d), tag)]
        if not hits:
            raise ValidationError(f"OCI image layout '{layout.path}' has no tag '{tag}'", hint=hint)
    digests = {d.get("digest") if isinstance(d, dict) else None for d in hits}
    if len(digests) > 1:
        raise ValidationError(f"tag '{tag}' names {len(digests)} different images in OCI image "
                              f"layout '{layout.path}'", hint=f"Give the full name. {hint}")
    return hits[0], tag


def _pick_platform(index: dict[str, Any], digest: str) -> Any:
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise ValidationError(f"image index {digest} lists no images")
    arch = _host_arch()
    seen, unlabelled = [], []
    for d in entries:
        plat = d.get("platform") if isinstance(d, dict) else None
        if not isinstance(plat, dict):
            unlabelled.append(d)
            continue
        seen.append(f"{plat.get('os')}/{plat.get('architecture')}")
        if plat.get("os") == "linux" and plat.get("architecture") == arch:
            return d
    if len(entries) == 1 and unlabelled:
        return unlabelled[0]
    raise ValidationError(f"image index {digest} has no image for linux/{arch}",
                          hint=f"It has: {', '.join(seen) or 'no labelled platforms'}.")


def _resolve_manifest(layout: _Layout, desc: Any) -> tuple[str, dict[str, Any]]:
    """Follow nested image indexes down to a manifest; return (digest, manifest)."""
    for _ in range(8):
        media, digest, _size = _descriptor(desc, "image descriptor")
        obj = layout.blob_json(desc, "image manifest")
        kind = media or obj.get("mediaType", "")
        if kind in _INDEX_TYPES or (not kind and "manifests" in obj):
            desc = _pick_platform(obj, digest)
            continue
        if kind in _MANIFEST_TYPES or (not kind and "layers" in obj):
            return digest, obj
        raise ValidationError(f"image {digest} has unsupported media type '{_show(kind)}'")
    raise ValidationError("image indexes are nested too deeply")


def _import_layout(tree: _Tree, path: str, tag: str | None) -> dict[str, Any]:
    layout = _Layout(path)
    try:
        version = layout.read_json("oci-layout").get("imageLayoutVersion")
        if not isinstance(version, str):
            raise ValidationError(f"oci-layout of '{path}' has no imageLayoutVersion")
        desc, tag = _select(layout, tag)
        digest, manifest = _resolve_manifest(layout, desc)
        config = layout.blob_json(manifest.get("config"), "image config")
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise ValidationError(f"image manifest {digest} has no layer list")
        tree.noun = "image"
        total = len(layers)
        for i, ldesc in enumerate(layers, 1):
            step = f"layer {i}/{total}"
            media, ldigest, size = _descriptor(ldesc, f"{step} of image {digest}")
            if media not in _LAYER_TYPES:
                raise ValidationError(f"{step} ({ldigest}) has unsupported media type "
                                      f"'{_show(media)}'")
            verified = [0]
            tree.stage(f"verify {step}", lambda v=verified, n=size: (v[0], n))

            def hashed(done: int, v: list[int] = verified) -> None:
                v[0] = done
                tree.tick()
            fd = layout.blob(ldesc, step, hashed)
            try:
                tree.where = f"{step} member"
                what = f"{step} ({ldigest})"
                with _tar_stream(fd, what) as (tar, position):
                    tree.stage(step, lambda p=position, n=size: (p(), n))
                    _extract(tree, tar, _Layer(), what)
                tree.end_stage()
            finally:
                os.close(fd)
    finally:
        layout.close()
    cfg = config.get("config")
    return {"layers": total,
            "oci": {"digest": digest,
                    "config": cfg if isinstance(cfg, dict) else {},
                    "architecture": config.get("architecture"),
                    "os": config.get("os"),
                    "created": config.get("created"),
                    "tag": tag}}


def _import_oci_archive(tree: _Tree, path: str, tag: str | None, dest: str, max_bytes: int,
                        progress: Progress | None) -> dict[str, Any]:
    """Unpack the archive (with the archive rules) next to ``dest``, then import the layout."""
    scratch = dest.rstrip("/") + ".oci-tmp"
    try:
        os.mkdir(scratch, 0o700)
    except FileExistsError:
        raise ConflictError(f"scratch directory '{scratch}' already exists",
                            hint="It is left from an interrupted import; remove it.") from None
    except OSError as exc:
        raise from_oserror(f"cannot create scratch directory '{scratch}'", exc) from exc
    try:
        unpack = _Tree(scratch, max_bytes=max_bytes, allow_devices=False, progress=progress)
        try:
            _import_tar(unpack, path)
        finally:
            unpack.close()
        layout = scratch
        if not os.path.isfile(os.path.join(scratch, "oci-layout")):
            # Some tools wrap the layout in one top-level directory.
            subdirs = [e.path for e in os.scandir(scratch) if e.is_dir(follow_symlinks=False)]
            if len(subdirs) == 1 and os.path.isfile(os.path.join(subdirs[0], "oci-layout")):
                layout = subdirs[0]
            else:
                raise ValidationError(f"OCI archive '{path}' holds no oci-layout file")
        result = _import_layout(tree, layout, tag)
    except BaseException as exc:
        try:
            shutil.rmtree(scratch)
        except OSError as cleanup:
            raise CleanupError(exc, [cleanup]) from exc
        raise
    try:
        shutil.rmtree(scratch)
    except OSError as exc:
        raise from_oserror(f"cannot remove scratch directory '{scratch}'", exc) from exc
    return result


# --------------------------------------------------------------------------- os-release

def _open_in_root(root_fd: int, path: str) -> int | None:
    """Open a regular file of the tree resolving symlinks as if ``root_fd`` were "/".

    /etc/os-release is usually a symlink (to ../usr/lib/os-release); an
    imported tree's symlinks must not reach the host, so resolution is done
    here component by component, confined to the tree.
    """
    todo = [p for p in path.split("/") if p][::-1]
    dirs: list[int] = []
    hops = 0
    try:
        while todo:
            comp = todo.pop()
            cur = dirs[-1] if dirs else root_fd
            if comp == ".":
                continue
            if comp == "..":
                if dirs:
                    os.close(dirs.pop())
                continue
            try:
                st = os.lstat(comp, dir_fd=cur)
            except OSError:
                return None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    return None
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    while dirs:
                        os.close(dirs.pop())
                todo.extend(p for p in reversed(target.split("/")) if p)
                continue
            try:
                if todo:
                    if not stat.S_ISDIR(st.st_mode):
                        return None
                    dirs.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
                else:
                    if not stat.S_ISREG(st.st_mode):
                        return None
                    return os.open(comp, _READ_FLAGS, dir_fd=cur)
            except OSError:
                return None
        return None
    finally:
        for fd in dirs:
            os.close(fd)


def _os_release(root_fd: int) -> dict[str, str | None]:
    for path in ("etc/os-release", "usr/lib/os-release"):
        fd = _open_in_root(root_fd, path)
        if fd is None:
            continue
        try:
            text = os.read(fd, 65536).decode("utf-8", "replace")
        finally:
            os.close(fd)
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or not key or key.startswith("#"):
                continue
            try:
                fields[key] = " ".join(shlex.split(value))
            except ValueError:
                fields[key] = value.strip("\"'")
        return {"os_id": fields.get("ID"), "os_version": fields.get("VERSION_ID"),
                "os_name": fields.get("PRETTY_NAME")}
    return {}
