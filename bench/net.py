#!/usr/bin/env python3
"""Network figures in one run: TCP throughput host → container vs loopback,
connection setup latency, and what networking adds to a container start.

    sudo .venv/bin/python bench/net.py [--mib 512]

Traffic stays between this host and containers on a bridge this script's
own state root creates; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CORRAL = str(Path(sys.executable).parent / "corral")


def sink_server(host: str) -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(8)
    return srv, srv.getsockname()[1]


def drain(srv: socket.socket, done: list[float]) -> None:
    conn, _ = srv.accept()
    while conn.recv(1 << 20):
        pass
    done.append(time.perf_counter())
    conn.close()


def host_send(addr: str, port: int, mib: int) -> float:
    buf = b"\0" * (1 << 20)
    with socket.create_connection((addr, port)) as s:
        t0 = time.perf_counter()
        for _ in range(mib):
            s.sendall(buf)
    return t0


def loopback(mib: int) -> float:
    srv, port = sink_server("127.0.0.1")
    done: list[float] = []
    th = threading.Thread(target=drain, args=(srv, done))
    th.start()
    t0 = host_send("127.0.0.1", port, mib)
    th.join()
    srv.close()
    return mib / (done[0] - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="corral-netbench-"))
    c = [CORRAL, "--root", str(root)]

    def corral(*a: str) -> str:
        return subprocess.run([*c, *a], check=True, capture_output=True, text=True).stdout

    try:
        corral("template", "build", "tiny")
        corral("create", "a", "--template", "tiny", "--start")
        corral("create", "b", "--template", "tiny", "--start")
        ip = {n: json.loads(corral("info", n, "--json"))["ip"].split("/")[0] for n in "ab"}
        results = {}
        results["loopback (host)"] = loopback(args.mib)
        # host → container: the container's nc discards what the host sends
        corral("exec", "a", "--", "sh", "-c", "nc -l -p 5001 >/dev/null 2>&1 </dev/null &")
        time.sleep(0.3)
        t0 = host_send(ip["a"], 5001, args.mib)
        # the container's nc exits on EOF; wait until it has
        deadline = time.time() + 60
        while "nc -l" in corral("exec", "a", "--", "ps") and time.time() < deadline:
            time.sleep(0.01)
        results["host -> container"] = args.mib / (time.perf_counter() - t0)
        base = results["loopback (host)"]
        print(f"{'TCP throughput':<26} {'MiB/s':>8} {'vs loopback':>12}")
        for k, v in results.items():
            print(f"{k:<26} {v:>8.0f} {v / base:>11.2f}x")
        # connection setup: host → container (busybox httpd) vs host loopback
        corral("exec", "a", "--", "sh", "-c", "mkdir -p /w; echo x > /w/i; httpd -p 80 -h /w")
        srv, port = sink_server("127.0.0.1")
        srv.settimeout(5)
        lat: dict[str, list[float]] = {"loopback": [], "container": []}
        for _ in range(200):
            for key, target in (("loopback", ("127.0.0.1", port)), ("container", (ip["a"], 80))):
                t = time.perf_counter()
                s = socket.create_connection(target)
                lat[key].append((time.perf_counter() - t) * 1e6)
                s.close()
                if key == "loopback":
                    srv.accept()[0].close()
        srv.close()
        print(f"\n{'TCP connect':<26} {'median µs':>10}")
        for k, v in lat.items():
            print(f"{k:<26} {statistics.median(v):>10.0f}")
        # start latency with and without networking
        corral("create", "n", "--template", "tiny")
        corral("create", "o", "--template", "tiny", "--net", "none")
        starts: dict[str, list[float]] = {"start (bridge network)": [], "start (--net none)": []}
        for _ in range(args.runs):
            for key, name in (("start (bridge network)", "n"), ("start (--net none)", "o")):
                t = time.perf_counter()
                corral("start", name)
                starts[key].append((time.perf_counter() - t) * 1000)
                corral("stop", "--timeout", "0", name)
        print(f"\n{'container start':<26} {'median ms':>10}")
        for k, v in starts.items():
            print(f"{k:<26} {statistics.median(v):>10.1f}")
        added = statistics.median(starts["start (bridge network)"]) - \
            statistics.median(starts["start (--net none)"])
        print(f"{'networking adds':<26} {added:>10.1f}")
    finally:
        names = [n for n in ("a", "b", "n", "o") if (root / "containers" / n).exists()]
        if names:
            p = subprocess.run([*c, "destroy", "--force", *names], capture_output=True, text=True)
            sys.stderr.write(p.stderr)
        p = subprocess.run([*c, "network", "delete", "default"], capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
