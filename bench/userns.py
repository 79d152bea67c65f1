#!/usr/bin/env python3
"""What unprivileged containers cost: start latency and bytes written, side by side.

    sudo .venv/bin/python bench/userns.py [--runs 30] [--template-mb 300]

1. `corral run --rm --template tiny -- /bin/true`, unprivileged (own user
   namespace, idmapped layers) vs --privileged, rounds alternating: medians
   and the ratio.
2. Bytes written to the state root's disk to start an unprivileged container
   from a template of --template-mb MB (the tiny template plus many files):
   Corral (idmapped mounts: nothing is rewritten) vs the classic way of
   giving a container its own ids, a copy of the template chowned into the
   container's range (`cp -a` + `chown -R`, as LXC's uidmapshift did).
   Written = the bytes the step left on disk (du of what it made); the
   template's inodes are checked for changes (a chown would touch each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CORRAL, remove_root


def cli(root: Path, *args: str) -> str:
    return subprocess.run([CORRAL, "--root", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--template-mb", type=int, default=300)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="corral-bench-userns-", dir="/var/tmp"))
    root = work / "root"
    try:
        cli(root, "template", "build", "tiny")
        base = [CORRAL, "--root", str(root), "run", "--rm", "--net", "none", "--template", "tiny"]
        unpriv = [*base, "--", "/bin/true"]
        priv = [*base[:-2], "--privileged", "--template", "tiny", "--", "/bin/true"]
        for argv in (unpriv, priv):  # warm caches, the seccomp cache, lxcfs
            timed(argv)
        times: dict[str, list[float]] = {"unprivileged": [], "privileged": []}
        for _ in range(args.runs):
            times["unprivileged"].append(timed(unpriv))
            times["privileged"].append(timed(priv))
        u, p = (statistics.median(times[k]) for k in ("unprivileged", "privileged"))
        print(f"1. run --rm /bin/true ({args.runs} runs each, alternating)")
        print(f"   unprivileged {u:7.1f} ms   privileged {p:7.1f} ms   ratio {u / p:.2f}")

        # A template of the requested size made of many files, like a distribution's.
        cli(root, "template", "build", "tiny", "--name", "big")
        data = root / "templates" / "big" / "rootfs" / "usr" / "share" / "data"
        data.mkdir(parents=True)
        per_file = 256 << 10
        for i in range(args.template_mb * (1 << 20) // per_file):
            sub = data / f"d{i // 500}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i}").write_bytes(os.urandom(per_file))
        tpl = root / "templates" / "big" / "rootfs"

        def ctimes(tree: Path) -> dict[str, int]:
            return {str(f): f.lstat().st_ctime_ns for f in tree.rglob("*")}

        def disk_bytes(tree: Path) -> int:
            out = subprocess.run(["du", "-sb", str(tree)], check=True, capture_output=True,
                                 text=True).stdout
            return int(out.split()[0])

        before = ctimes(tpl)
        t0 = time.perf_counter()
        cli(root, "create", "u1", "--template", "big", "--net", "none")
        cli(root, "start", "u1")
        corral_s = time.perf_counter() - t0
        corral_bytes = disk_bytes(root / "containers" / "u1")
        touched = sum(1 for k, v in ctimes(tpl).items() if before.get(k) != v)
        copy = work / "shifted"
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(tpl), str(copy)], check=True)
        subprocess.run(["chown", "-R", "1000000000:1000000000", str(copy)], check=True)
        shift_s = time.perf_counter() - t0
        shift_bytes = disk_bytes(copy)
        size = disk_bytes(tpl)
        print(f"2. to start an unprivileged container from a {size >> 20} MB template "
              f"({len(before)} files)")
        print(f"   corral create+start:     {corral_bytes / 1024:9.1f} KB written, "
              f"{touched} template inodes changed, {corral_s:6.2f} s")
        print(f"   cp -a + chown -R copy:   {shift_bytes / 1024:9.1f} KB written, "
              f"{len(before)} inodes made, {shift_s:6.2f} s   "
              f"ratio {shift_bytes / max(corral_bytes, 1):.0f}x bytes")
    finally:
        remove_root(root)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
