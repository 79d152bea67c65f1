#!/usr/bin/env python3
"""Density: K busybox servers at once, Corral vs LXC, crun and runc, in one run.

    sudo .venv/bin/python bench/density.py --counts 50,200 [--peers corral,lxc,crun,runc,podman]

Every peer runs the same payload: the tiny template's busybox init with its
syslogd, crond (the "idle service") and console-getty (a sleep when there is
no terminal), on the tiny template's rootfs with a private overlay upper per
container, each container with its own address on a bridge.  For each K and
peer, one after the other in the same run, it measures the time to start all,
list all, read the stats of all, stop all (clean shutdown, killed after 5 s)
and destroy all, and the host's memory per container:

* ``MB/ct``: MemAvailable before creating minus MemAvailable with all running
  (2 s after the last start, both read once they hold still), divided by K.
  What a peer needs once -- its rootfs or template, its bridge -- is made
  before the baseline; the per-container files its create step writes are
  inside.  Caches are never dropped, but before each baseline the slab caches
  hand their empty pages back (/sys/kernel/slab/*/shrink), so that no peer
  runs on pages the previous one left behind.  Free pages parked on the
  kernel's per-CPU lists (/proc/zoneinfo ``count:``) are added to
  MemAvailable: they are free but not counted in MemFree, and after a burst
  of process exits (every CLI call is one) they hold 100+ MB here, draining
  over ~30 s, which would be charged to whichever peer ran most processes;
* ``kern MB/ct``: the same delta of Slab + PageTables + KernelStack;
* ``over MB/ct``: the MemAvailable delta minus what the containers' own
  processes use, divided by K: memory beyond the payload.  The payload is
  counted by PSS (its RSS with pages shared by several processes split among
  them); a plain RSS sum would count busybox's text once per process and the
  difference would go negative.  Both are printed.
* ``beyond MB/ct``: MB/ct minus the same figure of the ``plain`` payload: the
  same services run K times as plain host processes (see PlainPeer), measured
  first at every K the same way: the memory a peer needs beyond its own
  processes.  PSS counts only the processes' user pages, while a process
  also costs the kernel its page tables, kernel stack and task structures
  (~0.3 MB for these four busybox processes) -- a cost every peer pays
  alike and none can shed.

Peers, with the parallelism of Corral's commands (start 8, stop 16, destroy 8):

* corral: a fresh state root per K; ``create`` K times (not timed), ``start
  --all --parallel 8``, ``list --json``, ``stats --all --json``, ``stop --all
  --parallel 16 --timeout 5``, ``destroy --all --parallel 8``, then ``network
  delete default``.  Default networking (own bridge of the root), no limits.
* lxc: ``lxc-start -d`` / ``lxc-ls --running`` / ``lxc-info -S`` / ``lxc-stop
  -t 5`` per container, destroy = removing its directory; overlay rootfs,
  veth on ``lxcbench0`` (a bridge this script makes: 10.198.0.1/16, no NAT;
  its containers get no default route, so nothing leaves the bridge).
* crun and runc: ``run -d`` of a bundle per container (cgroupfs, the
  runtime's own state dir, overlay root mounted in a private mount namespace
  so the host's mount table is untouched), then a veth on ``lxcbench0`` made
  by this script (``ip`` / ``nsenter``), counted in the start time; stop =
  ``kill USR2`` to every init (busybox power-off; the bundles keep
  CAP_SYS_BOOT, as Corral and LXC do, so the init can end its PID namespace),
  wait for all (5 s), ``kill KILL`` to the rest;
  destroy = ``delete`` and removing the bundle.  crun 1.8 refuses this host's
  hybrid cgroups, so its ``run`` happens in a private mount namespace where
  /sys/fs/cgroup/unified is unmounted (only there).  Bare runtimes have no
  stats command except ``runc events --stats`` (per container); for crun it
  is n/a.
* podman (where installed): ``podman create --rootfs ROOTFS:O`` per
  container (not timed; its own overlay upper), ``podman start`` and the same
  veth as crun and runc, ``ps``, ``stats --all --no-stream``, ``stop --all -t
  5``, ``rm --all``; runc under it, cgroupfs, no podman network (see
  PodmanPeer).

Everything made is removed at the end, also on Ctrl-C / SIGTERM / SIGHUP:
containers, bundles, cgroups below this run's own parents, the links it made,
the temporary directory; only processes it started are killed.  Ratios are
to LXC.  The machine is shared and noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import CGROUP_ROOT, cgroup_hierarchies, payload, payload_of, proc_start, rmdir_tree

CORRAL = str(Path(sys.executable).parent / "corral")
BRIDGE = "lxcbench0"
BRIDGE_ADDR = "10.198.0.1/16"
TAG = f"{os.getpid() & 0xFFFF:04x}"  # names this run's containers, cgroups and links
PAR_START, PAR_STOP, PAR_DESTROY = 8, 16, 8
STOP_TIMEOUT = 5.0
MB = 2**20


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(*argv: str, input: str | None = None, check: bool = True,
        timeout: float | None = 120) -> str:
    p = subprocess.run(argv, check=False, input=input, capture_output=True, text=True,
                       timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise BenchError(f"{shlex.join(argv)}: exit {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()[-1500:]}")
    return p.stdout


def quiet(*argv: str) -> None:
    """Best effort (cleanup): never raises."""
    try:
        subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass


def parallel(fn: Callable[[Any], Any], items: Iterable[Any], n: int) -> None:
    """fn over items in n threads; the first error is raised once the running
    calls have returned, and calls not yet begun are dropped (also on Ctrl-C)."""
    ex = ThreadPoolExecutor(n)
    try:
        for f in [ex.submit(fn, i) for i in items]:
            f.result()
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ---- memory ---------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def pcp_free() -> int:
    """Bytes of free pages on the per-CPU page lists of every zone."""
    total = 0
    with open("/proc/zoneinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "count:":
                total += int(parts[1])
    return total * PAGE


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes, plus ``Available``: MemAvailable + per-CPU free pages."""
    try:
        with open("/proc/sys/vm/stat_refresh") as f:  # fold per-CPU counter deltas in
            f.read()
    except OSError:
        pass
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0]) * 1024
    out["PcpFree"] = pcp_free()
    out["Available"] = out["MemAvailable"] + out["PcpFree"]
    return out


def settled_meminfo(limit: float = 20.0) -> dict[str, int]:
    """meminfo() once Available moves less than 4 MB in a second (the kernel
    frees namespaces and slabs of the previous peer asynchronously), at most
    ``limit`` seconds."""
    prev = meminfo()
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(1)
        cur = meminfo()
        if abs(cur["Available"] - prev["Available"]) < 4 * MB:
            return cur
        prev = cur
    return prev


def release_empty_slabs() -> None:
    """Hand the kernel's empty slab pages back to the page allocator.

    Objects freed by the previous peer leave whole slab pages cached in their
    caches; the next peer's allocations fill those first and look cheaper than
    the same allocations made from scratch.  Releasing them before each
    baseline starts every peer from the same allocator state.  It frees no
    object in use and drops no cache (unlike vm.drop_caches).
    """
    base = Path("/sys/kernel/slab")
    for cache in (base.iterdir() if base.is_dir() else ()):
        try:
            (cache / "shrink").write_text("1")
        except OSError:
            pass


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


# ---- peers ----------------------------------------------------------------------------

class Peer:
    name = ""
    stats_how = ""

    def __init__(self, work: Path, k: int) -> None:
        self.work = work
        self.k = k
        self.notes: list[str] = []

    def setup(self) -> None: ...  # one-time, before the baseline: not measured
    def prepare(self) -> None: ...
    def start(self) -> None: ...
    def list(self) -> None: ...
    def stats(self) -> None: raise NotImplementedError
    def marker(self) -> str: raise NotImplementedError
    def payload(self) -> tuple[int, int, int]: return payload(self.marker())
    def stop(self) -> None: ...
    def destroy(self) -> None: ...
    def post(self) -> None: ...  # after destroy, not timed
    def cleanup(self) -> None: ...


class PlainPeer(Peer):
    """The payload without any container: what "beyond its own processes" is measured from.

    K times the tiny template's services as plain host processes -- its
    syslogd and crond with the same arguments, the console-getty's sleep, and
    a second sleep standing in for busybox init (which refuses to run as
    anything but PID 1; sleep is the smallest busybox process, so the payload
    is if anything counted short, never long).  They run chrooted in one copy
    of the template's rootfs, so that syslogd's /dev/log and log file are the
    copy's, not the host's; chroot adds no kernel object.  No namespace, no
    cgroup of their own, no network: the cost of the same processes as
    processes, page tables, kernel stacks and task structures included.
    """

    name = "plain"

    def __init__(self, work: Path, k: int, rootfs: Path) -> None:
        super().__init__(work, k)
        self.rootfs = rootfs
        self.root = work / f"plain-{k}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.argvs = [["/sbin/syslogd", "-n", "-O", "/var/log/messages"],
                      ["/usr/sbin/crond", "-f", "-c", "/etc/crontabs"],
                      ["/bin/sleep", "2147483647"],   # console-getty without a terminal
                      ["/bin/sleep", "2147483647"]]   # in place of init

    def setup(self) -> None:
        shutil.copytree(self.rootfs, self.root, symlinks=True)
        for d in ("var/log", "var/spool/cron/crontabs", "run", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["chroot", str(self.root), *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def start(self) -> None:
        for _ in range(self.k):
            self.procs.extend(self._spawn(argv) for argv in self.argvs)
        # Every syslogd unlinks /dev/log and binds it anew: two starting at the
        # same moment can both unlink first, and the second bind then fails.
        # Those start again, one at a time.
        for _ in range(5):
            time.sleep(0.5)
            gone = [i for i, p in enumerate(self.procs) if p.poll() is not None]
            if not gone:
                return
            for i in gone:
                self.procs[i] = self._spawn(self.procs[i].args[2:])
                time.sleep(0.05)
        raise BenchError(f"plain payload: {len(gone)} processes keep exiting, "
                         f"e.g. {shlex.join(self.procs[gone[0]].args)}")

    def payload(self) -> tuple[int, int, int]:
        return payload_of([p.pid for p in self.procs])

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def cleanup(self) -> None:
        self.stop()  # only the processes this peer started, by their Popen
        shutil.rmtree(self.root, ignore_errors=True)


# Corral's default network is a /24; for more containers the bench makes it
# larger (inside Corral's own pool 10.200.0.0/13, apart from LXC's 10.198/16).
CORRAL_BIG_SUBNET = "10.206.0.0/20"


class CorralPeer(Peer):
    name = "corral"
    stats_how = "stats --all --json"

    def __init__(self, work: Path, k: int) -> None:
        super().__init__(work, k)
        self.root = work / f"corral-{k}"
        self.c = [CORRAL, "--root", str(self.root)]
        self.id: str | None = None
        try:
            from corral.host import root_id  # names the root's cgroups, bridge, nft table
            self.id = root_id(str(self.root))
        except ImportError:
            log("corral.host.root_id not importable: the id comes from `list --json`")

    def setup(self) -> None:
        # Like the other peers' rootfs and bridge, made before the baseline.
        run(*self.c, "template", "build", "tiny")
        if self.k > 250:  # the default network is a /24
            run(*self.c, "network", "create", "default", "--subnet", CORRAL_BIG_SUBNET)

    def prepare(self) -> None:
        parallel(lambda i: run(*self.c, "create", f"c{i}", "--template", "tiny"),
                 range(self.k), 8)

    def start(self) -> None:
        run(*self.c, "start", "--all", "--parallel", str(PAR_START), timeout=600)

    def list(self) -> None:
        items = json.loads(run(*self.c, "list", "--json"))
        running = sum(i["state"] == "running" for i in items)
        if running != self.k:
            raise BenchError(f"corral list: {running} running, expected {self.k}")
        if items and not self.id:
            self.id = items[0]["cgroup"].split("/")[0].removeprefix("corral-")

    def stats(self) -> None:
        json.loads(run(*self.c, "stats", "--all", "--json"))

    def marker(self) -> str:
        return f"/corral-{self.id}/"

    def stop(self) -> None:
        run(*self.c, "stop", "--all", "--parallel", str(PAR_STOP), "--timeout",
            str(int(STOP_TIMEOUT)), timeout=600)

    def destroy(self) -> None:
        run(*self.c, "destroy", "--all", "--parallel", str(PAR_DESTROY), timeout=600)

    def post(self) -> None:
        run(*self.c, "network", "delete", "default")

    def cleanup(self) -> None:
        if self.root.exists():
            quiet(*self.c, "destroy", "--all", "--force", "--parallel", "8")
            quiet(*self.c, "doctor", "--fix")
            quiet(*self.c, "network", "delete", "default")
            quiet(*self.c, "template", "remove", "tiny")
        if not self.id:
            return
        # What corral should have removed itself: swept only by this root's id.
        for h in cgroup_hierarchies():
            cg = h / f"corral-{self.id}"
            if cg.exists():
                self.notes.append(f"leftover cgroup {cg} (removed: {rmdir_tree(cg)})")
        br = f"cr{self.id}0"
        if link_exists(br):
            self.notes.append(f"leftover bridge {br}")
            quiet("ip", "link", "del", br)
        for line in run("nft", "list", "tables", check=False).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == f"corral_{self.id}":
                self.notes.append(f"leftover nft table {parts[1]} {parts[2]}")
                quiet("nft", "delete", "table", parts[1], parts[2])


class LxcPeer(Peer):
    name = "lxc"
    stats_how = "lxc-info -S per container"

    def __init__(self, work: Path, k: int, rootfs: Path, net: str) -> None:
        super().__init__(work, k)
        self.path = work / f"lxc-{k}"
        self.rootfs = rootfs
        self.net = net
        self.names = [f"db{TAG}-{i}" for i in range(k)]

    def prepare(self) -> None:
        self.path.mkdir()
        for i, name in enumerate(self.names):
            d = self.path / name
            (d / "upper").mkdir(parents=True)
            if self.net == "veth":
                net = ("lxc.net.0.type = veth\n"
                       f"lxc.net.0.link = {BRIDGE}\n"
                       "lxc.net.0.flags = up\n"
                       f"lxc.net.0.ipv4.address = 10.198.{1 + i // 250}.{1 + i % 250}/16\n")
            else:
                net = "lxc.net.0.type = empty\n"
            (d / "config").write_text(
                f"lxc.uts.name = {name}\n"
                f"lxc.rootfs.path = overlay:{self.rootfs}:{d / 'upper'}\n"
                "lxc.init.cmd = /sbin/init\n"
                f"{net}"
                "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\n"
                "lxc.autodev = 1\nlxc.tty.max = 0\nlxc.pty.max = 16\n"
                "lxc.apparmor.profile = unconfined\n")

    def _each(self, argv: list[str], n: int) -> None:
        parallel(lambda name: run(*argv, "-P", str(self.path), "-n", name), self.names, n)

    def start(self) -> None:
        self._each(["lxc-start", "-d"], PAR_START)

    def list(self) -> None:
        out = run("lxc-ls", "-P", str(self.path), "--running", "-1").split()
        running = sum(n.startswith(f"db{TAG}-") for n in out)
        if running != self.k:
            raise BenchError(f"lxc-ls: {running} running, expected {self.k}")

    def stats(self) -> None:
        self._each(["lxc-info", "-S", "-H"], PAR_START)

    def marker(self) -> str:
        return f"lxc.payload.db{TAG}-"

    def stop(self) -> None:
        self._each(["lxc-stop", "-t", str(int(STOP_TIMEOUT))], PAR_STOP)

    def destroy(self) -> None:
        parallel(lambda name: shutil.rmtree(self.path / name), self.names, PAR_DESTROY)
        self.path.rmdir()

    def cleanup(self) -> None:
        if self.path.exists():
            for name in self.names:
                if (self.path / name).exists():
                    quiet("lxc-stop", "-k", "-P", str(self.path), "-n", name)
            shutil.rmtree(self.path, ignore_errors=True)
        for h in cgroup_hierarchies():  # LXC removes these itself; only ours, by name
            for cg in [*h.glob(f"lxc.payload.db{TAG}-*"), *h.glob(f"lxc.monitor.db{TAG}-*")]:
                self.notes.append(f"leftover cgroup {cg} (removed: {rmdir_tree(cg)})")


class BridgedPeer(Peer):
    """A peer without networking of its own: this script gives each container a
    veth on the bench bridge (counted in its start), and its cgroups live under
    a parent of this run's."""

    def __init__(self, work: Path, k: int, name: str, net: str, subnet: int) -> None:
        super().__init__(work, k)
        self.name = name
        self.net = net
        self.cg_parent = f"densbench-{TAG}-{name}-{k}"
        self.subnet = subnet  # third octet of its first address in 10.198.0.0/16
        self.links: list[str] = []
        self.lock = threading.Lock()

    def wire(self, i: int, pid: int) -> None:
        """Container ``i`` (init ``pid``): a veth on the bridge and an address."""
        if self.net != "veth":
            return
        host = f"db{TAG}{self.name[0]}{i}"
        with self.lock:
            self.links.append(host)
        run("ip", "-batch", "-", input=f"link add {host} type veth peer name eth0 netns {pid}\n"
                                        f"link set {host} master {BRIDGE} up\n")
        addr = f"10.198.{self.subnet + i // 250}.{1 + i % 250}/16"
        run("nsenter", "-t", str(pid), "-n", "ip", "-batch", "-",
            input=f"addr add {addr} dev eth0\nlink set eth0 up\n")

    def sweep(self) -> None:
        """After its own cleanup: its cgroups and links, if anything is left."""
        time.sleep(0.2)
        for h in cgroup_hierarchies():
            cg = h / self.cg_parent
            if cg.exists() and not rmdir_tree(cg):
                self.notes.append(f"could not remove cgroup {cg}")
        for link in self.links:  # gone with the container's netns, normally
            if link_exists(link):
                quiet("ip", "link", "del", link)


class OciPeer(BridgedPeer):
    """crun or runc: a bundle per container, detached."""

    def __init__(self, work: Path, k: int, runtime: str, rootfs: Path, net: str) -> None:
        super().__init__(work, k, runtime, net, 64 if runtime == "crun" else 128)
        self.bin = shutil.which(runtime) or runtime
        self.dir = work / f"{runtime}-{k}"
        self.state = self.dir / "state"
        self.rootfs = rootfs
        self.ids = [f"c{i}" for i in range(k)]
        self.pids: dict[str, tuple[int, int]] = {}  # id -> (init pid, start time)
        # crun 1.8 refuses hybrid cgroups: run it where the v2 mount is not there.
        self.hide_unified = runtime == "crun" and os.path.ismount(CGROUP_ROOT / "unified")
        self.stats_how = "runc events --stats per container" if runtime == "runc" else ""
        self.global_args = [self.bin, "--root", str(self.state)]
        if runtime == "crun":
            self.global_args.append("--cgroup-manager=cgroupfs")

    def bundle(self, cid: str) -> Path:
        return self.dir / "b" / cid

    def spec(self, cid: str) -> dict[str, Any]:
        caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
                "CAP_SYS_NICE", "CAP_SYS_BOOT", "CAP_AUDIT_WRITE",
                "CAP_SETFCAP", "CAP_IPC_LOCK", "CAP_LEASE"]
        nosuid = ["nosuid", "noexec", "nodev"]
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/sbin/init"],
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
                # SYS_BOOT: busybox init's power-off ends the container's PID namespace
                # (the kernel never reboots the host from a child PID namespace).
                "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                "noNewPrivileges": False,
            },
            "root": {"path": "rootfs", "readonly": False},
            "hostname": cid,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                             "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": [*nosuid, "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": nosuid},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": [*nosuid, "ro"]},
            ],
            "linux": {
                "cgroupsPath": f"/{self.cg_parent}/{cid}",
                "resources": {"devices": [{"allow": False, "access": "rwm"}]},
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list",
                                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                  "/proc/sysrq-trigger"],
            },
        }

    def prepare(self) -> None:
        self.state.mkdir(parents=True)
        for cid in self.ids:
            b = self.bundle(cid)
            for sub in ("rootfs", "upper", "work"):
                (b / sub).mkdir(parents=True)
            (b / "config.json").write_text(json.dumps(self.spec(cid)))

    def _start_one(self, i: int) -> None:
        cid = self.ids[i]
        b = self.bundle(cid)
        q = shlex.quote
        script = ("umount /sys/fs/cgroup/unified && " if self.hide_unified else "") + (
            f"mount -t overlay overlay -o lowerdir={q(str(self.rootfs))},"
            f"upperdir={q(str(b / 'upper'))},workdir={q(str(b / 'work'))} {q(str(b / 'rootfs'))}"
            f" && exec {shlex.join(self.global_args)} run -d --pid-file {q(str(b / 'pid'))}"
            f" -b {q(str(b))} {cid}")
        # The container keeps the runtime's stdio: give it a file, not a pipe.
        with open(b / "console.log", "wb") as out:
            rc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                                check=False, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, timeout=60).returncode
        if rc != 0:
            raise BenchError(f"{self.name} run {cid}: exit {rc}: "
                             f"{(b / 'console.log').read_text(errors='replace')[-400:]}")
        pid = int((b / "pid").read_text())
        start = proc_start(pid)
        if start is None:
            raise BenchError(f"{self.name} {cid}: init {pid} exited at once")
        with self.lock:
            self.pids[cid] = (pid, start)
        self.wire(i, pid)

    def start(self) -> None:
        parallel(self._start_one, range(self.k), PAR_START)

    def _list(self) -> list[dict[str, Any]]:
        return json.loads(run(*self.global_args, "list", "--format", "json") or "null") or []

    def list(self) -> None:
        running = sum(c["status"] == "running" for c in self._list())
        if running != self.k:
            raise BenchError(f"{self.name} list: {running} running, expected {self.k}")

    def stats(self) -> None:
        if self.name != "runc":
            raise NotImplementedError
        parallel(lambda cid: run(*self.global_args, "events", "--stats", cid), self.ids,
                 PAR_START)

    def marker(self) -> str:
        return f"/{self.cg_parent}/"

    def _alive(self) -> list[str]:
        return [cid for cid, (pid, st) in self.pids.items() if proc_start(pid) == st]

    def stop(self) -> None:
        parallel(lambda cid: run(*self.global_args, "kill", cid, "USR2"), self.ids, PAR_STOP)
        end = time.monotonic() + STOP_TIMEOUT
        while (alive := self._alive()) and time.monotonic() < end:
            time.sleep(0.05)
        if alive:
            self.notes.append(f"stop: {len(alive)} killed after {STOP_TIMEOUT:.0f} s")
            parallel(lambda cid: run(*self.global_args, "kill", cid, "KILL", check=False),
                     alive, PAR_STOP)
            end = time.monotonic() + 10
            while self._alive() and time.monotonic() < end:
                time.sleep(0.05)

    def destroy(self) -> None:
        def one(cid: str) -> None:
            run(*self.global_args, "delete", cid)
            shutil.rmtree(self.bundle(cid))
        parallel(one, self.ids, PAR_DESTROY)
        for h in cgroup_hierarchies():
            rmdir_tree(h / self.cg_parent)

    def cleanup(self) -> None:
        if self.state.exists():
            wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    ('umount /sys/fs/cgroup/unified; ' if self.hide_unified else '')
                    + 'exec "$@"', "sh"]
            ids = run(*self.global_args, "list", "-q", check=False).split()
            for cid in ids:
                quiet(*self.global_args, "kill", cid, "KILL")
                quiet(*wrap, *self.global_args, "delete", "-f", cid)
        for cid in self._alive():  # only inits this run started, still in its cgroup
            pid, _ = self.pids[cid]
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    if self.marker() in f.read():
                        os.kill(pid, signal.SIGKILL)
                        self.notes.append(f"killed leftover init {pid} of {cid}")
            except OSError:
                pass
        self.sweep()
        shutil.rmtree(self.dir, ignore_errors=True)


class PodmanPeer(BridgedPeer):
    """podman (runc under it): a container per `podman create --rootfs DIR:O`.

    The same rootfs with a private overlay upper per container (``:O``), its
    own storage and run directories under this run's, cgroupfs under a
    cgroup parent of this run's (conmon, podman's per-container monitor,
    goes to its ``conmon`` child: not payload), busybox init stopped with
    SIGUSR2 (power-off, as for crun and runc), no podman network (that would
    add netavark's firewall tables to the host's): a veth on the bench bridge
    made by this script, as for crun and runc, counted in the start.  This
    host's hard limits are below podman's default ulimits and crun refuses
    hybrid cgroups, so podman runs runc with a containers.conf of this run's
    that sets no ulimits.
    """

    stats_how = "podman stats --all --no-stream"

    def __init__(self, work: Path, k: int, rootfs: Path, net: str) -> None:
        super().__init__(work, k, "podman", net, 192)
        self.dir = work / f"podman-{k}"
        self.rootfs = rootfs
        self.names = [f"p{i}" for i in range(k)]
        self.podman = [shutil.which("podman") or "podman", "--root", str(self.dir / "storage"),
                       "--runroot", str(self.dir / "run"), "--cgroup-manager", "cgroupfs",
                       "--events-backend", "none", "--runtime", "runc"]
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.dir / "containers.conf")}

    def _run(self, *argv: str, check: bool = True) -> str:
        p = subprocess.run([*self.podman, *argv], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, env=self.env, timeout=600, check=False)
        if check and p.returncode != 0:
            raise BenchError(f"podman {argv[0]}: exit {p.returncode}: {p.stderr.strip()[-400:]}")
        return p.stdout

    def setup(self) -> None:
        self.dir.mkdir(parents=True)
        (self.dir / "containers.conf").write_text("[containers]\ndefault_ulimits = []\n")

    def prepare(self) -> None:
        parallel(lambda name: self._run(
            "create", "--name", name, "--hostname", name, "--network", "none",
            "--cgroup-parent", f"/{self.cg_parent}", "--cap-add", "SYS_BOOT",
            "--stop-signal", "SIGUSR2", "--rootfs", f"{self.rootfs}:O", "/sbin/init"),
            self.names, 8)

    def _start_one(self, i: int) -> None:
        name = self.names[i]
        self._run("start", name)
        if self.net == "veth":
            self.wire(i, int(self._run("inspect", "--format", "{{.State.Pid}}", name)))

    def start(self) -> None:
        parallel(self._start_one, range(self.k), PAR_START)

    def list(self) -> None:
        running = sum(c.get("State") == "running"
                      for c in json.loads(self._run("ps", "--format", "json") or "[]"))
        if running != self.k:
            raise BenchError(f"podman ps: {running} running, expected {self.k}")

    def stats(self) -> None:
        json.loads(self._run("stats", "--all", "--no-stream", "--format", "json"))

    def marker(self) -> str:
        return f"/{self.cg_parent}/libpod-"  # the containers' cgroups, not conmon's

    def stop(self) -> None:
        self._run("stop", "--all", "-t", str(int(STOP_TIMEOUT)))

    def destroy(self) -> None:
        self._run("rm", "--all")
        for h in cgroup_hierarchies():
            rmdir_tree(h / self.cg_parent)

    def cleanup(self) -> None:
        if (self.dir / "storage").exists():
            self._run("rm", "--all", "--force", "--time", "0", check=False)
        self.sweep()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- one peer, one K ------------------------------------------------------------------

def measure(peer: Peer) -> dict[str, Any]:
    k = peer.k
    bare = isinstance(peer, PlainPeer)  # processes only: nothing to create, list or destroy
    peer.setup()
    release_empty_slabs()
    before = settled_meminfo()
    res: dict[str, Any] = {"create": None if bare else timed(peer.prepare)}
    res["start"] = timed(peer.start)
    res["list"] = None if bare else timed(peer.list)
    try:
        res["stats"] = None if bare else timed(peer.stats)
    except NotImplementedError:
        res["stats"] = None
    time.sleep(2)  # every init has reached its services
    after = settled_meminfo()  # as the baseline: per-CPU lists drained, frees done
    rss, pss, nproc = peer.payload()
    delta = before["Available"] - after["Available"]
    kernel = sum(after[x] - before[x] for x in ("Slab", "PageTables", "KernelStack"))
    res["mem"] = delta / k / MB
    res["kernel"] = kernel / k / MB
    res["over"] = (delta - pss) / k / MB
    res["beyond"] = None  # filled in once the plain payload of this K is known
    res["pss"] = pss / k / MB
    res["rss"] = rss / k / MB
    res["procs"] = nproc / k
    res["stop"] = timed(peer.stop)
    res["destroy"] = None if bare else timed(peer.destroy)
    peer.post()
    return res


def beyond_plain(results: dict[str, dict[str, Any]]) -> None:
    """Each container peer's memory per container minus the plain payload's."""
    plain = results.get("plain")
    if not plain:
        return
    for name, r in results.items():
        if name != "plain":
            r["beyond"] = r["mem"] - plain["mem"]


COLS = [("create", "create s"), ("start", "start s"), ("list", "list s"),
        ("stats", "stats s"), ("stop", "stop s"), ("destroy", "destroy s"),
        ("mem", "MB/ct"), ("kernel", "kern MB/ct"), ("over", "over MB/ct"),
        ("beyond", "beyond MB/ct"),
        ("pss", "PSS MB/ct"), ("rss", "RSS MB/ct"), ("procs", "procs/ct")]


def table(k: int, results: dict[str, dict[str, Any]], nets: dict[str, str]) -> str:
    w = 13
    lines = [f"\nK = {k}   (times in s; memory in MB per container; ratios = peer / lxc)",
             f"{'peer':<14}" + "".join(f"{h:>{w}}" for _, h in COLS)]
    base = results.get("lxc")
    for name, r in results.items():
        lines.append(f"{name:<14}" + "".join(
            f"{'n/a':>{w}}" if r.get(c) is None else f"{r[c]:>{w}.3f}" if c in ("list", "stats")
            else f"{r[c]:>{w}.2f}" for c, _ in COLS))
        if base and name not in ("lxc", "plain"):
            lines.append(f"{'  / lxc':<14}" + "".join(
                f"{r[c] / base[c]:>{w - 1}.2f}x"
                if r.get(c) is not None and base.get(c) is not None and abs(base[c]) > 1e-9
                and c != "procs" else f"{'-':>{w}}" for c, _ in COLS))
    lines.append("networking: " + ", ".join(f"{n}: {nets[n]}" for n in results))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--counts", default="50,200", help="comma-separated K values")
    ap.add_argument("--peers", default="corral,lxc,crun,runc,podman")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("density.py: run as root", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.counts.split(",")]
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    # The payload as plain processes comes first at every K: "beyond" is measured from it.
    wanted = ["plain", *(p for p in wanted if p != "plain")]
    peers: list[str] = []
    skipped: list[str] = []
    for p in wanted:
        tool = {"plain": "chroot", "corral": CORRAL, "lxc": "lxc-start", "crun": "crun",
                "runc": "runc", "podman": "podman"}.get(p)
        if tool is None:
            skipped.append(f"{p}: unknown peer")
        elif shutil.which(tool) is None:
            skipped.append(f"{p}: not installed")
        else:
            peers.append(p)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    work = Path(tempfile.mkdtemp(prefix="corral-density-"))
    made_bridge = False
    live: list[Peer] = []
    notes: list[str] = list(skipped)
    pivots_before = {h: (h / "lxc.pivot").exists() for h in cgroup_hierarchies()}
    rc = 0
    try:
        run(CORRAL, "--root", str(work / "tmpl"), "template", "build", "tiny")
        rootfs = work / "tmpl" / "templates" / "tiny" / "rootfs"
        net = "empty"
        if any(p in peers for p in ("lxc", "crun", "runc", "podman")):
            if link_exists(BRIDGE):
                raise BenchError(f"{BRIDGE} exists already (another run?): not touching it")
            try:
                run("ip", "link", "add", BRIDGE, "type", "bridge")
                made_bridge = True
                run("ip", "addr", "add", BRIDGE_ADDR, "dev", BRIDGE)
                run("ip", "link", "set", BRIDGE, "up")
                net = "veth"
            except BenchError as exc:
                notes.append(f"bridge {BRIDGE} failed ({exc}); lxc uses lxc.net.0.type = "
                             "empty, crun/runc a bare network namespace")
        nets = {"plain": "none (host processes, chrooted)",
                "corral": "own address on the root's bridge (default)",
                "lxc": f"veth on {BRIDGE}" if net == "veth" else "lxc.net.0.type = empty",
                "crun": f"veth on {BRIDGE}" if net == "veth" else "loopback only",
                "runc": f"veth on {BRIDGE}" if net == "veth" else "loopback only",
                "podman": f"veth on {BRIDGE}" if net == "veth" else "loopback only"}
        print(f"# density: counts {counts}, peers {peers}; parallel start {PAR_START}, "
              f"stop {PAR_STOP} (timeout {STOP_TIMEOUT:.0f} s), destroy {PAR_DESTROY}",
              flush=True)
        for s in skipped:
            print(f"# skipped {s}", flush=True)
        for k in counts:
            results: dict[str, dict[str, Any]] = {}
            for name in peers:
                peer: Peer
                if name == "plain":
                    peer = PlainPeer(work, k, rootfs)
                elif name == "corral":
                    peer = CorralPeer(work, k)
                elif name == "lxc":
                    peer = LxcPeer(work, k, rootfs, net)
                elif name == "podman":
                    peer = PodmanPeer(work, k, rootfs, net)
                else:
                    peer = OciPeer(work, k, name, rootfs, net)
                live.append(peer)
                log(f"K={k} {name}: measuring")
                try:
                    results[name] = measure(peer)
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    notes.append(f"K={k} {name} failed: {exc}")
                    log(f"K={k} {name}: FAILED: {exc}")
                    rc = 1
                # (on Ctrl-C the peer stays in `live`: cleaned up below, signals ignored)
                peer.cleanup()
                live.remove(peer)
                notes.extend(f"K={k} {name}: {n}" for n in peer.notes)
                if name in results:
                    log(f"K={k} {name}: " + ", ".join(
                        f"{c} {v:.2f}" for c, v in results[name].items() if v is not None))
            beyond_plain(results)
            print(table(k, results, nets), flush=True)
            how = {p: (CorralPeer.stats_how if p == "corral" else LxcPeer.stats_how
                       if p == "lxc" else PodmanPeer.stats_how if p == "podman"
                       else "runc events --stats per container"
                       if p == "runc" else "n/a (no stats command)")
                   for p in results if p != "plain"}
            print("stats: " + ", ".join(f"{p}: {h}" for p, h in how.items()), flush=True)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({str(exc) or 'SIGINT'}): cleaning up")
        rc = 130
    except BenchError as exc:
        log(f"density.py: {exc}")
        rc = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C does not cut the cleanup short
        for peer in live:
            peer.cleanup()
            notes.extend(f"{peer.name}: {n}" for n in peer.notes)
        if made_bridge:
            quiet("ip", "link", "del", BRIDGE)
        for h, existed in pivots_before.items():  # made by lxc-stop in this run, if empty
            if not existed and (h / "lxc.pivot").is_dir():
                try:
                    (h / "lxc.pivot").rmdir()
                except OSError:
                    pass
        if (work / "tmpl").exists():
            quiet(CORRAL, "--root", str(work / "tmpl"), "template", "remove", "tiny")
        with open("/proc/self/mountinfo") as f:  # nothing should be mounted there
            for line in f:
                if str(work) in line.split()[4]:
                    notes.append(f"leftover mount {line.split()[4]}")
                    quiet("umount", "-l", line.split()[4])
        shutil.rmtree(work, ignore_errors=True)
        for n in notes:
            print(f"# note: {n}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
