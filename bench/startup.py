#!/usr/bin/env python3
"""Start-up latency, side by side: corral run --rm / corral exec vs crun and runc.

    sudo .venv/bin/python bench/startup.py [--runs 30]

All contenders run /bin/true from the same busybox rootfs (the tiny
template).  crun 1.8 refuses this host's hybrid cgroup layout unless
/sys/fs/cgroup/unified is unmounted, so its runs happen in a private mount
namespace where that is done (only there; the host's mounts are untouched).
Rounds alternate between contenders to spread the machine's noise: by
default two runs of each per round, so that no contender's block meets a
quieter or busier spell of this shared machine than the others' (with blocks
of 20 the ratio to runc moved by 10% between runs).  Medians and ratios to
crun and runc are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
CORRAL = str(VENV_BIN / "corral")


def timed(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
                       env=env)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def oci_bundle(rootfs: Path, where: Path) -> Path:
    bundle = where / "bundle"
    bundle.mkdir()
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["root"] = {"path": str(rootfs), "readonly": True}
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


CRUN_LOOP = r"""
import subprocess, sys, time, json
subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
out = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    subprocess.run(["crun", "run", "-b", sys.argv[1], f"bench-crun-{i}"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    out.append((time.perf_counter() - t0) * 1000)
print(json.dumps(out))
"""


def crun_times(bundle: Path, runs: int) -> list[float]:
    p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                        CRUN_LOOP, str(bundle), str(runs)],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def runc_times(bundle: Path, runs: int) -> list[float]:
    return timed(["runc", "run", "-b", str(bundle), f"bench-runc-{os.getpid()}"], runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=2,
                    help="runs of each contender in a row (default 2)")
    args = ap.parse_args()
    per_round = max(1, args.per_round)
    rounds = max(1, args.runs // per_round)
    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    root = work / "root"
    c = [CORRAL, "--root", str(root)]
    results: dict[str, list[float]] = {k: [] for k in
                                       ("crun run", "runc run", "corral run --rm --rootfs",
                                        "corral run --rm --template",
                                        "corral run --rm (own network)",
                                        "corral run --rm (Python init)", "corral exec",
                                        "corral --version")}
    try:
        subprocess.run([*c, "template", "build", "tiny"], check=True, stdout=subprocess.DEVNULL)
        rootfs = root / "templates" / "tiny" / "rootfs"
        bundle = oci_bundle(rootfs, work)
        subprocess.run([*c, "create", "bench", "--template", "tiny", "--net", "none", "--start"], check=True,
                       stdout=subprocess.DEVNULL)
        have = {"crun": shutil.which("crun"), "runc": shutil.which("runc")}
        for _ in range(rounds):
            if have["crun"]:
                results["crun run"] += crun_times(bundle, per_round)
            if have["runc"]:
                results["runc run"] += runc_times(bundle, per_round)
            results["corral run --rm --rootfs"] += timed(
                [*c, "run", "--rm", "--net", "none", "--rootfs", str(rootfs), "--", "/bin/true"], per_round)
            results["corral run --rm --template"] += timed(
                [*c, "run", "--rm", "--net", "none", "--template", "tiny", "--", "/bin/true"], per_round)
            # With the root's default network (a veth on its bridge, an address
            # lease): what `corral run --rm` does without --net none.  Not a
            # like-for-like row: the bundles have a network namespace with no link.
            results["corral run --rm (own network)"] += timed(
                [*c, "run", "--rm", "--template", "tiny", "--", "/bin/true"], per_round)
            # The same as the --template row with the init set up by Python
            # (a fork of the CLI) instead of its system-call program.
            results["corral run --rm (Python init)"] += timed(
                [*c, "run", "--rm", "--net", "none", "--template", "tiny", "--", "/bin/true"],
                per_round, env=dict(os.environ, CORRAL_INIT="python"))
            results["corral exec"] += timed([*c, "exec", "bench", "--", "true"], per_round)
            results["corral --version"] += timed([CORRAL, "--version"], per_round)
    finally:
        subprocess.run([*c, "destroy", "--force", "bench"], stdout=subprocess.DEVNULL, check=False)
        subprocess.run([*c, "network", "delete", "default"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        subprocess.run([*c, "doctor", "--fix"], stdout=subprocess.DEVNULL,  # the idle tops
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results["crun run"]) if results["crun run"] else None
    runc = statistics.median(results["runc run"]) if results["runc run"] else None
    print(f"{'contender':<30} {'median ms':>10} {'p90 ms':>8} {'vs crun':>8} {'vs runc':>8}")
    for name, ts in results.items():
        if not ts:
            print(f"{name:<30} {'n/a':>10}")
            continue
        med = statistics.median(ts)
        p90 = sorted(ts)[int(len(ts) * 0.9) - 1]
        ratio = f"{med / base:.2f}x" if base else "-"
        to_runc = f"{med / runc:.2f}x" if runc else "-"
        print(f"{name:<30} {med:>10.1f} {p90:>8.1f} {ratio:>8} {to_runc:>8}")


if __name__ == "__main__":
    main()
