"""Templates: build, list, inspect, remove read-only root trees.

A template is built into a hidden temporary directory and renamed into place
only when complete, so a crash or a failed build leaves nothing that looks
like a template (``doctor`` removes the temporary directory).
"""

from __future__ import annotations

import os
import time

from corral import store
from corral.errors import InvalidStateError, NotFoundError
from corral.model import validate_name
from corral.revert import Reverter
from corral.templates import BUILDERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.host import Host


def build(host: Host, kind: str, name: str, *, force: bool = False) -> dict[str, Any]:
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
        tmp = Path(host.paths.templates) / f".build-{name}-{os.getpid()}"
        with Reverter() as undo:
            tmp.mkdir(mode=0o755)
            undo.add(shutil.rmtree, tmp, True)
            (tmp / "rootfs").mkdir(mode=0o755)
            started = time.monotonic()
            meta = importlib.import_module(BUILDERS[kind]).build(tmp / "rootfs")
            meta.update({
                "name": name,
                "kind": kind,
                "arch": platform.machine(),
                "created": time.time(),
                "build_seconds": round(time.monotonic() - started, 3),
            })
            store.write_toml(tmp / "template.toml", meta)
            os.rename(tmp, final)
            undo.success()
    return info(host, name)


def _meta(host: Host, name: str) -> dict[str, Any]:
    validate_name(name, "template")
    try:
        return store.read_toml(host.paths.template_meta(name))
    except FileNotFoundError:
        raise NotFoundError(
            f"no template named '{name}'",
            hint="See 'corral template list'; 'corral template build tiny' makes the built-in one.",
        ) from None


def _users(host: Host, name: str) -> list[str]:
    users = []
    for cname in host.names():
        try:
            if host.load_config(cname).template == name:
                users.append(cname)
        except Exception:  # a broken config must not hide the others
            continue
    return users


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
    out["layers"] = 1
    out["used_by"] = _users(host, name)
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


def require_present(host: Host, name: str) -> str:
    """The template's root tree, checked with one stat (no metadata parse)."""
    rootfs = host.paths.template_rootfs(name)
    if not os.path.isdir(rootfs):
        _meta(host, name)  # raises the NotFoundError with its hint
    return rootfs


def require(host: Host, name: str) -> dict[str, Any]:
    return _meta(host, name)


