#!/usr/bin/env python3
"""What limits cost: workloads in a limited-but-not-throttled container vs on the
host, and the cost of `corral stats --all --json` over many containers.

    sudo .venv/bin/python bench/resources.py [--containers 100]

The same static busybox runs the same workload in both places; each side
times itself (busybox `time`), so `corral exec`'s own start-up is not
counted.  Ratio = host time / container time (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Root  # noqa: E402
WORKLOADS = {
    "cpu-bound (awk loop)": "awk 'BEGIN { for (i = 0; i < 4000000; i++) s += i * i }'",
    "memory-bound (dd 1 MiB blocks)": "dd if=/dev/zero of=/dev/null bs=1048576 count=40000",
}


def busy_time(output: str) -> float:
    m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", output)
    if not m:
        raise RuntimeError(f"no time in {output!r}")
    return int(m.group(1)) * 60 + float(m.group(2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    corral = Root("corral-resbench-")
    root, c = corral.path, corral.argv

    names: list[str] = []
    try:
        corral("template", "build", "tiny")
        # limited, but far above what the workload uses: the cost of being limited
        corral("create", "lim", "--template", "tiny", "--net", "none", "--cpus", "2",
               "--memory", "2G", "--pids", "1000", "--start")
        names.append("lim")
        print(f"{'workload':<32} {'host s':>8} {'container s':>12} {'ratio':>7}")
        for label, cmd in WORKLOADS.items():
            host, inside = [], []
            for _ in range(args.runs):
                p = subprocess.run(["busybox", "sh", "-c", f"time {cmd}"], capture_output=True,
                                   text=True)
                host.append(busy_time(p.stderr))
                p = subprocess.run([*c, "exec", "lim", "--", "sh", "-c", f"time {cmd}"],
                                   capture_output=True, text=True)
                inside.append(busy_time(p.stderr))
            h, i = statistics.median(host), statistics.median(inside)
            print(f"{label:<32} {h:>8.3f} {i:>12.3f} {h / i:>7.3f}")
        # stats --all over N running containers
        for n in range(args.containers):
            corral("create", f"s{n}", "--template", "tiny", "--net", "none")
            names.append(f"s{n}")
        corral("start", "--all", "--parallel", "4")
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([*c, "stats", "--all", "--json"], check=True, capture_output=True)
            times.append((time.perf_counter() - t) * 1000)
        print(f"\ncorral stats --all --json, {len(names)} running containers: "
              f"{statistics.median(times):.0f} ms (median of {args.runs})")
        t = time.perf_counter()
        subprocess.run([*c, "list", "--json"], check=True, capture_output=True)
        print(f"corral list --json, {len(names)} running containers: "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        if names:
            subprocess.run([*c, "destroy", "--force", "--all", "--parallel", "4"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
