#!/usr/bin/env python3
"""The copy-on-write store, side by side with LXC and plain copies.

    sudo .venv/bin/python bench/storage.py [--big-mb 1024] [--count 50] [--no-debian]

1. Create a container from a 10 MB, a 1 GB and the debian-12 template:
   time and bytes written by `corral create`, by `lxc-copy` of an LXC
   container on the same rootfs (rsync copy; and `lxc-copy -s -B overlayfs`,
   LXC's own copy-on-write clone), and by `cp -a` of the tree.
2. Snapshot and restore with 1 MB, 100 MB and 1 GB of the container's own
   data: Corral stopped and running on this state root's filesystem, Corral
   running on a loop-backed btrfs root, and `lxc-snapshot` (dir backend).
3. 50 containers from one template vs 50 full copies: disk used, and page
   cache after each of them has read the template's data file once.

Bytes written are the kernel's per-process I/O accounting (getrusage of the
reaped children: blocks dirtied), so they include every helper a tool runs.
Everything is made under one temporary directory and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CORRAL, remove_root  # noqa: E402

MB = 1 << 20


def measured(argv: list[str], **kw: object) -> tuple[float, int]:
    """Seconds and bytes written by ``argv`` and everything it ran."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    seconds = time.perf_counter() - t0
    return seconds, (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sxb", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def du_blocks(*paths: Path) -> int:
    """Disk blocks really used (hard links and shared inodes counted once)."""
    out = subprocess.run(["du", "-sxc", "--block-size=1", *map(str, paths)], check=True,
                         capture_output=True, text=True)
    return int(out.stdout.splitlines()[-1].split()[0])


def fill(path: Path, mbytes: int) -> None:
    with open(path, "wb") as f:
        for _ in range(mbytes):
            f.write(os.urandom(MB))


class Lxc:
    """LXC containers with the dir backend in a private lxcpath."""

    def __init__(self, base: Path) -> None:
        self.path = base / "lxc"
        self.path.mkdir()

    def make(self, name: str, rootfs_src: Path) -> None:
        d = self.path / name
        d.mkdir()
        subprocess.run(["cp", "-a", f"{rootfs_src}/.", str(d / "rootfs")], check=True)
        (d / "config").write_text(f"lxc.uts.name = {name}\n"
                                  f"lxc.rootfs.path = dir:{d / 'rootfs'}\n"
                                  "lxc.net.0.type = empty\n")

    def copy(self, src: str, dst: str, *flags: str) -> tuple[float, int]:
        return measured(["lxc-copy", "-P", str(self.path), "-n", src, "-N", dst, *flags])

    def destroy(self, name: str) -> None:
        subprocess.run(["lxc-destroy", "-P", str(self.path), "-n", name, "-s"],
                       capture_output=True, check=False)
        shutil.rmtree(self.path / name, ignore_errors=True)


def corral(root: Path, *args: str) -> tuple[float, int]:
    return measured([CORRAL, "--root", str(root), *args])


def cli(root: Path, *args: str) -> str:
    return subprocess.run([CORRAL, "--root", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def template_with_data(root: Path, name: str, mbytes: int) -> Path:
    """The tiny template plus ``mbytes`` of data in /data/blob, as template ``name``."""
    cli(root, "template", "build", "tiny", "--name", name)
    rootfs = root / "templates" / name / "rootfs"
    (rootfs / "data").mkdir()
    fill(rootfs / "data" / "blob", mbytes)
    return rootfs


def fmt(seconds: float, nbytes: int) -> str:
    return f"{seconds * 1000:9.1f} ms {nbytes / MB:10.1f} MB"


def bench_create(root: Path, lxc: Lxc, templates: dict[str, Path], work: Path) -> list[str]:
    lines = ["", "1. create a container from a template (time, bytes written)",
             f"   {'template':<12} {'size':>9}  {'corral create':>24}  {'lxc-copy (rsync)':>24}  "
             f"{'lxc-copy -s overlay':>24}  {'cp -a':>24}  ratio cp/corral (time)"]
    for label, rootfs in templates.items():
        size = du(rootfs)
        c = corral(root, "create", f"c-{label}", "--template", label, "--net", "none")
        lxc.make(f"src-{label}", rootfs)
        lc = lxc.copy(f"src-{label}", f"dst-{label}")
        lo = lxc.copy(f"src-{label}", f"ovl-{label}", "-s", "-B", "overlayfs")
        cp = measured(["cp", "-a", str(rootfs), str(work / f"cp-{label}")])
        lines.append(f"   {label:<12} {size / MB:7.1f}MB  {fmt(*c)}  {fmt(*lc)}  {fmt(*lo)}  "
                     f"{fmt(*cp)}  {cp[0] / c[0]:6.1f}x")
        cli(root, "destroy", f"c-{label}")
        for n in (f"ovl-{label}", f"dst-{label}", f"src-{label}"):
            lxc.destroy(n)
        shutil.rmtree(work / f"cp-{label}")
    return lines


def bench_snapshots(root: Path, btrfs_root: Path | None, lxc: Lxc, tiny: Path,
                    sizes: list[int]) -> list[str]:
    lines = ["", "2. snapshot + restore with the container's own data (seconds: snapshot / restore;",
             "   corral's snapshot is the whole CLI call, its restore the figure it reports, without",
             "   the stop and start of a running container around it)",
             f"   {'data':>7}  {'corral stopped':>18}  {'corral running':>18}  "
             f"{'corral running btrfs':>20}  {'lxc-snapshot (dir)':>20}"]
    for mb in sizes:
        row = [f"{mb:5d}MB"]
        for where, live in ((root, False), (root, True), (btrfs_root, True)):
            if where is None:
                row.append(f"{'-':>18}")
                continue
            name = f"s{mb}"
            cli(where, "create", name, "--template", "tiny", "--net", "none", "--start")
            cli(where, "exec", name, "--", "sh", "-c",
                f"mkdir -p /srv; dd if=/dev/urandom of=/srv/blob bs=1M count={mb} 2>/dev/null")
            subprocess.run(["sync"], check=True)  # time the snapshot, not the disk's backlog
            if not live:
                cli(where, "stop", name, "--timeout", "5")
            snap = corral(where, "snapshot", "create", name, "s")
            # A running container is stopped and started again around the
            # restore; the figure is the restore itself, as corral reports it.
            out = cli(where, "snapshot", "restore", "--force", name, "s")
            restore = float(out.rsplit(" in ", 1)[1].split()[0])
            row.append(f"{snap[0]:8.3f} / {restore:6.3f}")
            cli(where, "destroy", "--force", name)
        lxc.make(f"snap{mb}", tiny)
        fill(lxc.path / f"snap{mb}" / "rootfs" / "blob", mb)
        subprocess.run(["sync"], check=True)
        s = measured(["lxc-snapshot", "-P", str(lxc.path), "-n", f"snap{mb}"])
        r = measured(["lxc-snapshot", "-P", str(lxc.path), "-n", f"snap{mb}", "-r", "snap0"])
        row.append(f"{s[0]:9.3f} / {r[0]:7.3f}")
        lxc.destroy(f"snap{mb}")
        lines.append("   " + "  ".join(row))
    return lines


def bench_density(root: Path, rootfs: Path, work: Path, count: int, label: str) -> list[str]:
    blob = "data/blob"
    copies = work / "copies"
    copies.mkdir()
    before = du_blocks(root / "templates" / label)
    for i in range(count):
        cli(root, "create", f"d{i}", "--template", label, "--net", "none")
    corral_disk = du_blocks(root / "templates" / label, root / "containers") - before
    for i in range(count):
        subprocess.run(["cp", "-a", str(rootfs), str(copies / f"c{i}")], check=True)
    copies_disk = du_blocks(copies)
    for i in range(count):  # each container reads the data once, through its own root
        cli(root, "run", "--rm", "--template", label, "--net", "none", "--", "sh", "-c",
            f"cat /{blob} > /dev/null")
        subprocess.run(["cat", str(copies / f"c{i}" / blob)], check=True,
                       stdout=subprocess.DEVNULL)

    def cached(paths: list[Path]) -> int:
        out = subprocess.run(["fincore", "-b", "-n", "-o", "RES", *map(str, paths)], check=True,
                             capture_output=True, text=True).stdout.split()
        return sum(int(x) for x in out)

    corral_cache = cached([rootfs / blob])  # every container's reads land on this one inode
    copies_cache = cached([copies / f"c{i}" / blob for i in range(count)])
    for i in range(count):
        cli(root, "destroy", f"d{i}")
    shutil.rmtree(copies)
    return ["", f"3. {count} containers from one {du(rootfs) / MB:.0f} MB template vs {count} "
            "full copies",
            f"   disk beyond the template: corral {corral_disk / MB:8.1f} MB   copies "
            f"{copies_disk / MB:8.1f} MB   ratio {copies_disk / max(corral_disk, 1):8.0f}x",
            f"   page cache of the data:   corral {corral_cache / MB:8.1f} MB   copies "
            f"{copies_cache / MB:8.1f} MB   ratio {copies_cache / max(corral_cache, 1):8.1f}x"]


def btrfs_pool(work: Path) -> Path | None:
    if not shutil.which("mkfs.btrfs"):
        return None
    image, mnt = work / "pool.img", work / "pool"
    with open(image, "wb") as f:
        f.truncate(8 << 30)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    return mnt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big-mb", type=int, default=1024, help="size of the big template (MB)")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--no-debian", action="store_true", help="skip the debian-12 template")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="corral-bench-storage-", dir="/var/tmp"))
    root = work / "root"
    pool = None
    try:
        pool = btrfs_pool(work)
        btrfs_root = pool / "root" if pool else None
        tiny = template_with_data(root, "t10m", 10)
        templates = {"t10m": tiny, "t1g": template_with_data(root, "t1g", args.big_mb)}
        if not args.no_debian:
            cli(root, "template", "build", "debian-12")
            templates["debian-12"] = root / "templates" / "debian-12" / "rootfs"
        cli(root, "template", "build", "tiny")
        if btrfs_root is not None:
            cli(btrfs_root, "template", "build", "tiny")
        lxc = Lxc(work)
        out = [f"corral storage benchmark: state root on {fs_type(root)}"
               + (", second root on loop-backed btrfs" if pool else "")]
        print("\n".join(out), flush=True)
        print("\n".join(bench_create(root, lxc, templates, work)), flush=True)
        print("\n".join(bench_snapshots(root, btrfs_root, lxc,
                                         root / "templates" / "tiny" / "rootfs",
                                         [1, 100, args.big_mb])), flush=True)
        print("\n".join(bench_density(root, tiny, work, args.count, "t10m")), flush=True)
    finally:
        for r in (root, pool / "root" if pool else None):
            if r is not None:
                remove_root(r)
        if pool is not None:
            subprocess.run(["umount", str(pool)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True, check=False).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
