"""A container's files as the container sees them, fingerprinted from the host.

The container's layer stack (upper, own layers, template version layers) is
mounted read-only as an overlay of lower layers only, in a private mount
namespace of a child process, and walked there: every path with its type,
mode, owner, size, content hash, symlink target, xattrs and hard-link
group.  Two fingerprints are equal exactly when the trees are.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

WALKER = r"""
import hashlib, json, os, subprocess, sys
lower, mnt = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "ro,userxattr,lowerdir=" + lower, mnt], check=True)
out, links = {}, {}
for dirpath, dirs, files in os.walk(mnt):
    dirs[:] = [d for d in dirs if os.path.join(dirpath, d)[len(mnt):] not in ("/proc", "/sys", "/dev")]
    for n in dirs + files:
        p = os.path.join(dirpath, n); rel = p[len(mnt):]
        st = os.lstat(p)
        e = [oct(st.st_mode), st.st_uid, st.st_gid]
        if os.path.islink(p):
            e.append(os.readlink(p))
        elif os.path.isfile(p):
            e.append(st.st_size)
            e.append(hashlib.sha256(open(p, "rb").read()).hexdigest())
            if st.st_nlink > 1:
                e.append("link:" + links.setdefault((st.st_dev, st.st_ino), rel))
        try:
            names = sorted(x for x in os.listxattr(p, follow_symlinks=False)
                           if not x.startswith("trusted.overlay."))
            e.append({x: os.getxattr(p, x, follow_symlinks=False).hex() for x in names})
        except OSError:
            pass
        out[rel] = e
print(json.dumps(out, sort_keys=True))
"""


def layer_dirs(root: Path, name: str) -> list[str]:
    cfg = tomllib.loads((root / "containers" / name / "config.toml").read_text())
    dirs = [str(root / "containers" / name / "upper")]
    dirs += [str(root / "layers" / i / "upper") for i in cfg.get("layers", [])]
    tpl = root / "templates" / cfg["template"]
    version = int(cfg.get("template_version") or 1)
    dirs += [str(tpl / f"v{v}") for v in range(version, 1, -1)] + [str(tpl / "rootfs")]
    return dirs


VOLATILE = ("/var/log/", "/run/", "/tmp/", "/var/run/")


def fingerprint(root: Path, name: str, *, volatile: bool = False) -> dict[str, list[object]]:
    """The tree; without ``volatile``, minus what a running init rewrites on its own
    (logs, /run, /tmp), which would make two looks at one running container differ."""
    mnt = root / f".treeprint-{os.getpid()}"
    mnt.mkdir(exist_ok=True)
    try:
        out = subprocess.run(
            ["unshare", "-m", "--propagation", "private", sys.executable, "-c", WALKER,
             ":".join(layer_dirs(root, name)), str(mnt)],
            check=True, capture_output=True, text=True).stdout
    finally:
        mnt.rmdir()
    tree = json.loads(out)
    if not volatile:
        tree = {k: v for k, v in tree.items() if not k.startswith(VOLATILE)}
    return tree


def digest(tree: dict[str, list[object]]) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()
