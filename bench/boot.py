#!/usr/bin/env python3
"""Boot time of a Debian 12 system container: Corral vs LXC and systemd-nspawn --boot, in one run.

    sudo .venv/bin/python bench/boot.py [--runs 3] [--settle 3]
        [--contenders corral,corral-priv,lxc,lxc-unpriv,nspawn,nspawn-unpriv]

Every contender boots systemd as PID 1 from the same rootfs content: Corral's
``debian-12`` template (debootstrap, built in a throwaway state root; the
first build on a machine takes ~40 s, then it comes from /var/cache/corral).
Corral boots it through its own overlay; LXC and nspawn get a fresh ``cp -a``
copy of it for every boot (all made before the first boot, then synced, so no
writeback runs during a boot), so nothing writes into the template and every
boot is a first boot of a pristine tree, as a new Corral container's is.  No
contender has a network but loopback.

Contenders, each in both privilege modes (``unpriv``: own user namespace and
65536 host ids; ``priv``: the container's root is the host's root):

* corral / corral-priv: ``create --net none`` (not timed, ``--privileged``
  for corral-priv), then the clock runs over ``corral start`` and ``corral
  exec -- systemctl is-system-running --wait``;
* lxc / lxc-unpriv: a private lxcpath (``-P``), ``lxc.net.0.type = empty``,
  ``lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed``, autodev, 16 ptys,
  no ttys, ``lxc.init.cmd = /sbin/init``, AppArmor unconfined; lxc-unpriv adds
  ``lxc.idmap`` and ``lxc.rootfs.options = idmap=container`` (an idmapped
  mount: the copy is not chowned).  Clock over ``lxc-start -d`` and
  ``lxc-attach -- systemctl is-system-running --wait``;
* nspawn / nspawn-unpriv: ``systemd-nspawn --boot --private-network
  --console=passive --register=no --keep-unit`` in the background, in a
  cgroup this script makes (this host's PID 1 is not systemd, so there is no
  machined or system bus to allocate a scope); nspawn-unpriv adds
  ``--private-users=BASE:65536 --private-users-ownership=map``.  Clock from
  the spawn until ``nsenter -t LEADER -a systemctl is-system-running --wait``
  returns, LEADER being nspawn's child once it has become systemd.

Until systemd has made its bus socket, systemctl fails ("Failed to connect to
bus"); the waiting command is then repeated every 20 ms, so each tool's own
cost of getting a command into the container is part of its boot time.
The host ids of lxc-unpriv and nspawn-unpriv lie above 2^31, outside the
range Corral leases from (1e9 .. 2^31-1).

Once booted, the failed units are read (``systemctl --failed``), and after
``--settle`` seconds the host-side memory of the idle container: RSS and PSS
summed over its processes (/proc/PID/smaps_rollup of every process in its
payload cgroup; PSS splits pages shared with other processes, e.g. the host's
own libraries), and its v1 memory cgroup's usage_in_bytes and anonymous part
(memory.stat total_rss).  For nspawn that cgroup also holds the nspawn
supervisor process (on cgroup v1 it only splits payload/supervisor in the
name=systemd hierarchy); the page cache a cgroup is charged with depends on
who read a file first, so ``cg MB`` is noisier than the anonymous part.  Corral's
template files are hard links into its debootstrap cache, so a Corral
container maps the same pages as every other Corral container of that
template on the machine, and its PSS falls when others run; the copies of LXC
and nspawn are new files, their pages their own (compare RSS for the payload
itself).  Then the container is stopped (clean shutdown, ``stop s``) and
removed.

Rounds alternate between contenders to spread the machine's noise; the table
has medians over ``--runs`` and ratios of boot time to LXC and to nspawn in
the same privilege mode.  A contender that does not boot (its init exits, or
no state within 120 s) is dropped from the later rounds, shown as ``no boot``
with the reason (the tail of its console) in the notes, and the exit status
is 1.  Everything this run made is removed at the end, also
on Ctrl-C / SIGTERM / SIGHUP (only processes it started are killed, by PID).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import CGROUP_ROOT, cgroup_hierarchies, payload, proc_start, rmdir_tree

CORRAL = str(Path(sys.executable).parent / "corral")
TEMPLATE = "debian-12"
TAG = f"{os.getpid() & 0xFFFF:04x}"  # names this run's containers and cgroups
NSPAWN_RUN = Path("/run/systemd/nspawn")
MB = 2**20
BOOT_TIMEOUT = 120.0
STOP_TIMEOUT = 20
POLL = 0.02
# What `is-system-running --wait` ends with once boot is over; before systemd has
# mounted /run it says "offline" (not booted with systemd), and that is retried.
STATES = {"running", "degraded", "maintenance", "stopping"}
ALL = ["corral", "corral-priv", "lxc", "lxc-unpriv", "nspawn", "nspawn-unpriv"]
# Host ids of the unprivileged LXC and nspawn containers: above Corral's range.
_SLOT = os.getpid() % 4096
LXC_IDS = 2**31 + 65536 * (2 * _SLOT)
NSPAWN_IDS = 2**31 + 65536 * (2 * _SLOT + 1)


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(*argv: str, check: bool = True, timeout: float | None = 120) -> str:
    p = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise BenchError(f"{shlex.join(argv)}: exit {p.returncode}: "
                         f"{(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout


def quiet(*argv: str, timeout: float = 60) -> None:
    """Best effort (cleanup): never raises."""
    try:
        subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        pass


def wait_state(argv: list[str], deadline: float,
               gone: Callable[[str], str | None]) -> tuple[str, int]:
    """Run ``argv`` (a systemctl is-system-running --wait inside the container)
    until it prints a state; (state, attempts).  Failures before that (no bus
    yet, container not there yet) are retried every POLL seconds, unless
    ``gone(error text)`` says why the container will never boot."""
    tries = 0
    last = ""
    while True:
        tries += 1
        left = max(1.0, deadline - time.monotonic())
        try:
            p = subprocess.run(argv, check=False, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=left)
            out = p.stdout.strip().splitlines()
            if out and out[-1].strip() in STATES:
                return out[-1].strip(), tries
            last = (p.stderr or p.stdout).strip()[-300:]
            why = gone(last)
            if why:
                raise BenchError(f"did not boot: {why}")
        except subprocess.TimeoutExpired:
            last = "timed out"
        if time.monotonic() >= deadline:
            raise BenchError(f"no boot state after {BOOT_TIMEOUT:.0f} s ({tries} tries): "
                             f"{shlex.join(argv)}: {last}")
        time.sleep(POLL)


def failed_units(argv: list[str]) -> list[str]:
    out = run(*argv, "systemctl", "--failed", "--plain", "--no-legend", check=False)
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


# ---- memory and cgroups ---------------------------------------------------------------

def memcg(rel: str) -> tuple[int | None, int | None]:
    """(usage_in_bytes, total_rss) of a v1 memory cgroup, None where it is not there."""
    d = CGROUP_ROOT / "memory" / rel
    try:
        usage = int((d / "memory.usage_in_bytes").read_text())
    except (OSError, ValueError):
        return None, None
    anon = None
    try:
        for line in (d / "memory.stat").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "total_rss":
                anon = int(v)
    except (OSError, ValueError):
        pass
    return usage, anon


def copy_rootfs(src: Path, dst: Path) -> None:
    run("cp", "-a", "--", str(src), str(dst), timeout=600)


# ---- contenders -----------------------------------------------------------------------

class Contender:
    """One way to boot the rootfs; ``boot`` leaves it running, ``stop`` and
    ``remove`` end it, ``cleanup`` (idempotent, never raises) removes all it made."""

    name = ""
    mode = ""

    def __init__(self, work: Path, rootfs: Path) -> None:
        self.work = work
        self.rootfs = rootfs
        self.notes: list[str] = []
        self.n = 0  # boots so far: names each instance
        self.started = 0.0  # perf_counter() when the start command had returned

    def stage(self, runs: int) -> None: ...  # before all rounds: the copies
    def prepare(self) -> None: ...  # before the clock of each boot
    def boot(self, deadline: float) -> tuple[str, int]: raise NotImplementedError
    def inside(self) -> list[str]: raise NotImplementedError  # argv prefix to run in it
    def marker(self) -> str: raise NotImplementedError
    def memcg(self) -> str: raise NotImplementedError
    def stop(self) -> None: ...
    def remove(self) -> None: ...
    def cleanup(self) -> None: ...


class CorralContender(Contender):
    def __init__(self, work: Path, rootfs: Path, root: Path, privileged: bool) -> None:
        super().__init__(work, rootfs)
        self.name = "corral-priv" if privileged else "corral"
        self.mode = "priv" if privileged else "unpriv"
        self.privileged = privileged
        self.root = root
        self.c = [CORRAL, "--root", str(root)]
        from corral.host import root_id
        self.id = root_id(str(root))
        self.cur = ""

    def prepare(self) -> None:
        self.n += 1
        self.cur = f"{'p' if self.privileged else 'u'}{self.n}"
        run(*self.c, "create", self.cur, "--template", TEMPLATE, "--net", "none",
            *(["--privileged"] if self.privileged else []))

    def boot(self, deadline: float) -> tuple[str, int]:
        run(*self.c, "start", self.cur)
        self.started = time.perf_counter()
        return wait_state([*self.inside(), "systemctl", "is-system-running", "--wait"],
                          deadline, self._gone)

    def _gone(self, err: str) -> str | None:
        if "is stopped" not in err:
            return None
        try:
            con = (self.root / "console" / f"{self.cur}.log").read_text(errors="replace")
        except OSError:
            con = ""
        con = re.sub(r"\x1b\[[0-9;]*m", "", con)
        return f"it stopped; console: {' | '.join(con.strip().splitlines()[-3:])[-300:]}"

    def inside(self) -> list[str]:
        return [*self.c, "exec", self.cur, "--"]

    def marker(self) -> str:
        return f"/corral-{self.id}/{self.cur}/"

    def memcg(self) -> str:
        return f"corral-{self.id}/{self.cur}"

    def stop(self) -> None:
        run(*self.c, "stop", self.cur, "--timeout", str(STOP_TIMEOUT), timeout=STOP_TIMEOUT + 60)

    def remove(self) -> None:
        run(*self.c, "destroy", "--force", self.cur)
        self.cur = ""

    def cleanup(self) -> None:
        if self.cur:
            quiet(*self.c, "destroy", "--force", self.cur)
            self.cur = ""


class LxcContender(Contender):
    def __init__(self, work: Path, rootfs: Path, unprivileged: bool) -> None:
        super().__init__(work, rootfs)
        self.name = "lxc-unpriv" if unprivileged else "lxc"
        self.mode = "unpriv" if unprivileged else "priv"
        self.unpriv = unprivileged
        self.path = work / self.name
        self.cur = ""
        self.made: list[str] = []

    def _p(self) -> list[str]:
        return ["-P", str(self.path), "-n", self.cur]

    def stage(self, runs: int) -> None:
        self.path.mkdir()
        os.chmod(self.path, 0o755)
        for i in range(1, runs + 1):
            name = f"bb{TAG}-{'u' if self.unpriv else 'p'}{i}"
            d = self.path / name
            d.mkdir()
            self.made.append(name)
            os.chmod(d, 0o755)
            copy_rootfs(self.rootfs, d / "rootfs")
            idmap = (f"lxc.idmap = u 0 {LXC_IDS} 65536\nlxc.idmap = g 0 {LXC_IDS} 65536\n"
                     "lxc.rootfs.options = idmap=container\n" if self.unpriv else "")
            (d / "config").write_text(
                f"lxc.uts.name = {name}\n"
                f"lxc.rootfs.path = dir:{d / 'rootfs'}\n"
                f"{idmap}"
                "lxc.init.cmd = /sbin/init\n"
                "lxc.net.0.type = empty\n"
                "lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed\n"
                "lxc.autodev = 1\nlxc.pty.max = 16\nlxc.tty.max = 0\n"
                "lxc.apparmor.profile = unconfined\n"
                f"lxc.log.file = {d / 'lxc.log'}\nlxc.log.level = WARN\n")

    def prepare(self) -> None:
        self.n += 1
        self.cur = f"bb{TAG}-{'u' if self.unpriv else 'p'}{self.n}"

    def boot(self, deadline: float) -> tuple[str, int]:
        run("lxc-start", "-d", *self._p())
        self.started = time.perf_counter()
        return wait_state([*self.inside(), "systemctl", "is-system-running", "--wait"],
                          deadline, self._gone)

    def _gone(self, err: str) -> str | None:
        if "is not running" not in err and "init pid" not in err:
            return None  # (lxc-start -d returns before the init runs)
        state = run("lxc-info", *self._p(), "-s", "-H", check=False).strip()
        if state != "STOPPED":
            return None
        try:
            tail = (self.path / self.cur / "lxc.log").read_text(errors="replace")
        except OSError:
            tail = ""
        return f"it stopped; lxc.log: {' | '.join(tail.strip().splitlines()[-3:])[-300:]}"

    def inside(self) -> list[str]:
        return ["lxc-attach", *self._p(), "--"]

    def marker(self) -> str:
        return f"/lxc.payload.{self.cur}/"

    def memcg(self) -> str:
        return f"lxc.payload.{self.cur}"

    def stop(self) -> None:
        run("lxc-stop", "-t", str(STOP_TIMEOUT), *self._p(), timeout=STOP_TIMEOUT + 60)

    def remove(self) -> None:
        shutil.rmtree(self.path / self.cur)
        self.cur = ""

    def cleanup(self) -> None:
        for name in self.made:
            d = self.path / name
            if d.exists():
                state = run("lxc-info", "-P", str(self.path), "-n", name, "-s", "-H",
                            check=False).strip()
                if state and state != "STOPPED":
                    self.notes.append(f"{name} was {state} at cleanup: lxc-stop -k")
                    quiet("lxc-stop", "-k", "-P", str(self.path), "-n", name)
                shutil.rmtree(d, ignore_errors=True)
            for h in cgroup_hierarchies():  # LXC removes these itself; only ours, by name
                for cg in (h / f"lxc.payload.{name}", h / f"lxc.monitor.{name}"):
                    if cg.exists():
                        self.notes.append(f"leftover cgroup {cg} (removed: {rmdir_tree(cg)})")
        self.made = []
        self.cur = ""
        shutil.rmtree(self.path, ignore_errors=True)


class NspawnContender(Contender):
    def __init__(self, work: Path, rootfs: Path, unprivileged: bool) -> None:
        super().__init__(work, rootfs)
        self.name = "nspawn-unpriv" if unprivileged else "nspawn"
        self.mode = "unpriv" if unprivileged else "priv"
        self.unpriv = unprivileged
        self.dir = work / self.name
        self.cg = f"bootbench-{TAG}-{self.name}"
        self.machine = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: tuple[int, int] | None = None  # (pid, start time)

    def stage(self, runs: int) -> None:
        self.dir.mkdir()
        for i in range(1, runs + 1):
            copy_rootfs(self.rootfs, self.dir / f"bb{TAG}{'u' if self.unpriv else 'p'}{i}")

    def prepare(self) -> None:
        self.n += 1
        self.machine = f"bb{TAG}{'u' if self.unpriv else 'p'}{self.n}"
        for h in cgroup_hierarchies():
            d = h / self.cg
            d.mkdir(exist_ok=True)
            if h.name == "cpuset":  # an empty cpuset takes no tasks: inherit the parent's
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not (d / f).read_text().strip():
                        (d / f).write_text((h / f).read_text())

    def boot(self, deadline: float) -> tuple[str, int]:
        argv = ["systemd-nspawn", "--boot", "-D", str(self.dir / self.machine),
                f"--machine={self.machine}", "--private-network", "--register=no",
                "--keep-unit", "--console=passive"]
        if self.unpriv:
            argv += [f"--private-users={NSPAWN_IDS}:65536", "--private-users-ownership=map"]
        # A shell joins this run's own cgroup in every hierarchy, then becomes nspawn.
        join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; ' \
               'exec "$@"'
        procs = [str(h / self.cg / "cgroup.procs") for h in cgroup_hierarchies()]
        with open(self.dir / f"{self.machine}.log", "wb") as logf:
            self.proc = subprocess.Popen(["sh", "-c", join, "sh", *procs, "--", *argv],
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        while True:  # the leader: nspawn's child once it has exec'd systemd
            if self.proc.poll() is not None:
                raise BenchError(f"systemd-nspawn exited {self.proc.returncode}: {self._tail()}")
            pid = self._find_leader()
            if pid:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"no container init under nspawn: {self._tail()}")
            time.sleep(0.005)
        self.started = time.perf_counter()
        st = proc_start(pid)
        if st is not None:
            self.leader = (pid, st)
        return wait_state([*self.inside(), "systemctl", "is-system-running", "--wait"],
                          deadline, self._gone)

    def _gone(self, _err: str) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is None:
            return None
        return f"systemd-nspawn exited {self.proc.returncode}: {self._tail()}"

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        for k in kids.split():
            try:
                if Path(f"/proc/{k}/comm").read_text().strip() == "systemd":
                    return int(k)
            except OSError:
                continue
        return None

    def _tail(self) -> str:
        try:
            text = (self.dir / f"{self.machine}.log").read_text(errors="replace")
        except OSError:
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return " | ".join(text.strip().splitlines()[-4:])[-400:]

    def inside(self) -> list[str]:
        assert self.leader
        return ["nsenter", "-t", str(self.leader[0]), "-a"]

    def marker(self) -> str:
        return f"/{self.cg}/payload/"

    def memcg(self) -> str:
        return self.cg

    def stop(self) -> None:
        """SIGTERM to nspawn: it powers the container off (SIGRTMIN+4 to its init)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.notes.append(f"{self.machine}: no clean shutdown in {STOP_TIMEOUT} s, killed")
            self._kill()
        if self.proc.returncode not in (0, None):
            self.notes.append(f"{self.machine}: nspawn exited {self.proc.returncode}")

    def _kill(self) -> None:
        """SIGKILL, by PID, to the processes this run started: the nspawn process,
        the container's init (which ends its PID namespace), and what is left in
        this run's own cgroup."""
        if self.leader and proc_start(self.leader[0]) == self.leader[1]:
            try:
                os.kill(self.leader[0], signal.SIGKILL)
            except OSError:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for h in cgroup_hierarchies():
            d = h / self.cg
            if not d.is_dir():
                continue
            for procs in d.rglob("cgroup.procs"):
                try:
                    pids = procs.read_text().split()
                except OSError:
                    continue
                for pid in pids:
                    if int(pid) == os.getpid():
                        continue
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                        self.notes.append(f"killed leftover pid {pid} in {procs.parent}")
                    except OSError:
                        pass

    def remove(self) -> None:
        self.proc = None
        self.leader = None
        shutil.rmtree(self.dir / self.machine)
        (self.dir / f"{self.machine}.log").unlink(missing_ok=True)
        for h in cgroup_hierarchies():  # nspawn's payload/supervisor below ours, per boot
            d = h / self.cg
            if d.is_dir():
                for child in d.iterdir():
                    if child.is_dir():
                        rmdir_tree(child)
        self.machine = ""

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.notes.append(f"{self.machine}: still running at cleanup: SIGTERM, then SIGKILL")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        time.sleep(0.2)
        for h in cgroup_hierarchies():
            d = h / self.cg
            if d.exists() and not rmdir_tree(d):
                self.notes.append(f"could not remove cgroup {d}")
        if self.machine:  # nspawn leaves its propagation directory behind on this host
            prop = NSPAWN_RUN / "propagate" / self.machine
            if prop.is_dir() and not os.path.ismount(prop):
                shutil.rmtree(prop, ignore_errors=True)
        self.proc = None
        self.leader = None
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- one boot -------------------------------------------------------------------------

def one_boot(c: Contender, settle: float) -> dict[str, Any]:
    c.prepare()
    t0 = time.perf_counter()
    state, tries = c.boot(time.monotonic() + BOOT_TIMEOUT)
    boot = time.perf_counter() - t0
    start = c.started - t0
    failed = failed_units(c.inside())
    time.sleep(settle)
    rss, pss, nproc = payload(c.marker())
    usage, anon = memcg(c.memcg())
    stop = time.perf_counter()
    c.stop()
    stop = time.perf_counter() - stop
    c.remove()
    if isinstance(c, NspawnContender):  # the propagation dir of this machine, now unused
        prop = NSPAWN_RUN / "propagate"
        for d in prop.glob(f"bb{TAG}*") if prop.is_dir() else []:
            if d.is_dir() and not os.path.ismount(d):
                shutil.rmtree(d, ignore_errors=True)
    return {"boot": boot, "start": start, "state": state, "tries": tries, "failed": failed, "rss": rss / MB,
            "pss": pss / MB, "procs": nproc, "cg": None if usage is None else usage / MB,
            "cganon": None if anon is None else anon / MB, "stop": stop}


def med(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def table(results: dict[str, list[dict[str, Any]]], modes: dict[str, str],
          broken: set[str]) -> str:
    rows = []
    summary: dict[str, dict[str, Any]] = {}
    for name, rs in results.items():
        if not rs:
            continue
        states = sorted({r["state"] for r in rs})
        failed = sorted({u for r in rs for u in r["failed"]})
        summary[name] = {
            "boot": med([r["boot"] for r in rs]), "min": min(r["boot"] for r in rs),
            "start": med([r["start"] for r in rs]),
            "stop": med([r["stop"] for r in rs]),
            "state": "/".join(states), "failed": ",".join(failed) or "-",
            "rss": med([r["rss"] for r in rs]), "pss": med([r["pss"] for r in rs]),
            "procs": med([r["procs"] for r in rs]), "cg": med([r["cg"] for r in rs]),
            "cganon": med([r["cganon"] for r in rs]), "n": len(rs)}

    def base(kind: str, mode: str) -> float | None:
        name = kind if mode == "priv" else f"{kind}-unpriv"
        if kind == "corral":
            return None
        return summary.get(name, {}).get("boot")

    def f(v: float | None, spec: str, w: int) -> str:
        return f"{'n/a':>{w}}" if v is None else f"{v:>{w}{spec}}"

    hdr = (f"{'contender':<14}{'mode':<7}{'runs':>5}{'boot s':>8}{'min s':>7}{'start s':>8}"
           f"{'stop s':>7}"
           f"  {'state':<10}{'RSS MB':>8}{'PSS MB':>8}{'procs':>6}{'cg MB':>7}{'anon MB':>8}"
           f"{'/ lxc':>8}{'/ nspawn':>9}  failed units")
    rows.append(hdr)
    for name, mode in modes.items():
        if name not in summary:
            rows.append(f"{name:<14}{mode:<7}{0:>5}{'n/a':>8}{'n/a':>7}{'n/a':>8}{'n/a':>7}  "
                        f"{'no boot' if name in broken else 'not run':<10}  (see the notes)")
            continue
        s = summary[name]
        ratios = ""
        for kind, w in (("lxc", 8), ("nspawn", 9)):
            b = base(kind, mode)
            ratios += f"{s['boot'] / b:>{w - 1}.2f}x" if b else f"{'-':>{w}}"
        rows.append(f"{name:<14}{mode:<7}{s['n']:>5}{f(s['boot'], '.2f', 8)}"
                    f"{f(s['min'], '.2f', 7)}{f(s['start'], '.2f', 8)}{f(s['stop'], '.2f', 7)}"
                    f"  {s['state']:<10}"
                    f"{f(s['rss'], '.1f', 8)}{f(s['pss'], '.1f', 8)}{f(s['procs'], '.0f', 6)}"
                    f"{f(s['cg'], '.1f', 7)}{f(s['cganon'], '.1f', 8)}{ratios}  {s['failed']}")
    return "\n".join(rows)


def version(*argv: str) -> str:
    try:
        out = run(*argv, check=False, timeout=30).strip().splitlines()
        return out[0] if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="boots per contender (median)")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between boot and the memory reading")
    ap.add_argument("--contenders", default=",".join(ALL))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("boot.py: run as root", file=sys.stderr)
        return 2
    wanted = [x.strip() for x in args.contenders.split(",") if x.strip()]
    notes: list[str] = []
    chosen: list[str] = []
    for w in wanted:
        tool = {"corral": CORRAL, "corral-priv": CORRAL, "lxc": "lxc-start",
                "lxc-unpriv": "lxc-start", "nspawn": "systemd-nspawn",
                "nspawn-unpriv": "systemd-nspawn"}.get(w)
        if tool is None:
            notes.append(f"{w}: unknown contender (known: {', '.join(ALL)})")
        elif shutil.which(tool) is None:
            notes.append(f"{w}: {tool} not installed")
        else:
            chosen.append(w)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    work = Path(tempfile.mkdtemp(prefix="corral-boot-"))
    os.chmod(work, 0o755)  # unprivileged LXC walks to its rootfs as the container's root
    root = work / "corral"
    c = [CORRAL, "--root", str(root)]
    from corral.host import root_id
    rid = root_id(str(root))
    pivots_before = {h: (h / "lxc.pivot").exists() for h in cgroup_hierarchies()}
    nspawn_run_before = NSPAWN_RUN.exists()
    contenders: list[Contender] = []
    results: dict[str, list[dict[str, Any]]] = {}
    broken: set[str] = set()
    rc = 0
    try:
        log(f"building template {TEMPLATE} (debootstrap the first time on a machine, ~40 s)")
        run(*c, "template", "build", TEMPLATE, timeout=1800)
        rootfs = root / "templates" / TEMPLATE / "rootfs"
        for name in chosen:
            if name.startswith("corral"):
                contenders.append(CorralContender(work, rootfs, root, name == "corral-priv"))
            elif name.startswith("lxc"):
                contenders.append(LxcContender(work, rootfs, name == "lxc-unpriv"))
            else:
                contenders.append(NspawnContender(work, rootfs, name == "nspawn-unpriv"))
        print(f"# boot: Debian 12 ({TEMPLATE} template, {run('du', '-sm', str(rootfs)).split()[0]}"
              f" MB), {args.runs} runs per contender, settle {args.settle:g} s; "
              f"kernel {os.uname().release}", flush=True)
        print(f"# {version(CORRAL, '--version')}; lxc {version('lxc-start', '--version')}; "
              f"{version('systemd-nspawn', '--version')}; corral state root id {rid}, "
              f"LXC/nspawn unprivileged host ids from {LXC_IDS}/{NSPAWN_IDS}", flush=True)
        log(f"copying the rootfs for LXC and nspawn ({args.runs} per contender, cp -a)")
        for ct in contenders:
            ct.stage(args.runs)
        run("sync", "-f", str(work), timeout=600)  # no writeback of the copies during boots
        for i in range(args.runs):
            for ct in contenders:
                if ct.name in broken:
                    continue
                log(f"run {i + 1}/{args.runs} {ct.name}: booting")
                try:
                    r = one_boot(ct, args.settle)
                except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
                    notes.append(f"{ct.name} run {i + 1} failed: {exc}")
                    log(f"run {i + 1} {ct.name}: FAILED: {exc}")
                    broken.add(ct.name)
                    rc = 1
                    ct.cleanup()
                    continue
                results.setdefault(ct.name, []).append(r)
                log(f"run {i + 1} {ct.name}: {r['boot']:.2f} s (start {r['start']:.2f} s), "
                    f"{r['state']} ({r['tries']} "
                    f"tries), failed: {','.join(r['failed']) or '-'}; PSS {r['pss']:.1f} MB, "
                    f"cg {r['cg'] if r['cg'] is None else round(r['cg'], 1)} MB, "
                    f"stop {r['stop']:.2f} s")
        print(table(results, {ct.name: ct.mode for ct in contenders}, broken), flush=True)
        print("boot s: median from the start command to `systemctl is-system-running --wait`"
              " returning inside; start s: until the start command returned (nspawn: until its"
              " child was systemd); ratios: boot s / that of lxc (nspawn) in the same mode;"
              " unpriv = own user namespace, priv = the host's root; memory: medians, host"
              f" side, idle {args.settle:g} s after boot", flush=True)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({str(exc) or 'SIGINT'}): cleaning up")
        rc = 130
    except (BenchError, subprocess.TimeoutExpired) as exc:
        log(f"boot.py: {exc}")
        rc = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C does not cut the cleanup short
        for ct in contenders:
            ct.cleanup()
            notes.extend(f"{ct.name}: {n}" for n in ct.notes)
        if root.exists():
            quiet(*c, "destroy", "--all", "--force")
            quiet(*c, "network", "delete", "default")
            quiet(*c, "template", "remove", TEMPLATE)
        # The root's top cgroups may stay behind, empty: rmdir only, only this root's.
        for h in cgroup_hierarchies():
            cg = h / f"corral-{rid}"
            if cg.exists() and not rmdir_tree(cg):
                notes.append(f"could not remove cgroup {cg} (not empty)")
        br = f"cr{rid}0"
        if os.path.exists(f"/sys/class/net/{br}"):
            notes.append(f"leftover bridge {br}: deleted")
            quiet("ip", "link", "del", br)
        for line in run("nft", "list", "tables", check=False).splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == f"corral_{rid}":
                notes.append(f"leftover nft table {parts[1]} {parts[2]}: deleted")
                quiet("nft", "delete", "table", parts[1], parts[2])
        for h, existed in pivots_before.items():  # made by lxc-stop in this run, if empty
            if not existed and (h / "lxc.pivot").is_dir():
                try:
                    (h / "lxc.pivot").rmdir()
                except OSError:
                    pass
        if not nspawn_run_before and NSPAWN_RUN.is_dir():  # nspawn's, made in this run
            for d in (NSPAWN_RUN / "propagate", NSPAWN_RUN / "locks", NSPAWN_RUN):
                try:
                    d.rmdir()
                except OSError:
                    pass
        with open("/proc/self/mountinfo") as f:  # nothing should be mounted there
            for line in f:
                mp = line.split()[4]
                if mp.startswith(str(work)):
                    notes.append(f"leftover mount {mp}: unmounted")
                    quiet("umount", "-l", mp)
        shutil.rmtree(work, ignore_errors=True)
        for n in notes:
            print(f"# note: {n}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
