"""Templates: build, list, inspect, remove read-only root trees.

A template is built into a hidden temporary directory and renamed into place
only when complete, so a crash or a failed build leaves nothing that looks
like a template (``doctor`` removes the temporary directory).
"""

from __future__ import annotations

import os
import time

from corral import store
from corral.errors import InvalidStateError, NotFoundError, ValidationError
from corral.model import validate_name
from corral.revert import Reverter
from corral.templates import BUILDERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.host import Host


def build(host: Host, kind: str, name: str, *, force: bool = False, mirror: str | None = None,
          progress: Any = None) -> dict[str, Any]:
    import importlib
    import platform
    import shutil
    from pathlib import Path

    if kind not in BUILDERS:
        raise NotFoundError(f"unknown template kind '{kind}'",
                            hint=f"Built-in kinds: {', '.join(sorted(BUILDERS))}.")
    validate_name(name, "template")
    host.ensure_dirs()
    final = Path(host.paths.template_dir(name))
    with host.lock(f".template-{name}"):
        if final.exists():
            if not force:
                return info(host, name)
            users = _users(host, name)
            if users:
                raise InvalidStateError(f"template '{name}' is used by {', '.join(users)}",
                                        hint="Destroy those containers before rebuilding it.")
            shutil.rmtree(final)

        def fill(rootfs: Path) -> dict[str, Any]:
            meta = importlib.import_module(BUILDERS[kind]).build(
                rootfs, kind=kind, mirror=mirror, progress=progress)
            meta.update({"kind": kind, "arch": platform.machine()})
            return meta

        _make(host, name, "build", fill)
    return info(host, name)


def _make(host: Host, name: str, verb: str, fill: Any) -> None:
    """Make template ``name`` whole or not at all: ``fill(rootfs)`` fills an empty tree
    in a hidden temporary directory and returns the metadata; the directory is renamed
    into place only when complete (``doctor`` removes what a crash leaves).  The caller
    holds the template's lock."""
    import shutil
    from pathlib import Path

    tmp = Path(host.paths.templates) / f".{verb}-{name}-{os.getpid()}"
    with Reverter() as undo:
        tmp.mkdir(mode=0o755)
        undo.add(shutil.rmtree, tmp, True)
        (tmp / "rootfs").mkdir(mode=0o755)
        started = time.monotonic()
        meta = fill(tmp / "rootfs")
        meta.update({"name": name, "created": time.time(),
                     "build_seconds": round(time.monotonic() - started, 3)})
        store.write_toml(tmp / "template.toml", _tomlable(meta))
        os.rename(tmp, host.paths.template_dir(name))
        undo.success()


def _meta(host: Host, name: str) -> dict[str, Any]:
    validate_name(name, "template")
    try:
        return store.read_toml(host.paths.template_meta(name))
    except FileNotFoundError:
        raise NotFoundError(
            f"no template named '{name}'",
            hint="See 'corral template list'; 'corral template build tiny' makes the built-in one.",
        ) from None


def _users_by_version(host: Host, name: str) -> dict[int, list[str]]:
    """Containers standing on template ``name``, by the version they stand on."""
    users: dict[int, list[str]] = {}
    for cname in host.names():
        try:
            cfg = host.load_config(cname)
        except Exception:  # a broken config must not hide the others
            continue
        if cfg.template == name:
            users.setdefault(cfg.template_version or 1, []).append(cname)
    return users


def _users(host: Host, name: str) -> list[str]:
    return sorted(c for cs in _users_by_version(host, name).values() for c in cs)


def _size(path: Any) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def info(host: Host, name: str, *, with_size: bool = True) -> dict[str, Any]:
    meta = _meta(host, name)
    out = dict(meta)
    out["name"] = name
    out["path"] = host.paths.template_rootfs(name)
    vs = versions(meta)
    out["layers"] = len(vs)
    out["template_version"] = latest_version(meta)
    by_version = _users_by_version(host, name)
    out["used_by"] = sorted(c for cs in by_version.values() for c in cs)
    out["versions"] = [{**v, "used_by": by_version.get(int(v["version"]), [])} for v in vs]
    if with_size:
        out["size_bytes"] = _size(host.paths.template_rootfs(name))
    return out


def list_all(host: Host) -> list[dict[str, Any]]:
    try:
        names = sorted(n for n in os.listdir(host.paths.templates) if not n.startswith("."))
    except FileNotFoundError:
        return []
    return [info(host, n) for n in names if os.path.exists(host.paths.template_meta(n))]


def remove(host: Host, name: str) -> None:
    import shutil

    _meta(host, name)
    with host.lock(f".template-{name}"):
        users = _users(host, name)
        if users:
            raise InvalidStateError(f"template '{name}' is used by {', '.join(users)}",
                                    hint="Destroy those containers first.")
        shutil.rmtree(host.paths.template_dir(name))


def versions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return list(meta.get("versions") or [{"version": 1, "created": meta.get("created", 0)}])


def latest_version(meta: dict[str, Any]) -> int:
    return int(versions(meta)[-1]["version"])


def stack(host: Host, name: str, version: int | None) -> tuple[str, ...]:
    """Lower directories of template ``name`` at ``version``, newest first (overlay order)."""
    base = require_present(host, name)
    if version is None:  # the latest: found with a stat per version, no metadata parse
        version = 1
        while os.path.isdir(host.paths.template_version_dir(name, version + 1)):
            version += 1
    if version == 1:
        return (base,)
    return tuple(host.paths.template_version_dir(name, v) for v in range(version, 0, -1))


def require_present(host: Host, name: str) -> str:
    """The template's root tree, checked with one stat (no metadata parse)."""
    rootfs = host.paths.template_rootfs(name)
    if not os.path.isdir(rootfs):
        _meta(host, name)  # raises the NotFoundError with its hint
    return rootfs


def require(host: Host, name: str) -> dict[str, Any]:
    return _meta(host, name)




# -- updates: a new version layer for every container to rebase onto ----------------------

UPGRADE_COMMANDS = {
    "debian": ("export DEBIAN_FRONTEND=noninteractive; apt-get update && "
               "apt-get -y -o Dpkg::Options::=--force-confold dist-upgrade && "
               "apt-get clean && rm -rf /var/lib/apt/lists/*"),
}
UPGRADE_COMMANDS["ubuntu"] = UPGRADE_COMMANDS["debian"]


def update(host: Host, name: str, *, command: str | None = None) -> dict[str, Any]:
    """Run the distribution's upgrade (or ``command``) over the latest version, in a build
    container on the host's network; record what it changed as a new version layer.

    Containers keep the version they stand on until ``corral rebase`` moves them.
    """
    from corral.errors import CommandError
    from corral.host import lifecycle
    from corral.model import ContainerConfig

    meta = _meta(host, name)
    command = command or UPGRADE_COMMANDS.get(str(meta.get("os")))
    if not command:
        raise ValidationError(f"template '{name}' ({meta.get('os')}) has no known upgrade command",
                              hint="Give one: corral template update NAME --command 'CMD'.")
    latest = latest_version(meta)
    new_version = latest + 1
    builder = f"tpl-update-{host.id}-{os.getpid()}"
    with host.lock(f".template-{name}"):
        target = host.paths.template_version_dir(name, new_version)
        if os.path.lexists(target):  # a crashed update's leftover: not a version yet
            store.remove_tree(target)
        cfg = ContainerConfig(name=builder, template=name, template_version=latest,
                              init=["/bin/sh", "-c", command], network={"mode": "host"},
                              hostname=name, privileged=True)
        started = time.monotonic()
        try:
            code = lifecycle.run(host, cfg, remove=False)
            if code != 0:
                raise CommandError(f"the update command failed in template '{name}' "
                                   f"(exit {code})", hint="Its output is above; nothing "
                                   "was recorded and the template is unchanged.")
            upper = host.paths.upper(builder)
            for scratch in ("tmp", "var/tmp", "run", "etc/hostname", "etc/hosts"):
                # What the build container itself left, not part of the update.
                path = f"{upper}/{scratch}"
                if os.path.isdir(path) and not os.path.islink(path):
                    store.remove_tree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
            os.rename(upper, target)
        finally:
            if host.exists(builder):
                lifecycle.destroy(host, builder, force=True, gc=False)
        record = {"version": new_version, "created": time.time(), "command": command,
                  "seconds": round(time.monotonic() - started, 3), "bytes": _size(target)}
        meta["versions"] = [*versions(meta), record]
        store.write_toml(host.paths.template_meta(name), meta)
    return record


# -- import: rootfs tarballs, directories, OCI images ---------------------------------------

def import_(host: Host, source: str, name: str, *, progress: Any = None,
            max_bytes: int | None = None) -> dict[str, Any]:
    import platform
    from pathlib import Path

    from corral.templates import importer

    validate_name(name, "template")
    kind = importer.detect(source)  # validates the source before anything is made
    host.ensure_dirs()
    final = Path(host.paths.template_dir(name))
    with host.lock(f".template-{name}"):
        if final.exists():
            raise InvalidStateError(f"template '{name}' already exists",
                                    hint="Choose another name, or remove it first.")

        def fill(rootfs: Path) -> dict[str, Any]:
            kw: dict[str, Any] = {"progress": progress}
            if max_bytes is not None:
                kw["max_bytes"] = max_bytes
            meta = importer.import_into(source, str(rootfs), **kw)
            oci = meta.get("oci") or {}
            config = oci.get("config") or {}
            init = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
            meta.update({
                "kind": f"import:{kind}",
                "os": meta.get("os_id") or "unknown",
                "version": meta.get("os_version") or "",
                "arch": oci.get("architecture") or platform.machine(),
            })
            if init and not os.path.lexists(rootfs / "sbin/init"):
                meta["init"] = init[0] if len(init) == 1 else init
            return meta

        _make(host, name, "import", fill)
    return info(host, name)


def _tomlable(obj: Any) -> Any:
    """TOML has no null: drop None values (an OCI config is full of them)."""
    if isinstance(obj, dict):
        return {str(k): _tomlable(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_tomlable(v) for v in obj if v is not None]
    return obj
