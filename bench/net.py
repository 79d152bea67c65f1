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
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import Root  # noqa: E402


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


SINK = """
import socket, sys, time
srv = socket.socket(); srv.bind(("0.0.0.0", 5001)); srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
while conn.recv(1 << 20):
    pass
print(time.perf_counter(), flush=True)
"""
SOURCE = """
import socket, sys, time
buf = b"\\0" * (1 << 20)
s = socket.create_connection((sys.argv[1], 5001))
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    s.sendall(buf)
s.close()
print(t0, flush=True)
"""


def _in_netns(pid: int | None, code: str, *argv: str) -> subprocess.Popen[str]:
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
    return subprocess.Popen([*enter, sys.executable, "-c", code, *argv],
                            stdout=subprocess.PIPE, text=True)


def netns_transfer(src_pid: int | None, dst_pid: int, dst_ip: str, mib: int) -> float:
    """MiB/s from a source in ``src_pid``'s network namespace (None: the host) to a
    sink in ``dst_pid``'s (CLOCK_MONOTONIC is shared, so the two clocks compare)."""
    sink = _in_netns(dst_pid, SINK)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    source = _in_netns(src_pid, SOURCE, dst_ip, str(mib))
    t0 = float(source.communicate(timeout=120)[0])
    t1 = float(sink.communicate(timeout=120)[0])
    return mib / (t1 - t0)


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
    corral = Root("corral-netbench-")
    root, c = corral.path, corral.argv

    try:
        corral("template", "build", "tiny")
        corral("create", "a", "--template", "tiny", "--start")
        corral("create", "b", "--template", "tiny", "--start")
        ip = {n: json.loads(corral("info", n, "--json"))["ip"].split("/")[0] for n in "ab"}
        results = {}
        results["loopback (host)"] = loopback(args.mib)
        # The endpoints are the same Python sink and source everywhere, run in the
        # containers' network namespaces (the tiny template has no Python): what
        # differs is only the path -- loopback, veth + bridge, veth + bridge + veth.
        pid = {n: json.loads(corral("info", n, "--json"))["pid"] for n in "ab"}
        results["host -> container"] = netns_transfer(None, pid["a"], ip["a"], args.mib)
        results["container -> container"] = netns_transfer(pid["a"], pid["b"], ip["b"],
                                                           args.mib)
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
