"""Backups: a container — config, layers, snapshots — in one checked archive, and back.

The archive is a plain tar holding one zstd-compressed GNU tar per layer
(owners, modes, hard links, symlinks, xattrs incl. overlayfs' own, and
whiteouts kept), the config, the snapshot records, and last an index with
the SHA-256 of every other member.  Restore reads the archive once, hashes
while it writes to a scratch directory, and makes the container only when
every checksum matched and the index was there: a corrupted or truncated
archive is refused with nothing left behind.

A running container is backed up from a snapshot taken for the purpose
(frozen for the instant of the cut), so the copy is consistent; the
snapshot is deleted afterwards.  The template is referred to by name and
version, not copied: restore needs it on the target host.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from typing import Any

from corral import store
from corral.errors import (
    CommandError,
    ConflictError,
    InvalidStateError,
    NotFoundError,
    ValidationError,
)
from corral.model import STOPPED, ContainerConfig
from corral.revert import Reverter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.host import Host

FORMAT = "corral-backup/1"
_MEMBER = re.compile(r"(config\.toml|index\.json|upper\.tar\.zst|disk\.tar\.zst|"
                     r"layers/[0-9a-f-]{1,64}\.tar\.zst|"
                     r"snapshots/[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\.(toml|img\.tar\.zst))")
_TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"]
_CHUNK = 1 << 20


def _pack(directory: str, out: str) -> None:
    """``directory`` as a zstd-compressed GNU tar at ``out``."""
    with open(out, "wb") as f:
        tar = subprocess.Popen(["tar", *_TAR_FLAGS, "-C", directory, "-cf", "-", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        zstd = subprocess.run(["zstd", "-q", "-T0", "-3", "-c"], stdin=tar.stdout, stdout=f,
                              stderr=subprocess.PIPE, check=False)
        assert tar.stdout is not None and tar.stderr is not None
        tar.stdout.close()
        err = tar.stderr.read().decode(errors="replace")
        if tar.wait() != 0 or zstd.returncode != 0:
            raise CommandError(f"archiving {directory} failed: "
                               f"{(err or zstd.stderr.decode(errors='replace')).strip()[-300:]}")


def _unpack(archive: str, directory: str) -> None:
    zstd = subprocess.Popen(["zstd", "-q", "-d", "-c", archive], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    # GNU tar refuses members with '..' and strips leading '/' by default.
    tar = subprocess.run(["tar", *_TAR_FLAGS, "-xpf", "-", "-C", directory],
                         stdin=zstd.stdout, capture_output=True, check=False)
    assert zstd.stdout is not None and zstd.stderr is not None
    zstd.stdout.close()
    zerr = zstd.stderr.read().decode(errors="replace")
    if zstd.wait() != 0 or tar.returncode != 0:
        raise ValidationError(f"the backup's layer {os.path.basename(archive)} is damaged: "
                              f"{(zerr or tar.stderr.decode(errors='replace')).strip()[-200:]}")


def _add_file(out: tarfile.TarFile, path: str, arcname: str, progress: Any,
              index: dict[str, Any]) -> int:
    """Add ``path`` to the outer tar, hashing it as it goes."""
    size = os.path.getsize(path)
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o600
    digest = hashlib.sha256()

    class _Hashing(io.RawIOBase):
        def __init__(self, f: Any) -> None:
            self.f, self.done = f, 0

        def readinto(self, b: Any) -> int:
            n = self.f.readinto(b)
            if n:
                digest.update(memoryview(b)[:n])
                self.done += n
                if progress:
                    progress(f"backup {arcname}", self.done, size)
            return n or 0

        def readable(self) -> bool:
            return True

    with open(path, "rb") as f:
        out.addfile(info, io.BufferedReader(_Hashing(f), _CHUNK))
    index["files"][arcname] = {"sha256": digest.hexdigest(), "bytes": size}
    return size


def _add_bytes(out: tarfile.TarFile, data: bytes, arcname: str,
               index: dict[str, Any] | None) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    out.addfile(info, io.BytesIO(data))
    if index is not None:
        index["files"][arcname] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def backup(host: Host, name: str, output: str, *, progress: Any = None) -> dict[str, Any]:
    from corral.host import snapshots, templates

    cfg = host.load_config(name)
    snapshots._require_layered(host, cfg, "A backup")
    disk = snapshots._has_disk(cfg)
    output = os.path.abspath(output)
    if not os.path.isdir(os.path.dirname(output)):
        raise ValidationError(f"directory {os.path.dirname(output)} does not exist")
    if os.path.exists(output):
        raise ConflictError(f"{output} already exists", hint="Choose another file name.")
    started = time.monotonic()
    temp_snap = None
    if host.status(name) != STOPPED:
        temp_snap = f"backup-{os.getpid()}"
        snapshots.snapshot_create(host, name, temp_snap)
    tmp = f"{output}.tmp-{os.getpid()}"
    scratch = f"{host.root}/.backup-{os.getpid()}"
    try:
        with host.lock(name):
            cfg = host.load_config(name)
            snaps = [s for s in snapshots.snapshot_list(host, name) if s["name"] != temp_snap]
            snap_dir = host.paths.snapshots(name)
            image = None  # a disk-quota container's files: its image
            if temp_snap is not None:  # the container's files as of the cut
                current = store.read_toml(host.paths.snapshot_file(name, temp_snap))["layers"]
                upper = None
                if disk:
                    image = f"{snap_dir}/{temp_snap}.img"
            else:
                current, upper = list(cfg.layers), host.paths.upper(name)
                if disk:
                    image, upper = host.paths.disk_image(name), None
            layer_ids: list[str] = []
            for chain in [current, *(s["layers"] for s in snaps)]:
                layer_ids += [i for i in chain if i not in layer_ids]
            meta = templates.require(host, str(cfg.template))
            data = cfg.to_dict()
            data["layers"] = current
            index: dict[str, Any] = {
                "format": FORMAT, "container": name, "created": time.time(),
                "template": {"name": cfg.template, "version": cfg.template_version or 1,
                             "os": meta.get("os"), "os_version": meta.get("version")},
                "layers": layer_ids, "upper": upper is not None, "disk": image is not None,
                # whose host ids the upper's and the image's files carry
                "owner": cfg.idmap["base"] if cfg.idmap else 0,
                "snapshots": [s["name"] for s in snaps],
                "snapshot_images": [s["name"] for s in snaps if s.get("disk_image")],
                "files": {},
            }
            os.makedirs(scratch, 0o700)
            total = 0
            with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w|",
                                                       format=tarfile.PAX_FORMAT) as out:
                _add_bytes(out, store.toml_bytes(data), "config.toml", index)
                for s in snaps:
                    _add_bytes(out, store.toml_bytes(s), f"snapshots/{s['name']}.toml", index)
                parts = [(host.paths.layer_tree(i), f"layers/{i}.tar.zst") for i in layer_ids]
                if upper is not None:
                    parts.append((upper, "upper.tar.zst"))
                # Images go in as sparse files, each alone in a directory of links.
                images = [(image, "disk.img", "disk.tar.zst")] if image else []
                images += [(f"{snap_dir}/{s['disk_image']}", s["disk_image"],
                            f"snapshots/{s['name']}.img.tar.zst")
                           for s in snaps if s.get("disk_image")]
                for i, (path, inner, arcname) in enumerate(images):
                    holder = f"{scratch}/image{i}"
                    os.mkdir(holder)
                    os.link(path, f"{holder}/{inner}")
                    parts.append((holder, arcname))
                for directory, arcname in parts:
                    packed = f"{scratch}/part.tar.zst"
                    if progress:
                        progress(f"archiving {arcname}", 0, None)
                    _pack(directory, packed)
                    total += _add_file(out, packed, arcname, progress, index)
                    os.unlink(packed)
                # Last, so that a truncated archive is one without an index.
                _add_bytes(out, json.dumps(index, indent=1).encode(), "index.json", None)
                raw.flush()
                os.fsync(raw.fileno())
            os.rename(tmp, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if temp_snap is not None:
            snapshots.snapshot_delete(host, name, temp_snap)
    return {"path": output, "bytes": os.path.getsize(output), "layers": len(layer_ids),
            "snapshots": len(snaps), "seconds": round(time.monotonic() - started, 3),
            "live": temp_snap is not None}


def _read_archive(archive: str, scratch: str, progress: Any) -> dict[str, Any]:
    """Unpack the outer tar into ``scratch``, verifying every member; return the index."""
    hashes: dict[str, str] = {}
    index: dict[str, Any] | None = None
    try:
        with tarfile.open(archive, mode="r|") as tf:
            for member in tf:
                if not member.isfile() or not _MEMBER.fullmatch(member.name):
                    raise ValidationError(f"{archive} is not a corral backup: unexpected member "
                                          f"'{member.name}'")
                src = tf.extractfile(member)
                assert src is not None
                if member.name == "index.json":
                    index = json.loads(src.read(16 << 20))
                    continue
                digest = hashlib.sha256()
                path = f"{scratch}/{member.name}"
                os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                done = 0
                with open(path, "wb") as f:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(f"restore {member.name}", done, member.size)
                hashes[member.name] = digest.hexdigest()
    except (tarfile.TarError, EOFError, OSError, json.JSONDecodeError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (None, 5):
            raise
        raise ValidationError(f"{archive} is damaged or truncated ({exc})",
                              hint="Use another copy of the backup.") from None
    if index is None or index.get("format") != FORMAT:
        raise ValidationError(f"{archive} is truncated or not a corral backup (no index)",
                              hint="Use another copy of the backup.")
    for arcname, want in index["files"].items():
        got = hashes.get(arcname)
        if got is None:
            raise ValidationError(f"{archive} is missing '{arcname}'",
                                  hint="Use another copy of the backup.")
        if got != want["sha256"]:
            raise ValidationError(f"{archive} is corrupted: '{arcname}' does not match its "
                                  "checksum", hint="Use another copy of the backup.")
    return index


def restore(host: Host, archive: str, name: str | None = None, *,
            progress: Any = None) -> dict[str, Any]:
    from corral.host import lifecycle, snapshots, templates
    from corral.model import validate_name
    from corral.storage import disk
    from corral.storage import layers as layer_store

    if not os.path.isfile(archive):
        raise NotFoundError(f"no backup file {archive}")
    if name is not None:
        validate_name(name)
        if host.exists(name):  # checked before reading a large archive
            raise ConflictError(f"container '{name}' already exists",
                                hint="Choose another name with --name.")
    started = time.monotonic()
    host.ensure_dirs()
    scratch = f"{host.root}/.restore-{os.getpid()}"
    os.makedirs(scratch, 0o700)
    try:
        index = _read_archive(archive, scratch, progress)
        data = store.read_toml(f"{scratch}/config.toml")
        old_name = data["name"]
        name = name or old_name
        if host.exists(name):
            raise ConflictError(f"container '{name}' already exists",
                                hint="Choose another name with --name.")
        tpl = index["template"]
        meta = templates.require(host, str(tpl["name"]))
        if int(tpl["version"]) > templates.latest_version(meta):
            raise InvalidStateError(
                f"the backup stands on template '{tpl['name']}' version {tpl['version']}, "
                f"which this host does not have",
                hint=f"Run 'corral template update {tpl['name']}' until it has that version.")
        with Reverter() as undo:
            ids: dict[str, str] = {}
            with snapshots.layers_lock(host):
                owner = int(index.get("owner", 0))
                if index.get("upper"):
                    # The backup's upper carries the old container's ids: it becomes
                    # a layer (seen through an idmapped mount), and the restored
                    # container gets a fresh upper of its own ids.
                    index["layers"] = [*index["layers"], "upper"]
                for old_id in index["layers"]:
                    new_id = layer_store.new_layer_id(
                        owner if old_id == "upper" else layer_store.owner_of(old_id))
                    target = host.paths.layer(new_id)
                    os.mkdir(target, 0o755)
                    undo.add(store.remove_tree, target)
                    os.mkdir(f"{target}/upper", 0o755)
                    if progress:
                        progress(f"unpacking layer {old_id}", 0, None)
                    _unpack(f"{scratch}/upper.tar.zst" if old_id == "upper" else
                            f"{scratch}/layers/{old_id}.tar.zst", f"{target}/upper")
                    ids[old_id] = new_id
                chain = [ids[i] for i in data.get("layers", [])]
                if "upper" in ids:
                    chain.insert(0, ids["upper"])
                data.update(name=name, layers=chain, ephemeral=False, idmap=None)
                if name != old_name:
                    data["hostname"] = None if data.get("hostname") == old_name \
                        else data.get("hostname")
                net = dict(data.get("network") or {})
                if "ip" in net:
                    net["ip"] = "auto"  # the old address may be in use here
                if "publish" in net:
                    net["publish"] = []
                data["network"] = net
                cfg = ContainerConfig.from_dict(data)
                lifecycle.create(host, cfg)
                undo.add(lambda: lifecycle.destroy(host, name, force=True, gc=False))
                if index.get("disk"):  # replaces the empty image create made
                    _unpack(f"{scratch}/disk.tar.zst", host.paths.container_dir(name))
                    disk.new_identity(host.paths.disk_image(name))  # the original may run
                    disk.shift_ids(host.paths.disk_image(name), owner,
                                   cfg.idmap["base"] if cfg.idmap else 0)
                os.makedirs(host.paths.snapshots(name), 0o700, exist_ok=True)
                for snap in index.get("snapshot_images", []):
                    _unpack(f"{scratch}/snapshots/{snap}.img.tar.zst", host.paths.snapshots(name))
                    disk.shift_ids(f"{host.paths.snapshots(name)}/{snap}.img", owner,
                                   cfg.idmap["base"] if cfg.idmap else 0)
                for snap in index["snapshots"]:
                    rec = store.read_toml(f"{scratch}/snapshots/{snap}.toml")
                    rec.update(container=name, layers=[ids[i] for i in rec["layers"]])
                    store.write_toml(host.paths.snapshot_file(name, snap), rec)
            undo.success()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"name": name, "layers": len(ids), "snapshots": len(index["snapshots"]),
            "seconds": round(time.monotonic() - started, 3)}
