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
   Disk writes are read from /sys/block/<dev>/stat around each step, after a
   sync, so they include everything the kernel wrote.
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
from _common import CORRAL  # noqa: E402


def cli(root: Path, *args: str) -> str:
    return subprocess.run([CORRAL, "--root", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def block_device(path: Path) -> str:
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    for d in Path("/sys/block").iterdir():
        for cand in [d, *d.glob(f"{d.name}*")]:
            try:
                if (cand / "dev").read_text().strip() == f"{major}:{minor}":
                    return d.name
            except OSError:
                continue
    raise SystemExit(f"no block device found for {path}")


def sectors_written(dev: str) -> int:
    return int(Path(f"/sys/block/{dev}/stat").read_text().split()[6])


def written(dev: str, fn: object) -> int:
    subprocess.run(["sync"], check=True)
    before = sectors_written(dev)
    fn()  # type: ignore[operator]
    subprocess.run(["sync"], check=True)
    return (sectors_written(dev) - before) * 512


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
        dev = block_device(root)

        def corral_start() -> None:
            cli(root, "create", "u1", "--template", "big", "--net", "none")
            cli(root, "start", "u1")

        def shifted_copy() -> None:
            copy = work / "shifted"
            subprocess.run(["cp", "-a", str(root / "templates" / "big" / "rootfs"), str(copy)],
                           check=True)
            subprocess.run(["chown", "-R", "--from=0:0", "1000000000:1000000000", str(copy)],
                           check=True)

        def chown_in_place() -> None:
            # a copy already made (not counted): just the id shift of every inode
            subprocess.run(["chown", "-R", "2000000000:2000000000", str(work / "shifted")],
                           check=True)

        c = written(dev, corral_start)
        s = written(dev, shifted_copy)
        o = written(dev, chown_in_place)
        size = sum(f.stat().st_size for f in (root / "templates" / "big" / "rootfs").rglob("*")
                   if f.is_file() and not f.is_symlink())
        print(f"2. bytes written to start an unprivileged container from a {size >> 20} MB "
              f"template ({dev})")
        print(f"   corral create+start  {c / (1 << 20):8.2f} MB")
        print(f"   cp -a + chown -R     {s / (1 << 20):8.2f} MB   ratio {s / max(c, 1):8.0f}x")
        print(f"   chown -R alone       {o / (1 << 20):8.2f} MB   ratio {o / max(c, 1):8.0f}x")
    finally:
        if (root / "containers").is_dir():
            names = [n for n in os.listdir(root / "containers") if not n.startswith(".")]
            if names:
                subprocess.run([CORRAL, "--root", str(root), "destroy", "--force", *names],
                               capture_output=True, check=False)
        from corral.host import root_id

        for h in Path("/sys/fs/cgroup").iterdir():
            top = h / f"corral-{root_id(str(root))}"
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda q: -len(q.parts)):
                    if d.is_dir():
                        d.rmdir()
                top.rmdir()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
