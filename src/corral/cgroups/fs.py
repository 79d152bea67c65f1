"""cgroupfs managers for the v2, v1 and hybrid layouts.

One idea serves all three: a container's cgroup exists in a list of
*hierarchies* (one for v2; one per mounted controller set for v1; both for
hybrid).  Each manager differs only in which hierarchies it uses and which
one answers kill / freeze / "populated" questions:

* v2:     one cgroup2 tree; cgroup.kill, cgroup.freeze, cgroup.events.
* v1:     every v1 hierarchy; kill by freezing and signalling every task,
          freeze through the freezer controller, populated from the tasks.
* hybrid: v1 hierarchies for controllers, plus the controller-less cgroup2
          tree (``unified``) that still gives cgroup.kill, cgroup.freeze and
          cgroup.events — so kill and freeze are as good as on v2.

The root is a parameter, so unit tests run the same code against a fake
tree in a temporary directory.
"""

from __future__ import annotations

import errno
import os
# _signal is signal without its IntEnum wrappers: the enum module alone costs
# milliseconds on every exec, and plain numbers serve here.
import _signal as signal
import time

from corral.cgroups.base import CgroupCaps, CgroupManager, CgroupStats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INNER = "payload"
_WAIT = 5.0  # seconds to wait for the kernel to empty or freeze a cgroup


def _read(path: str) -> str:
    # os-level: a third of open()'s cost, which the sysinfo agent pays per call
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: str, value: str) -> None:
    # open(path, "w") at the os level: no buffered text file for one write
    # (a dozen of these per container start).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _keyed(path: str) -> dict[str, str]:
    """A flat keyed file ("populated 1\\nfrozen 0\\n") as a dict."""
    out = {}
    for line in _read(path).splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


class Hierarchy:
    """One mounted cgroup hierarchy: its directory, version and controllers."""

    __slots__ = ("path", "v2", "controllers")

    def __init__(self, path: str, v2: bool, controllers: frozenset[str]) -> None:
        self.path = path
        self.v2 = v2
        self.controllers = controllers

    def __repr__(self) -> str:
        return f"Hierarchy({self.path!r}, v2={self.v2}, {sorted(self.controllers)})"


def v1_hierarchies(root: str) -> list[Hierarchy]:
    """Every v1 hierarchy under ``root``: real directories holding cgroup.procs.

    Co-mounted controllers live in one directory ("cpu,cpuacct") with
    symlinks ("cpu", "cpuacct") beside it; the symlinks are skipped.
    """
    out = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return out
    for e in entries:
        if e.name == "unified" or not e.is_dir(follow_symlinks=False):
            continue
        if not os.path.exists(f"{e.path}/cgroup.procs"):
            continue
        ctrls = frozenset(c for c in e.name.split(",") if c != "systemd")
        out.append(Hierarchy(e.path, False, ctrls))
    return out


class _FsManager(CgroupManager):
    """Shared logic over a list of hierarchies."""

    layout = "?"

    _layout_cache: dict[tuple[type, str], list[Hierarchy]] = {}

    def __init__(self, root: str, group: str) -> None:
        super().__init__(root, group)
        # The mounted hierarchies are the same for every container: found once.
        key = (type(self), root)
        if key not in self._layout_cache:
            self._layout_cache[key] = self._hierarchies()
        self.hierarchies = self._layout_cache[key]
        self.v2 = next((h for h in self.hierarchies if h.v2), None)
        ctrls: set[str] = set()
        for h in self.hierarchies:
            ctrls |= h.controllers
        self._v2_kill = self.v2 is not None and _v2_feature(self.v2.path, "cgroup.kill")
        self._v2_freeze = self.v2 is not None and _v2_feature(self.v2.path, "cgroup.freeze")

        self.caps = CgroupCaps(
            kill=self._v2_kill,
            freeze=self._v2_freeze or "freezer" in ctrls,
            events=self.v2 is not None,
            controllers=frozenset(ctrls),
        )

    def _hierarchies(self) -> list[Hierarchy]:
        raise NotImplementedError

    # -- paths -----------------------------------------------------------------------

    def outer(self, h: Hierarchy) -> str:
        return f"{h.path}/{self.group}"

    def inner(self, h: Hierarchy, v1_inner: bool | None = None) -> str:
        """Where the processes are: the payload cgroup, or in a v1 hierarchy
        made without one (see ``base``), the outer cgroup itself.  Which one,
        the caller says (before the cgroups are made) or the tree shows."""
        nested = f"{h.path}/{self.group}/{INNER}"
        if v1_inner is None:
            v1_inner = os.path.isdir(nested)
        return nested if h.v2 or v1_inner else f"{h.path}/{self.group}"

    def _inner_file(self, h: Hierarchy, fname: str) -> str | None:
        """``fname`` of the cgroup holding the processes, where that is not the
        outer one (whose file the caller writes anyway) and has the file."""
        inner = self.inner(h)
        if inner == self.outer(h) or not os.path.exists(f"{inner}/{fname}"):
            return None
        return f"{inner}/{fname}"

    def _controller(self, name: str) -> Hierarchy | None:
        for h in self.hierarchies:
            if name in h.controllers:
                return h
        return None

    def _primary(self) -> Hierarchy:
        """The hierarchy whose cgroup.procs answers "which processes are in it"."""
        return self.v2 or self._controller("pids") or self._controller("freezer") \
            or self.hierarchies[0]

    # -- life cycle ------------------------------------------------------------------

    def create(self, *, restrict_devices: bool = True, v1_inner: bool = True) -> None:
        for attempt in range(3):
            try:
                self._create(restrict_devices, v1_inner)
                return
            except FileNotFoundError:
                # The shared top directory went away under us: ``doctor --fix``
                # tidied an idle root at the same moment (Host.tidy_idle).  Again.
                if attempt == 2:
                    raise

    def _create(self, restrict_devices: bool = True, v1_inner: bool = True) -> None:
        top = self.group.split("/")[0]
        inner = f"{self.group}/{INNER}"
        v1_devices = any("devices" in h.controllers and not h.v2 for h in self.hierarchies)
        for h in self.hierarchies:
            cpuset = "cpuset" in h.controllers
            for rel in (top, self.group, inner) if h.v2 or v1_inner else (top, self.group):
                path = f"{h.path}/{rel}"
                try:
                    os.mkdir(path, 0o755)
                    made = True
                except FileExistsError:
                    made = False
                if cpuset and (made or rel != top):
                    _cpuset_ready(path, top=rel == top)
                if h.v2 and rel != inner:
                    _enable_controllers(path)
                if rel == self.group and restrict_devices:
                    _restrict_devices(h, path, v1_devices)

    def procs_files(self, *, v1_inner: bool | None = None) -> list[str]:
        return [f"{self.inner(h, v1_inner)}/cgroup.procs" for h in self.hierarchies]

    def exists(self) -> bool:
        return any(os.path.isdir(self.outer(h)) for h in self.hierarchies)

    def pids(self) -> list[int]:
        out: list[int] = []
        for dirpath, _dirs, files in os.walk(self.outer(self._primary())):
            if "cgroup.procs" in files:
                try:
                    out.extend(int(p) for p in _read(f"{dirpath}/cgroup.procs").split())
                except FileNotFoundError:  # removed while we walked
                    continue
        return out

    def init_pid(self) -> int | None:
        """The container's init: its process that is PID 1 in its own PID namespace."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            if line.split()[-1] == "1":
                                return pid
                            break
            except (FileNotFoundError, ProcessLookupError):
                continue
        return None

    def populated(self) -> bool:
        if self.v2 is not None:
            try:
                return _keyed(f"{self.outer(self.v2)}/cgroup.events").get("populated") == "1"
            except FileNotFoundError:
                return False
        return bool(self.pids())

    def kill(self) -> None:
        if self._v2_kill and self.v2 is not None:
            try:
                _write(f"{self.outer(self.v2)}/cgroup.kill", "1")
            except FileNotFoundError:
                pass
            return
        # No cgroup.kill: freeze so nothing forks while we signal, then kill every task.
        frozen = self.caps.freeze
        if frozen:
            self.freeze()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if frozen:
            self.thaw()  # SIGKILL is delivered on thaw

    def _freezer(self) -> tuple[str, str, str]:
        """(state file, freeze value, thaw value) of the best freezer available."""
        if self._v2_freeze and self.v2 is not None:
            return f"{self.outer(self.v2)}/cgroup.freeze", "1", "0"
        h = self._controller("freezer")
        if h is None:
            from corral.errors import UnsupportedError

            raise UnsupportedError("this host has no cgroup freezer",
                                   hint="Mount the v1 freezer controller or use cgroup v2.")
        return f"{self.outer(h)}/freezer.state", "FROZEN", "THAWED"

    def freeze(self) -> None:
        path, on, _ = self._freezer()
        _write(path, on)
        deadline = time.monotonic() + _WAIT
        while not self.frozen() and time.monotonic() < deadline:
            time.sleep(0.002)

    def thaw(self) -> None:
        path, _, off = self._freezer()
        _write(path, off)

    def frozen(self) -> bool:
        if self._v2_freeze and self.v2 is not None:
            try:
                return _keyed(f"{self.outer(self.v2)}/cgroup.events").get("frozen") == "1"
            except FileNotFoundError:
                return False
        h = self._controller("freezer")
        if h is None:
            return False
        try:
            return _read(f"{self.outer(h)}/freezer.state").strip() == "FROZEN"
        except FileNotFoundError:
            return False

    # -- limits ----------------------------------------------------------------------

    def apply(self, limits: dict[str, Any]) -> None:
        from corral.cgroups import resources

        mem = self._controller("memory")
        if mem is not None and mem.v2 or (mem is None and self.v2 is not None
                                             and not any(not h.v2 for h in self.hierarchies)):
            writes = resources.v2_writes(limits)
        else:
            has_memsw = mem is not None and os.path.exists(
                f"{mem.path}/memory.memsw.limit_in_bytes")
            writes = resources.v1_writes(limits, has_memsw=has_memsw)
        for ctrl, fname, value in writes:
            h = self._controller(ctrl)
            if h is None:
                from corral.errors import UnsupportedError

                raise UnsupportedError(f"the {ctrl} cgroup controller is not available",
                                       hint=f"Enable the {ctrl} controller on this host.")
            if fname == "cpuset.cpus" and not h.v2:
                self._set_v1_cpuset(h, value)
            elif fname in ("cpu.cfs_quota_us", "cpu.max"):
                self._set_cpu_quota(h, fname, value)
            elif fname.startswith("blkio.throttle.") and not h.v2:
                # v1 I/O throttling is not hierarchical (the kernel's blkio
                # documentation: only with the v2 semantics): the limit must sit
                # on the cgroup that holds the processes as well.
                _write(f"{self.outer(h)}/{fname}", value)
                inner = self._inner_file(h, fname)
                if inner is not None:
                    _write(inner, value)
            else:
                _write(f"{self.outer(h)}/{fname}", value)

    def _set_cpu_quota(self, h: Hierarchy, fname: str, value: str) -> None:
        """The quota on the outer cgroup, mirrored on the inner one so that views
        computed from the processes' own cgroup (lxcfs' cpuinfo, nproc-like
        tools reading the quota) see it.  A child's quota may not exceed its
        parent's, so the inner one is lifted first and set last."""
        unlimited = "max 100000" if fname == "cpu.max" else "-1"
        inner = self._inner_file(h, fname)
        if inner is None:
            _write(f"{self.outer(h)}/{fname}", value)  # the processes' own cgroup
            return
        _write(inner, unlimited)
        _write(f"{self.outer(h)}/{fname}", value)
        _write(inner, value)

    def _set_v1_cpuset(self, h: Hierarchy, cpus: str) -> None:
        """v1 cpusets are not inherited: the inner cgroup, where the processes are,
        needs the set too, and a child's set must stay within its parent's, so
        shrinking goes inner-first and growing outer-first."""
        outer, inner = f"{self.outer(h)}/cpuset.cpus", self._inner_file(h, "cpuset.cpus")
        if inner is None:
            _write(outer, cpus)  # the processes' own cgroup
            return
        # Widen the outer set to everything its parent allows first, so that
        # any new inner set fits under it, then narrow it to the new set.
        _write(outer, _read(f"{os.path.dirname(self.outer(h))}/cpuset.cpus").strip())
        _write(inner, cpus)
        _write(outer, cpus)

    # -- accounting ------------------------------------------------------------------

    def _file(self, ctrl: str, v2_name: str, v1_name: str) -> str | None:
        h = self._controller(ctrl)
        if h is None:
            return None
        return f"{self.outer(h)}/{v2_name if h.v2 else v1_name}"

    def _int(self, ctrl: str, v2_name: str, v1_name: str, unlimited_at: int = 1 << 60,
             missing: int = 0) -> int:
        """An integer file; "max" and v1's huge "unlimited" numbers read as -1;
        ``missing`` if there is no such controller or file."""
        path = self._file(ctrl, v2_name, v1_name)
        if path is None:
            return missing
        try:
            raw = _read(path).strip()
        except (FileNotFoundError, OSError):
            return missing
        if raw == "max":
            return -1
        try:
            value = int(raw)
        except ValueError:
            return 0
        return -1 if value >= unlimited_at else value

    def _events(self, ctrl: str, v2_name: str, v1_name: str) -> dict[str, str]:
        path = self._file(ctrl, v2_name, v1_name)
        try:
            return _keyed(path) if path else {}
        except OSError:
            return {}

    def _event_total(self, ctrl: str, v2_name: str, v1_name: str, key: str) -> int:
        """An event counter for the whole container.  v2 files count the subtree
        already; v1 counts where the event happened (the OOM victim's cgroup,
        the forking cgroup), so add up every cgroup of the container."""
        h = self._controller(ctrl)
        if h is None:
            return 0
        if h.v2:
            return int(self._events(ctrl, v2_name, v1_name).get(key, 0))
        total = 0
        for dirpath, _dirs, files in os.walk(self.outer(h)):
            if v1_name in files:
                try:
                    total += int(_keyed(f"{dirpath}/{v1_name}").get(key, 0))
                except (OSError, ValueError):
                    pass
        return total

    def usage(self) -> tuple[int, int]:
        """(processes, memory bytes): the two numbers a listing shows, in two reads."""
        return self.tasks(), self._int("memory", "memory.current", "memory.usage_in_bytes")

    def tasks(self) -> int:
        return self._int("pids", "pids.current", "pids.current") if self._controller("pids") \
            else len(self.pids())

    def memory(self) -> tuple[int, int, int, int]:
        mem = self._controller("memory")
        usage = self._int("memory", "memory.current", "memory.usage_in_bytes")
        limit = self._int("memory", "memory.max", "memory.limit_in_bytes", missing=-1)
        if mem is None:
            return usage, limit, 0, -1
        if mem.v2:  # no memory.swap.max: swap not accounted
            return (usage, limit, self._int("memory", "memory.swap.current", ""),
                    self._int("memory", "memory.swap.max", "", missing=-1))
        # no memsw files: swap not accounted (swapaccount=0)
        memsw_limit = self._int("memory", "", "memory.memsw.limit_in_bytes", missing=-1)
        if -1 in (memsw_limit, limit):
            return usage, limit, 0, -1
        memsw = self._int("memory", "", "memory.memsw.usage_in_bytes")
        return usage, limit, max(0, memsw - usage), max(0, memsw_limit - limit)

    def stats(self) -> CgroupStats:
        mem = self._controller("memory")
        memory = self._int("memory", "memory.current", "memory.usage_in_bytes")
        if mem is not None and mem.v2:
            swap = self._int("memory", "memory.swap.current", "")
            swap_limit = self._int("memory", "memory.swap.max", "")
            events = self._events("memory", "memory.events", "")
            oom_kills, mem_fail = int(events.get("oom_kill", 0)), int(events.get("max", 0))
        else:
            memsw = self._int("memory", "", "memory.memsw.usage_in_bytes")
            swap = max(0, memsw - memory) if memsw > 0 else 0
            memsw_limit = self._int("memory", "", "memory.memsw.limit_in_bytes")
            mem_limit = self._int("memory", "", "memory.limit_in_bytes")
            swap_limit = -1 if -1 in (memsw_limit, mem_limit) else memsw_limit - mem_limit
            oom_kills = self._event_total("memory", "", "memory.oom_control", "oom_kill")
            # the memory+swap limit is the one hit first when swap is limited too
            mem_fail = max(0, self._int("memory", "", "memory.failcnt")) + max(
                0, self._int("memory", "", "memory.memsw.failcnt"))
        read, written = self._io_bytes()
        return CgroupStats(
            pids=len(self.pids()),
            pids_limit=self._int("pids", "pids.max", "pids.max"),
            memory_bytes=memory,
            memory_limit_bytes=self._int("memory", "memory.max", "memory.limit_in_bytes"),
            swap_bytes=swap,
            swap_limit_bytes=swap_limit,
            cpu_usage_ns=self._cpu_ns(),
            io_read_bytes=read,
            io_write_bytes=written,
            oom_kills=oom_kills,
            memory_failcnt=mem_fail,
            pids_failcnt=self._event_total("pids", "pids.events", "pids.events", "max"),
        )

    def _io_bytes(self) -> tuple[int, int]:
        h = self._controller("io") or self._controller("blkio")
        if h is None:
            return 0, 0
        read = written = 0
        try:
            if h.v2:
                for line in _read(f"{self.outer(h)}/io.stat").splitlines():
                    for field in line.split()[1:]:
                        k, _, v = field.partition("=")
                        if k == "rbytes":
                            read += int(v)
                        elif k == "wbytes":
                            written += int(v)
            else:
                for line in _read(f"{self.outer(h)}/blkio.throttle.io_service_bytes_recursive"
                                  ).splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        read += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        written += int(parts[2])
        except (OSError, ValueError):
            pass
        return read, written

    def _cpu_ns(self) -> int:
        h = self._controller("cpu")
        if h is not None and h.v2:
            try:
                return int(_keyed(f"{self.outer(h)}/cpu.stat").get("usage_usec", 0)) * 1000
            except FileNotFoundError:
                return 0
        h = self._controller("cpuacct")
        if h is None:
            return 0
        try:
            return int(_read(f"{self.outer(h)}/cpuacct.usage"))
        except (FileNotFoundError, ValueError):
            return 0

    def destroy(self, *, uncharge: bool = True) -> None:
        if not self.exists():
            return
        deadline = time.monotonic() + _WAIT
        while self.populated():
            self.kill()
            if time.monotonic() > deadline:
                raise OSError(errno.EBUSY, f"cgroup {self.group} still has processes "
                              f"after {_WAIT:.0f} s: {self.pids()[:10]}")
            time.sleep(0.005)
        for h in self.hierarchies:
            _rmtree_cgroup(self.outer(h), deadline,
                           memory=uncharge and "memory" in h.controllers)


def _rmtree_cgroup(path: str, deadline: float, *, memory: bool = True) -> None:
    """rmdir a cgroup and every descendant, deepest first (a systemd inside makes some)."""
    if memory and os.path.isdir(path):
        _release_memory(path)  # hierarchical: the whole subtree's charges at once
    # The usual tree, outer and payload, without listing the directories (each
    # listing of a cgroup directory builds entries for its 20-60 files).
    try:
        for d in (f"{path}/{INNER}", path):
            try:
                _rmdir_cgroup(d, deadline)
            except FileNotFoundError:
                pass  # a start that crashed before making it; or gone already
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY:  # EBUSY: child cgroups of its own
            raise
    dirs = [dp for dp, _d, _f in os.walk(path)]
    for d in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        try:
            _rmdir_cgroup(d, deadline)
        except FileNotFoundError:
            pass


def _rmdir_cgroup(path: str, deadline: float) -> None:
    """rmdir one cgroup; EBUSY while its last task is still exiting: give it a moment."""
    while True:
        try:
            os.rmdir(path)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline or \
                    _has_child_cgroup(path):
                raise
            time.sleep(0.002)


def _has_child_cgroup(path: str) -> bool:
    with os.scandir(path) as it:
        return any(e.is_dir(follow_symlinks=False) for e in it)


def _release_memory(path: str) -> None:
    """Uncharge what an empty memory cgroup still holds before it is removed.

    A removed memory cgroup whose pages (mostly page cache the container read
    or wrote) are still charged to it is not freed: it lingers, "dying", with
    its per-CPU statistics and tables (~200 KB each here) until memory
    pressure reclaims those pages -- on a roomy host, never.  Every restart
    would leave two.  v1's memory.force_empty and v2's memory.reclaim drop
    them now (clean page cache only: it is read back, charged to whoever
    reads it next).  Both reclaim the whole subtree, so the container's outer
    cgroup is done once (~2.5 ms of kernel time a container; measured: 100
    stops added 200 dying memory cgroups without it; with it the count did not rise).
    """
    for name, value in (("memory.force_empty", b"0"), ("memory.reclaim", b"1T")):
        try:
            fd = os.open(f"{path}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.write(fd, value)
        except OSError:
            pass  # EAGAIN: not all reclaimable (v2), EBUSY: tasks left; rmdir decides
        finally:
            os.close(fd)
        return


_features: dict[tuple[str, str], bool] = {}


def _v2_feature(tree: str, name: str) -> bool:
    key = (tree, name)
    if key not in _features:
        _features[key] = _probe_v2_feature(tree, name)
    return _features[key]


def _probe_v2_feature(tree: str, name: str) -> bool:
    """Whether non-root cgroups of a cgroup2 tree have the interface file ``name``.

    The root cgroup never has cgroup.kill or cgroup.freeze, so look in a
    child directory; with none (a controller-less hybrid tree nobody uses),
    go by the kernel version that introduced the file.
    """
    try:
        with os.scandir(tree) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    return os.path.exists(f"{e.path}/{name}")
    except FileNotFoundError:
        return False
    since = {"cgroup.kill": (5, 14), "cgroup.freeze": (5, 2)}[name]
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= since


CGROUP2_SUPER_MAGIC = 0x63677270


def _restrict_devices(h: Hierarchy, path: str, v1_devices: bool) -> None:
    """The container's device allow-list (linux/devices.py) on its outer cgroup.

    v1 (and a hybrid host, as LXC does there): the devices controller's files;
    pure v2: an eBPF device program.  On a hybrid host the v1 list is enough:
    the container's processes live in that cgroup or below it, and a cgroup
    can never allow more than its parent, so a second program on the unified
    tree would only cost each start a verifier run (~0.5 ms) and the host a
    JIT'd program per container.  A tree that is not a real cgroup filesystem
    (the unit tests' fake one) has neither.
    """
    from corral.linux import devices

    if "devices" in h.controllers and os.path.exists(f"{path}/devices.deny"):
        _write(f"{path}/devices.deny", "a")
        # One rule per write(2), all through one open file.
        fd = os.open(f"{path}/devices.allow", os.O_WRONLY | os.O_CLOEXEC)
        try:
            for rule in devices.v1_rules():
                os.write(fd, rule.encode())
        finally:
            os.close(fd)
    elif h.v2 and not v1_devices:
        from corral.linux import fs

        if fs.statfs_type(path) == CGROUP2_SUPER_MAGIC:
            devices.attach_v2(path)


def _inherit_cpuset(path: str) -> None:
    """v1 cpuset: a new cgroup has empty cpus/mems and refuses tasks until they are set."""
    parent = os.path.dirname(path)
    for f in ("cpuset.cpus", "cpuset.mems"):
        mine = f"{path}/{f}"
        try:
            if not _read(mine).strip():
                _write(mine, _read(f"{parent}/{f}").strip() or "\n")
        except FileNotFoundError:
            pass


def _cpuset_ready(path: str, *, top: bool) -> None:
    """v1 cpuset: cpus and mems for a cgroup just made (or the container's own,
    which a crashed start may have left).

    The state root's top cgroup copies them from the host's and sets
    cgroup.clone_children, which new cgroups inherit along with the flag
    (as LXC does): every container cgroup below, and what a systemd inside
    makes, is then born with them, without a read and a write of each file
    at each level.  One read checks it; a top made by a concurrent start that
    has not set the flag yet, or an older version's, falls back to copying.
    """
    if top:
        _inherit_cpuset(path)
        try:
            _write(f"{path}/cgroup.clone_children", "1")
        except FileNotFoundError:
            pass
        return
    try:
        if _read(f"{path}/cpuset.cpus").strip():
            return
    except FileNotFoundError:
        return
    _inherit_cpuset(os.path.dirname(path))  # the parent first: it may be empty too
    _inherit_cpuset(path)


WANTED = ("cpuset", "cpu", "io", "memory", "pids")


def _enable_controllers(path: str) -> None:
    """v2: hand the controllers this cgroup has down to its children."""
    try:
        have = _read(f"{path}/cgroup.controllers").split()
    except FileNotFoundError:
        return
    want = [f"+{c}" for c in WANTED if c in have]
    if want:
        _write(f"{path}/cgroup.subtree_control", " ".join(want))


class V2Manager(_FsManager):
    layout = "v2"

    def _hierarchies(self) -> list[Hierarchy]:
        try:
            ctrls = frozenset(_read(f"{self.root}/cgroup.controllers").split())
        except FileNotFoundError:
            ctrls = frozenset()
        return [Hierarchy(self.root, True, ctrls)]


class V1Manager(_FsManager):
    layout = "v1"

    def _hierarchies(self) -> list[Hierarchy]:
        return v1_hierarchies(self.root)


class HybridManager(_FsManager):
    layout = "hybrid"

    def _hierarchies(self) -> list[Hierarchy]:
        unified = f"{self.root}/unified"
        try:
            ctrls = frozenset(_read(f"{unified}/cgroup.controllers").split())
        except FileNotFoundError:
            ctrls = frozenset()
        # Controllers bound to v1 cannot also be in the unified tree; any that are
        # there (none on this kind of host) are used from v1.
        v1 = v1_hierarchies(self.root)
        taken = set().union(*(h.controllers for h in v1)) if v1 else set()
        return [*v1, Hierarchy(unified, True, ctrls - taken)]
