#!/usr/bin/env python3
"""Density: K busybox servers at once, Corral vs LXC, in one run.

    sudo .venv/bin/python bench/density.py --counts 50,200 [--peers corral,lxc]

Each container runs the tiny template's busybox init with its syslogd and crond
(the "idle services") and has its own address on a bridge.  For each K and peer:
time to start all, list all, read stats of all (Corral), stop all and destroy
all; host memory per container (MemAvailable delta, and the kernel's own Slab,
PageTables and KernelStack deltas, divided by K) and the part of it beyond the
containers' own processes (delta minus the payload's RSS).  Ratios are to LXC.

LXC runs the same rootfs (overlay over the tiny template's tree, a private upper
per container) with veth on a bridge this script creates (`lxcbench0`,
10.198.0.0/16); nothing is sent anywhere.  Everything made is removed at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CORRAL = str(Path(sys.executable).parent / "corral")
BRIDGE = "lxcbench0"


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def payload_rss(marker: str) -> int:
    """Proportional set size (shared pages split among their users) of every process
    whose cgroup path contains ``marker``: what the payload itself costs."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if marker not in f.read():
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class CorralPeer:
    name = "corral"

    def __init__(self, work: Path, k: int) -> None:
        self.root = work / "corral"
        self.k = k
        self.c = [CORRAL, "--root", str(self.root)]

    def prepare(self) -> None:
        run(*self.c, "template", "build", "tiny")
        with ThreadPoolExecutor(8) as ex:  # creating is not what is measured
            list(ex.map(lambda i: run(*self.c, "create", f"c{i}", "--template", "tiny"),
                        range(self.k)))

    def start(self) -> None:
        run(*self.c, "start", "--all", "--parallel", "8")

    def list(self) -> None:
        items = json.loads(run(*self.c, "list", "--json"))
        assert sum(i["state"] == "running" for i in items) == self.k

    def stats(self) -> None:
        run(*self.c, "stats", "--all", "--json")

    def marker(self) -> str:
        from corral.host import root_id

        return f"/corral-{root_id(str(self.root))}/"

    def stop(self) -> None:
        run(*self.c, "stop", "--all", "--parallel", "16", "--timeout", "5")

    def destroy(self) -> None:
        run(*self.c, "destroy", "--all", "--force", "--parallel", "8")
        subprocess.run([*self.c, "network", "delete", "default"], capture_output=True)

    def cleanup(self) -> None:
        if self.root.exists():
            subprocess.run([*self.c, "destroy", "--all", "--force", "--parallel", "8"],
                           capture_output=True)
            subprocess.run([*self.c, "network", "delete", "default"], capture_output=True)


class LxcPeer:
    name = "lxc"

    def __init__(self, work: Path, k: int, rootfs: Path) -> None:
        self.path = work / "lxc"
        self.k = k
        self.rootfs = rootfs

    def prepare(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for i in range(self.k):
            d = self.path / f"c{i}"
            (d / "upper").mkdir(parents=True)
            (d / "config").write_text(
                f"lxc.uts.name = c{i}\n"
                f"lxc.rootfs.path = overlay:{self.rootfs}:{d / 'upper'}\n"
                "lxc.init.cmd = /sbin/init\n"
                "lxc.net.0.type = veth\n"
                f"lxc.net.0.link = {BRIDGE}\n"
                "lxc.net.0.flags = up\n"
                f"lxc.net.0.ipv4.address = 10.198.{1 + i // 250}.{1 + i % 250}/16\n"
                "lxc.net.0.ipv4.gateway = 10.198.0.1\n"
                "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\n"
                "lxc.autodev = 1\nlxc.tty.max = 0\nlxc.pty.max = 16\n"
                "lxc.apparmor.profile = unconfined\n")

    def _each(self, argv: list[str]) -> None:
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: run(*argv, "-P", str(self.path), "-n", f"c{i}"),
                        range(self.k)))

    def start(self) -> None:
        self._each(["lxc-start", "-d"])

    def list(self) -> None:
        out = run("lxc-ls", "-P", str(self.path), "--running")
        assert len(out.split()) == self.k

    def stats(self) -> None:
        raise NotImplementedError  # LXC has no one call for every container's usage

    def marker(self) -> str:
        return "lxc.payload."

    def stop(self) -> None:
        self._each(["lxc-stop", "-t", "5"])

    def destroy(self) -> None:
        shutil.rmtree(self.path)

    def cleanup(self) -> None:
        if self.path.exists():
            for i in range(self.k):
                subprocess.run(["lxc-stop", "-k", "-P", str(self.path), "-n", f"c{i}"],
                               capture_output=True)
            shutil.rmtree(self.path, ignore_errors=True)


def measure(peer) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    peer.prepare()
    time.sleep(1)
    before = meminfo()
    res: dict[str, float | None] = {"start": timed(peer.start)}
    time.sleep(3)  # let every init reach its services
    res["list"] = timed(peer.list)
    try:
        res["stats"] = timed(peer.stats)
    except NotImplementedError:
        res["stats"] = None
    after = meminfo()
    k = peer.k
    delta = before["MemAvailable"] - after["MemAvailable"]
    kernel = sum(after[x] - before[x] for x in ("Slab", "PageTables", "KernelStack"))
    rss = payload_rss(peer.marker())
    res["mem_mb"] = delta / k / 2**20
    res["kernel_mb"] = kernel / k / 2**20
    res["beyond_mb"] = (delta - rss) / k / 2**20
    res["stop"] = timed(peer.stop)
    res["destroy"] = timed(peer.destroy)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="50,200")
    ap.add_argument("--peers", default="corral,lxc")
    args = ap.parse_args()
    peers = args.peers.split(",")
    work = Path(tempfile.mkdtemp(prefix="corral-density-"))
    made_bridge = False
    live: list[object] = []
    lxc_pivot_before = Path("/sys/fs/cgroup/memory/lxc.pivot").exists()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        tmpl = work / "tmpl"
        run(CORRAL, "--root", str(tmpl), "template", "build", "tiny")
        rootfs = tmpl / "templates" / "tiny" / "rootfs"
        if "lxc" in peers:
            if shutil.which("lxc-start") is None:
                print("lxc: not installed, skipped")
                peers.remove("lxc")
            else:
                run("ip", "link", "add", BRIDGE, "type", "bridge")
                made_bridge = True
                run("ip", "addr", "add", "10.198.0.1/16", "dev", BRIDGE)
                run("ip", "link", "set", BRIDGE, "up")
        for k in (int(x) for x in args.counts.split(",")):
            results = {}
            for name in peers:
                peer = CorralPeer(work, k) if name == "corral" else LxcPeer(work, k, rootfs)
                live.append(peer)
                results[name] = measure(peer)
                live.remove(peer)
            base = results.get("lxc")
            print(f"\nK = {k}   (times in s; memory in MB per container)")
            cols = ("start", "list", "stats", "stop", "destroy", "mem_mb", "kernel_mb",
                    "beyond_mb")
            print(f"{'peer':<12}" + "".join(f"{c:>10}" for c in cols))
            for name, r in results.items():
                print(f"{name:<12}" + "".join(f"{'n/a':>10}" if r[c] is None else
                                              f"{r[c]:>10.2f}" for c in cols))
                if base and name != "lxc":
                    print(f"{'  / lxc':<12}" + "".join(
                        f"{r[c] / base[c]:>9.2f}x" if r[c] is not None and base[c]
                        else f"{'-':>10}" for c in cols))
    finally:
        for peer in live:
            peer.cleanup()  # type: ignore[attr-defined]
        if made_bridge:
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        for hier in Path("/sys/fs/cgroup").iterdir():  # LXC's own helper cgroup, if empty
            if (hier / "lxc.pivot").is_dir() and not lxc_pivot_before:
                try:
                    (hier / "lxc.pivot").rmdir()
                except OSError:
                    pass
        subprocess.run([CORRAL, "--root", str(work / "tmpl"), "template", "remove", "tiny"],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
