"""Snapshots, clones and rebases: operations on a container's layer chain.

A container's root is its writable upper over its own read-only layers
(newest first) over its template version's layers.  A snapshot freezes the
upper into a new layer and records the chain; restoring it gives the
container a fresh upper over that chain, so every file comes back exactly
as it was (content, modes, owners, xattrs, hard links, symlinks), deleted
files return and later ones vanish — and the time does not depend on how
much data the container holds.  A clone starts with the same chain and its
own upper.  Layers are shared by name and removed when the last container
or snapshot that refers to them is gone.

A running container is frozen (cgroup freezer) for the instant of the cut,
so a snapshot is consistent; how long the cut takes is the layer driver's
business (storage/layers.py).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from typing import Any

from corral import store
from corral.errors import ConflictError, InvalidStateError, NotFoundError, ValidationError
from corral.model import STOPPED, ContainerConfig
from corral.revert import Reverter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.host import Host

_SNAP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def validate_snapshot_name(snap: str) -> str:
    if not _SNAP_NAME.fullmatch(snap):
        raise ValidationError(f"invalid snapshot name '{snap}'",
                              hint="Use 1-63 letters, digits, '.', '_' or '-', "
                                   "starting with a letter or digit.")
    return snap


def _driver(host: Host) -> Any:
    from corral.storage import layers

    return layers.detect(host.paths.containers)


def _require_layered(host: Host, cfg: ContainerConfig, what: str,
                     disk_ok: bool = True) -> None:
    if cfg.rootfs is not None:
        raise InvalidStateError(
            f"container '{cfg.name}' runs on the directory {cfg.rootfs}, not on layers",
            hint=f"{what} needs a container made from a template.")
    if not disk_ok and _has_disk(cfg):
        raise InvalidStateError(
            f"container '{cfg.name}' keeps its files in a disk-quota image",
            hint=f"{what} works on containers without --disk for now; "
                 "snapshots and clones work on both.")


def _has_disk(cfg: ContainerConfig) -> bool:
    return cfg.limits.get("disk", -1) not in (-1, None)


def _copy_image(src: str, dst: str) -> None:
    """A sparse copy of a disk image (a reflink where the filesystem has them: btrfs, xfs)."""
    import subprocess

    from corral.errors import CommandError
    from corral.storage import disk

    proc = subprocess.run(["cp", "--reflink=auto", "--sparse=always", "--", src, f"{dst}.tmp"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandError(f"copying {src} failed: {proc.stderr.strip()[-300:]}")
    try:
        disk.new_identity(f"{dst}.tmp")
    except BaseException:
        os.unlink(f"{dst}.tmp")
        raise
    os.rename(f"{dst}.tmp", dst)


def _image_cut(host: Host, cfg: ContainerConfig, target: str) -> None:
    """A consistent copy of a disk-quota container's image at ``target``.

    A running container is frozen, and its filesystem (inside the image,
    mounted only in the container) synced through its root, for the copy:
    what it wrote is in the image, nothing is written meanwhile.
    """
    image = host.paths.disk_image(cfg.name)
    state = host.load_state(cfg.name)
    if host.status(cfg.name, state) == STOPPED:
        _copy_image(image, target)
        return
    from corral.linux import fs

    cg = host.cgroup(cfg.name)
    was_frozen = cg.frozen()
    if not was_frozen:
        cg.freeze()
    try:
        fd = os.open(f"/proc/{state.pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fs.syncfs(fd)
        finally:
            os.close(fd)
        _copy_image(image, target)
    finally:
        if not was_frozen:
            cg.thaw()





def _freeze_upper(host: Host, cfg: ContainerConfig) -> tuple[list[str], bool]:
    """Freeze the container's upper into a new shared layer.

    Returns the chain that describes the container's files now, and whether
    the container itself must move onto it (its upper became the layer).
    Stopped on ``dir``: a rename, constant time; an empty upper adds no layer.
    Running: the container is frozen for the cut and the driver copies or
    snapshots its upper.  The caller holds the container's lock and the
    layers lock.
    """
    from corral.storage import layers

    host.ensure_dirs()
    owner = cfg.idmap["base"] if cfg.idmap else 0
    layer_id = layers.new_layer_id(owner)
    target = host.paths.layer(layer_id)
    drv = _driver(host)
    container_dir = host.paths.container_dir(cfg.name)
    if host.status(cfg.name) == STOPPED:
        if not os.listdir(host.paths.upper(cfg.name)):
            return list(cfg.layers), False
        moved = drv.freeze(container_dir, target, in_use=False, owner=owner)
        if moved:
            _reset_work(host, cfg.name)
        return [layer_id, *cfg.layers], moved
    cg = host.cgroup(cfg.name)
    was_frozen = cg.frozen()
    if not was_frozen:
        cg.freeze()
    try:
        # No sync needed: a copy reads recent writes from the page cache, and
        # a btrfs snapshot flushes the subvolume's dirty data itself.
        moved = drv.freeze(container_dir, target, in_use=True, owner=owner)
    finally:
        if not was_frozen:
            cg.thaw()
    return [layer_id, *cfg.layers], moved


def _reset_work(host: Host, name: str) -> None:
    # Overlayfs wants its work dir empty and on the upper's filesystem, and
    # owned by whoever mounts it: the container's root.
    work = host.paths.work(name)
    owner = os.stat(host.paths.upper(name)).st_uid
    store.remove_tree(work)
    os.mkdir(work, 0o755)
    os.chown(work, owner, owner)


# -- snapshots ----------------------------------------------------------------------------

def snapshot_create(host: Host, name: str, snap: str) -> dict[str, Any]:
    validate_snapshot_name(snap)
    cfg = host.load_config(name)
    _require_layered(host, cfg, "A snapshot")
    with host.lock(name):
        cfg = host.load_config(name)
        path = host.paths.snapshot_file(name, snap)
        if os.path.exists(path):
            raise ConflictError(f"container '{name}' already has a snapshot '{snap}'",
                                hint=f"Delete it first: corral snapshot delete {name} {snap}")
        started = time.monotonic()
        running = host.status(name) != STOPPED
        if _has_disk(cfg):
            os.makedirs(host.paths.snapshots(name), 0o700, exist_ok=True)
            image = f"{host.paths.snapshots(name)}/{snap}.img"
            _image_cut(host, cfg, image)
            record = {"name": snap, "container": name, "created": time.time(),
                      "layers": list(cfg.layers), "template": cfg.template,
                      "template_version": cfg.template_version, "live": running,
                      "disk_image": f"{snap}.img",
                      "seconds": round(time.monotonic() - started, 4)}
            store.write_toml(path, record)
            return record
        try:
            with layers_lock(host):
                chain, moved = _freeze_upper(host, cfg)
                record = {"name": snap, "container": name, "created": time.time(),
                          "layers": chain, "template": cfg.template,
                          "template_version": cfg.template_version, "live": running,
                          "seconds": round(time.monotonic() - started, 4)}
                os.makedirs(host.paths.snapshots(name), 0o700, exist_ok=True)
                if moved:
                    # The upper became the layer: the container now stands on it.
                    cfg.layers = chain
                    host.save_config(cfg)
                store.write_toml(path, record)
        except BaseException:
            _gc_layers(host)
            raise
    return record


def snapshot_list(host: Host, name: str) -> list[dict[str, Any]]:
    host.load_config(name)
    try:
        files = sorted(os.listdir(host.paths.snapshots(name)))
    except FileNotFoundError:
        return []
    out = [store.read_toml(f"{host.paths.snapshots(name)}/{f}")
           for f in files if f.endswith(".toml")]
    return sorted(out, key=lambda s: s["created"])


def _load_snapshot(host: Host, name: str, snap: str) -> dict[str, Any]:
    validate_snapshot_name(snap)
    try:
        return store.read_toml(host.paths.snapshot_file(name, snap))
    except FileNotFoundError:
        raise NotFoundError(f"container '{name}' has no snapshot '{snap}'",
                            hint=f"See 'corral snapshot list {name}'.") from None


def snapshot_restore(host: Host, name: str, snap: str, *, force: bool = False) -> dict[str, Any]:
    from corral.host import lifecycle

    cfg = host.load_config(name)
    record = _load_snapshot(host, name, snap)
    with host.lock(name):
        state = host.load_state(name)
        running = host.status(name, state) != STOPPED
        if running and not force:
            raise InvalidStateError(f"container '{name}' is running",
                                    hint=f"Stop it first, or use 'corral snapshot restore "
                                         f"--force {name} {snap}' to stop and restart it.")
        if running:
            lifecycle._stop_locked(host, name, state, timeout=10.0)
            lifecycle._teardown(host, name, state)
        started = time.monotonic()
        cfg = host.load_config(name)
        if record.get("disk_image"):
            _copy_image(f"{host.paths.snapshots(name)}/{record['disk_image']}",
                        host.paths.disk_image(name))
        # The new upper is made beside the old one and swapped in by rename:
        # a crash leaves either the old root or the restored one.
        upper = host.paths.upper(name)
        fresh, old = f"{upper}.restore", f"{upper}.old"
        for leftover in (fresh, old):
            if os.path.lexists(leftover):
                store.remove_tree(leftover)
        os.mkdir(fresh, 0o755)
        if cfg.idmap:  # the container's root owns its upper (on disk: its host id)
            os.chown(fresh, cfg.idmap["base"], cfg.idmap["base"])
        os.rename(upper, old)
        os.rename(fresh, upper)
        cfg.layers = list(record["layers"])
        cfg.template_version = record.get("template_version")
        host.save_config(cfg)
        _reset_work(host, name)
        store.remove_tree(old)
        _gc_layers(host)
        seconds = round(time.monotonic() - started, 4)
        if running:
            lifecycle._start_locked(host, cfg)
    return {"name": snap, "container": name, "seconds": seconds, "restarted": running}


def snapshot_delete(host: Host, name: str, snap: str) -> None:
    host.load_config(name)
    _load_snapshot(host, name, snap)
    with host.lock(name):
        record = _load_snapshot(host, name, snap)
        os.unlink(host.paths.snapshot_file(name, snap))
        if record.get("disk_image"):
            try:
                os.unlink(f"{host.paths.snapshots(name)}/{record['disk_image']}")
            except FileNotFoundError:
                pass
        _gc_layers(host)


# -- clone and rebase ---------------------------------------------------------------------

def clone(host: Host, src: str, dst: str, *, snapshot: str | None = None) -> ContainerConfig:
    """A new container sharing ``src``'s layers (or a snapshot's), with its own identity."""
    from corral.host import lifecycle
    from corral.model import validate_name

    validate_name(dst)
    cfg = host.load_config(src)
    _require_layered(host, cfg, "A clone")
    if host.exists(dst):
        raise ConflictError(f"container '{dst}' already exists",
                            hint="Choose another name, or destroy the old one first.")
    try:
        with host.lock(src), layers_lock(host):
            cfg = host.load_config(src)
            record: dict[str, Any] = {}
            if snapshot is not None:
                record = _load_snapshot(host, src, snapshot)
                chain, version = list(record["layers"]), record.get("template_version")
            elif _has_disk(cfg):
                chain, version = list(cfg.layers), cfg.template_version
            else:
                chain, moved = _freeze_upper(host, cfg)
                version = cfg.template_version
                if moved:
                    cfg.layers = chain
                    host.save_config(cfg)
            data = cfg.to_dict()
            data.update(name=dst, hostname=None, layers=chain, template_version=version,
                        created=time.time(), ephemeral=False)
            net = dict(data.get("network") or {})
            if "ip" in net:
                net["ip"] = "auto"  # a fresh address from the pool; the MAC follows the name
            if "publish" in net:
                net["publish"] = []  # host ports belong to the source
            data["network"] = net
            new = ContainerConfig.from_dict(data)
            with Reverter() as undo:
                lifecycle.create(host, new)
                undo.add(lambda: lifecycle.destroy(host, dst, force=True, gc=False))
                if _has_disk(cfg):  # its files are in the image: copy that
                    if snapshot is not None and record.get("disk_image"):
                        _copy_image(f"{host.paths.snapshots(src)}/{record['disk_image']}",
                                    host.paths.disk_image(dst))
                    else:
                        _image_cut(host, cfg, host.paths.disk_image(dst))
                    from corral.storage import disk

                    disk.shift_ids(host.paths.disk_image(dst),
                                   cfg.idmap["base"] if cfg.idmap else 0,
                                   new.idmap["base"] if new.idmap else 0)
                else:
                    _new_identity(host, new, chain, version)
                undo.success()
    except BaseException:
        _gc_layers(host)
        raise
    return new


def _new_identity(host: Host, cfg: ContainerConfig, chain: list[str], version: Any) -> None:
    """machine-id and SSH host keys of the clone's own, written into its upper."""
    import shutil
    import subprocess

    from corral.host import templates

    lowers = [host.paths.layer_tree(i) for i in chain]
    lowers += list(templates.stack(host, str(cfg.template), version))

    def present(rel: str) -> bool:
        return any(os.path.lexists(f"{d}/{rel}") for d in lowers)

    upper = host.paths.upper(cfg.name)
    # What the host writes into the upper must belong to the container's root.
    owner = cfg.idmap["base"] if cfg.idmap else 0

    def own(rel: str) -> None:
        os.chown(f"{upper}/{rel}", owner, owner, follow_symlinks=False)

    def mkdirs(rel: str) -> None:
        path = upper
        for part in rel.split("/"):
            path = f"{path}/{part}"
            if not os.path.isdir(path):
                os.mkdir(path, 0o755)
                os.chown(path, owner, owner)

    if present("etc/machine-id"):
        mkdirs("etc")
        store.write_atomic(f"{upper}/etc/machine-id", (secrets.token_hex(16) + "\n").encode(),
                           0o444)
        own("etc/machine-id")
    keys = [f"etc/ssh/ssh_host_{kind}_key" for kind in ("rsa", "ecdsa", "ed25519")]
    if any(present(k) for k in keys) and shutil.which("ssh-keygen"):
        mkdirs("etc/ssh")
        for rel, kind in zip(keys, ("rsa", "ecdsa", "ed25519")):
            for suffix in ("", ".pub"):
                if os.path.lexists(f"{upper}/{rel}{suffix}"):
                    os.unlink(f"{upper}/{rel}{suffix}")
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C",
                            f"root@{cfg.effective_hostname}", "-f", f"{upper}/{rel}"],
                           check=True, capture_output=True)
            own(rel)
            own(f"{rel}.pub")


def rebase(host: Host, name: str, version: int | None = None, *,
           force: bool = False) -> dict[str, Any]:
    """Move a container onto another version of its template, keeping its own layers."""
    from corral.host import lifecycle, templates

    cfg = host.load_config(name)
    _require_layered(host, cfg, "A rebase")
    meta = templates.require(host, str(cfg.template))
    known = [int(v["version"]) for v in templates.versions(meta)]
    target = known[-1] if version is None else version
    if target not in known:
        raise NotFoundError(f"template '{cfg.template}' has no version {target}",
                            hint=f"Versions: {', '.join(map(str, known))}.")
    with host.lock(name):
        state = host.load_state(name)
        running = host.status(name, state) != STOPPED
        if running and not force:
            raise InvalidStateError(f"container '{name}' is running",
                                    hint=f"Stop it first, or use 'corral rebase --force {name}'.")
        before = cfg.template_version or 1
        if running:
            lifecycle._stop_locked(host, name, state, timeout=10.0)
            lifecycle._teardown(host, name, state)
        cfg = host.load_config(name)
        cfg.template_version = target
        host.save_config(cfg)
        _reset_work(host, name)
        if running:
            lifecycle._start_locked(host, cfg)
    return {"name": name, "template": cfg.template, "from": before, "to": target,
            "restarted": running}


# -- layer garbage collection ----------------------------------------------------------------

def referenced_layers(host: Host) -> set[str]:
    used: set[str] = set()
    for cname in host.names():
        try:
            used.update(host.load_config(cname).layers)
        except Exception:  # noqa: BLE001 — a broken config must keep its layers: see below
            return set(_all_layers(host))  # unsure: remove nothing
        for snap in snapshot_list(host, cname):
            used.update(snap.get("layers", []))
    return used


def _all_layers(host: Host) -> list[str]:
    try:
        return [n for n in os.listdir(host.paths.layers) if not n.startswith(".")]
    except FileNotFoundError:
        return []


def layers_lock(host: Host) -> Any:
    """Held while a layer exists that nothing refers to yet, and by the collector."""
    host.ensure_dirs()
    return store.locked(f"{host.paths.locks}/.layers.lock", "the layer store")


def _gc_layers(host: Host) -> list[str]:
    """Remove layers no container or snapshot refers to; return their ids."""
    if not os.path.isdir(host.paths.layers):
        return []
    with layers_lock(host):
        used = referenced_layers(host)
        gone = []
        drv = _driver(host)
        for layer_id in _all_layers(host):
            if layer_id not in used:
                drv.remove(host.paths.layer(layer_id))
                gone.append(layer_id)
        return gone


gc_layers = _gc_layers
