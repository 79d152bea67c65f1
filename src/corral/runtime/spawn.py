"""Start a container's init: clone it into its cgroups and namespaces, pivot, exec.

Processes and the handshake between them (numbers match the comments)::

    caller (corral CLI, single-threaded): #0 makes the cgroups, opens the
      │  container's layers as detached mount trees (user namespace)
      └─ clone3 ─ init, born in the cgroup2 directory and new PID (PID 1
                  there), user and network namespaces: #1 joins the v1
                  cgroups, unshares the other namespaces
         caller #1b writes the init's id maps and idmaps the template layers
                  through its user namespace, says "mapped"
                  init #2 becomes root there, attaches the layers, mounts the
                  root and pivots, reports "ready", #4 waits for "go"
                  (carrying files to write, e.g. /etc/hosts), #5 drops
                  privileges and execs

On x86-64 the init runs no Python: ``runtime.initprog`` writes #1-#5 down
as a system-call program, which a child cloned with CLONE_VM runs
(``linux.sysprog``); its handshake is the same with one-byte messages and
fixed-size records, and the program is written part by part while the
init runs the part before.  The Python init below
serves consoles, disk images, nested seccomp and other machines.

The init is the caller's own child: there is no process in between, and
none of ours stays per container (when the caller exits the init is
reparented to the host's init; a caller that lives on, as a daemon would,
must reap the inits that end before it does).  A container with a disk image, or a kernel
whose clone3 cannot do the above, takes the older way (``_spawn_forked``):
an intermediate process that mounts the image as host root in a private
mount namespace, joins the cgroups, unshares, forks the init and exits.
The caller wires what needs the init's PID (network) while the init builds
its root, and lets it go once it is ready.  Messages are ``marshal``-encoded
(built in, no import cost) and length-prefixed.  The report pipe is
close-on-exec, so the caller sees EOF exactly when the init has exec'd, or
an error message if anything failed.
"""

from __future__ import annotations

# _signal is signal without its IntEnum wrappers: the enum module alone costs
# milliseconds on every exec, and plain numbers serve here.
import _signal as signal
import _struct as struct  # struct.py is only `from _struct import *`
import marshal
import os

from corral.errors import KernelError

# What the init uses is imported here, by the caller, not in the init: there
# every page an import touches would be copied first (copy-on-write after the
# clone), ~0.3 ms of each start.
from corral.linux import caps, ns, sysprog
from corral.linux import filter as seccomp
from corral.linux import mount as m
from corral.runtime import initprog, lxcfs, rootfs
from corral.runtime.spec import DEFAULT_PATH, InitSpec, RootfsSpec, close_fds_except, execvpe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from corral.runtime.cgjoin import CgroupJoin
    from corral.runtime.rootfs import StagedLayers

_LEN = struct.Struct("<I")


def send(fd: int, obj: object) -> None:
    data = marshal.dumps(obj)
    os.write(fd, _LEN.pack(len(data)) + data)


def recv(fd: int) -> object | None:
    """One message, or None at EOF."""
    head = sysprog.read_exact(fd, _LEN.size)
    if head is None:
        return None
    body = sysprog.read_exact(fd, _LEN.unpack(head)[0])
    return None if body is None else marshal.loads(body)


def _fail(report_w: int, where: str, exc: BaseException) -> None:
    try:
        text = f"{where}: {exc}" if where else str(exc)
        send(report_w, ("error", text, getattr(exc, "errno", None),
                        getattr(exc, "hint", None)))
    finally:
        os._exit(127)


NAMESPACES = (ns.CLONE_NEWNS | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC | ns.CLONE_NEWPID
              | ns.CLONE_NEWCGROUP)


class Spawned:
    """An init that exists in its namespaces and waits for ``release``."""

    __slots__ = ("go_fd", "name", "pid", "report_fd")

    def __init__(self, *, pid: int, report_fd: int, go_fd: int, name: str) -> None:
        self.pid = pid
        self.report_fd = report_fd
        self.go_fd = go_fd
        self.name = name

    def release(self, files: dict[str, tuple[bytes, int]] | None = None) -> None:
        """#4: let the init write ``files`` (path → (content, mode)) and exec.

        Files known before the start (``InitSpec.files``) are written already;
        these are what depends on the caller's work since, such as addresses."""
        try:
            send(self.go_fd, ("go", files or {}))
        except BrokenPipeError:
            pass  # the init died: its error message is on the report pipe
        os.close(self.go_fd)
        try:
            msg = recv(self.report_fd)
        finally:
            os.close(self.report_fd)
        if msg is not None:
            _raise_report(self.name, msg)

    def abort(self) -> None:
        for fd in (self.go_fd, self.report_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)  # our child (cloned directly): no zombie left
        except ChildProcessError:
            pass  # the forked path's init is the host init's child


def _raise_report(name: str, msg: object) -> None:
    if isinstance(msg, tuple) and msg and msg[0] == "error":
        raise KernelError(f"cannot start container '{name}': {msg[1]}", errno=msg[2],
                          hint=msg[3] if len(msg) > 3 else None)
    raise KernelError(f"cannot start container '{name}': unexpected message {msg!r}")


class _ProgramSpawned(Spawned):
    """An init running a system-call program (``runtime.initprog``), waiting for "go"."""

    __slots__ = ("child", "init")

    def __init__(self, *, init: initprog.Init, child: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.init = init
        self.child = child  # its program, stack and clone arguments: alive until it execs

    def release(self, files: dict[str, tuple[bytes, int]] | None = None) -> None:
        try:
            if files:
                self.init.late(files)  # the init waits for "go" before these ops
            os.write(self.go_fd, b"g")
        except BrokenPipeError:
            pass  # the init died: its record is on the report pipe
        os.close(self.go_fd)
        try:
            record = sysprog.read_record(self.report_fd)
        finally:
            os.close(self.report_fd)
        if record is not None:
            _raise_record(self.name, self.init, record, "")


def _raise_record(name: str, init: initprog.Init, record: tuple[int, int] | None,
                  otherwise: str) -> None:
    """The error a program's failure record stands for (``otherwise``: at EOF)."""
    if record is None:
        raise KernelError(f"cannot start container '{name}': {otherwise}")
    index, err = record
    what = init.program.what[index] if index < len(init.program.what) else f"step {index}"
    reason = os.strerror(err) if err else "end of file"
    raise KernelError(f"cannot start container '{name}': {what}: {reason}", errno=err or None)


def _sysinfo_alive(spec: InitSpec) -> bool:
    if spec.sysinfo_socket < 0 or not spec.seccomp:
        return False
    from corral.runtime import sysinfo_client

    return sysinfo_client.alive(spec.sysinfo_socket)


def spawn(spec: InitSpec, console: str | None = None,
          meanwhile: Callable[[int], object] | None = None,
          prepare: Callable[[], object] | None = None) -> Spawned:
    """#1–#3: create the init in new namespaces; it waits for ``Spawned.release``.

    ``prepare`` creates the container's cgroups (#0).  Normally it runs here
    and the init is born in them (see ``runtime.cgjoin``); ``meanwhile`` runs
    in the caller, given the init's host PID, while the init sets up its
    namespaces.  A container with a disk image must mount it before joining
    its cgroups (their device allow-list has no block devices): then
    ``prepare`` runs in the intermediate process, which joins later.
    An error in the children is reported on the pipe and raised here.
    ``spec.sysinfo_socket`` is closed here: the init has its own copy.
    """
    try:
        return _spawn(spec, console, meanwhile, prepare)
    finally:  # only the caller returns: the children end in _exit
        if spec.sysinfo_socket >= 0:
            os.close(spec.sysinfo_socket)


def _spawn(spec: InitSpec, console: str | None, meanwhile: Callable[[int], object] | None,
           prepare: Callable[[], object] | None) -> Spawned:
    rootfs.make_host_dirs()
    if spec.rootfs.disk is None:
        if prepare is not None:
            prepare()  # #0
        spawned = _spawn_direct(spec, console, meanwhile)
        if spawned is not None:
            return spawned
        prepare = None  # clone3 cannot: the cgroups are made already
    return _spawn_forked(spec, console, meanwhile, prepare)


def _pipes(spec: InitSpec) -> tuple[int, int, int, int, int]:
    """report_r, report_w, go_r, go_w, and the console log's fd (or -1)."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        if spec.console_log is None:
            return report_r, report_w, go_r, go_w, -1
        return report_r, report_w, go_r, go_w, os.open(
            spec.console_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except BaseException:
        _close(report_r, report_w, go_r, go_w)
        raise


def _close(*fds: int) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def _spawn_direct(spec: InitSpec, console: str | None,
                  meanwhile: Callable[[int], object] | None) -> Spawned | None:
    """#1-#2 with the init as the caller's child; None where clone3 cannot."""
    from corral.runtime.cgjoin import CgroupJoin

    staged = None
    native = initprog.supported(spec)
    if spec.userns:
        if not native:
            _delegate_cgroups(spec)
        staged = rootfs.open_layers(spec.rootfs, spec.userns[0], spec.userns[2])
    join = None
    try:
        join = CgroupJoin(spec.cgroup_procs)
        report_r, report_w, go_r, go_w, log_fd = _pipes(spec)
        # The network namespace is made here, not by the init: it exists when
        # the caller's ``meanwhile`` wires it, while the init builds its root
        # (and its kernel objects are charged as they always were, not to the
        # init's memory cgroup, which it joins first).
        flags = (ns.CLONE_NEWPID | (ns.CLONE_NEWUSER if spec.userns else 0)
                 | (ns.CLONE_NEWNET if spec.netns else 0))
        program = None
        try:
            if native:
                # The init's setup as a system-call program (runtime.initprog):
                # a child sharing our memory until its exec, no Python in it.
                # It starts at once and joins its cgroups and namespaces
                # while the rest of its program is written here.
                program = initprog.Init(spec, report_w, go_r, join, (report_r, go_w))
                child: Any = sysprog.start(program.program, report_w, flags, join.v2_dir)
                pid = child.pid
            else:
                pid = join.clone(flags)
        except OSError as exc:
            _close(report_r, report_w, go_r, go_w, log_fd)
            if exc.errno in ns.CLONE3_UNSUPPORTED:
                return None
            raise
        except BaseException:
            _close(report_r, report_w, go_r, go_w, log_fd)
            raise
        if pid == 0:  # the init (Python)
            os.close(report_r)
            os.close(go_w)
            _init_direct(spec, console, report_w, go_r, log_fd, join, staged)
        _close(report_w, go_r, log_fd)
        join.close()
        join = None
        try:
            if program is None:
                lxcfs.refresh(spec.binds)  # while the init is busy: its binds come later
            parts = None
            if program is not None:
                parts = program.finish(spec, console, log_fd, staged, _sysinfo_alive(spec))
                next(parts)  # its first part: the rest while it runs that
            if staged is not None:
                try:
                    _map_ids(pid, spec.userns, staged)  # #1b
                except OSError as exc:
                    # The init may have died first: its own account comes first.
                    os.close(go_w)
                    go_w = -1
                    if program is not None:
                        _raise_record(spec.name, program, sysprog.read_record(report_r),
                                      f"mapping its ids: {exc}")
                    _raise_report(spec.name, recv(report_r) or
                                  ("error", f"mapping its ids: {exc}", exc.errno))
                staged.close()
                staged = None
                if program is None:
                    send(go_w, ("mapped",))
            if parts is not None:
                try:
                    os.write(go_w, b"m")  # its first part is written (and its ids mapped)
                    for _ in parts:
                        os.write(go_w, b".")  # and each next one
                except BrokenPipeError:  # it failed (and said why) or died
                    _raise_record(spec.name, program, sysprog.read_record(report_r),
                                  "the init exited during setup")
            if meanwhile is not None:
                meanwhile(pid)
            if program is not None:
                if spec.userns:
                    # Only the container's own processes use the delegation, after
                    # its exec (the init joins through fds opened here): done
                    # while it builds its root, after the caller's wiring.
                    _delegate_cgroups(spec)
                record = sysprog.read_record(report_r)
                if record != (sysprog.READY, 0):
                    _raise_record(spec.name, program, record, "the init exited during setup")
                return _ProgramSpawned(pid=pid, report_fd=report_r, go_fd=go_w, name=spec.name,
                                       init=program, child=child)
            msg = recv(report_r)
            if msg != ("ready",):
                _raise_report(spec.name, msg if msg is not None else
                              ("error", "the init exited during setup", None))
        except BaseException:
            _close(report_r, go_w)  # an init still waiting exits on EOF
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            raise
        return Spawned(pid=pid, report_fd=report_r, go_fd=go_w, name=spec.name)
    finally:
        if join is not None:
            join.close()
        if staged is not None:
            staged.close()


def _map_ids(pid: int, userns: tuple[int, int, int], staged: StagedLayers) -> None:
    """The init's user namespace: its id maps (as newuidmap would write them), then
    the template layers idmapped through it."""
    uid_base, gid_base, size = userns
    for name, base in (("uid_map", uid_base), ("gid_map", gid_base)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, f"0 {base} {size}\n".encode())
        finally:
            os.close(fd)
    if staged.pending:
        userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            staged.idmap(userns_fd)
        finally:
            os.close(userns_fd)


def _init_direct(spec: InitSpec, console: str | None, report_w: int, go_r: int, log_fd: int,
                 join: CgroupJoin, staged: StagedLayers | None) -> None:
    """#1-#2 in the init cloned by ``_spawn_direct``; ends in ``_init`` (exec or _exit)."""
    try:
        # In the cgroups first, so that the cgroup namespace's root is the
        # container's own cgroup (v1 hierarchies: joined here, see cgjoin).
        join.join()
        ns.unshare(NAMESPACES & ~ns.CLONE_NEWPID)
        root = None
        if staged is not None:
            msg = recv(go_r)
            if msg != ("mapped",):
                os._exit(126)  # the caller gave up
            _become_root()
            m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
            root = staged.attach(spec.rootfs)
    except BaseException as exc:
        _fail(report_w, "namespaces", exc)
    _init(spec, console, report_w, go_r, log_fd, root)


def _become_root() -> None:
    """Host root has no id in a new user namespace: become its root (host uid_base)."""
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _spawn_forked(spec: InitSpec, console: str | None,
                  meanwhile: Callable[[int], object] | None,
                  prepare: Callable[[], object] | None) -> Spawned:
    from corral.runtime.cgjoin import CgroupJoin

    at_birth = spec.rootfs.disk is None
    if at_birth and prepare is not None:
        prepare()
        prepare = None
    join = None
    report_r, report_w, go_r, go_w, log_fd = _pipes(spec)
    try:
        if at_birth:
            join = CgroupJoin(spec.cgroup_procs)
        pid = join.fork() if join is not None else os.fork()
    except BaseException:
        _close(report_r, report_w, go_r, go_w, log_fd)
        if join is not None:
            join.close()
        raise
    if pid == 0:  # intermediate
        os.close(report_r)
        os.close(go_w)
        _intermediate(spec, console, report_w, go_r, log_fd, prepare, join)
    if join is not None:
        join.close()
    os.close(report_w)
    os.close(go_r)
    if log_fd >= 0:
        os.close(log_fd)
    init_pid = 0
    ready = False
    try:
        # "pid" (#3, from the intermediate) and "ready" (#2, from the init)
        # share the pipe and may arrive in either order.
        while not (init_pid and ready):
            msg = recv(report_r)
            if msg is None:
                _raise_report(spec.name, ("error", "the init exited during setup", None))
            elif isinstance(msg, tuple) and msg[0] == "pid":
                init_pid = int(msg[1])
                lxcfs.refresh(spec.binds)  # while the init is busy: its binds come later
                if meanwhile is not None:
                    meanwhile(init_pid)
            elif msg == ("ready",):
                ready = True
            else:
                _raise_report(spec.name, msg)
    except BaseException:
        os.close(report_r)
        os.close(go_w)  # an init still waiting for "go" exits on EOF
        if init_pid:
            try:
                os.kill(init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise
    finally:
        os.waitpid(pid, 0)
    return Spawned(pid=init_pid, report_fd=report_r, go_fd=go_w, name=spec.name)


def _intermediate(spec: InitSpec, console: str | None, report_w: int, go_r: int,
                  log_fd: int, prepare: Callable[[], object] | None,
                  join: CgroupJoin | None) -> None:
    try:
        if prepare is not None:  # #0
            prepare()
    except BaseException as exc:
        _fail(report_w, "", exc)
    try:
        # #1: in the cgroups first, so the cgroup namespace's root is the
        # container's own cgroup and every later process is accounted.
        if join is not None:
            join.join()
        if spec.userns or spec.rootfs.disk is not None:
            _private_mounts(spec)
        if join is None:
            _join_cgroups(spec.cgroup_procs)
        staged = _enter_userns(spec) if spec.userns else None
        # With a user namespace, every namespace made here is owned by it.
        ns.unshare(NAMESPACES | (ns.CLONE_NEWNET if spec.netns else 0))
        init_pid = os.fork()
    except BaseException as exc:
        _fail(report_w, "namespaces", exc)
    if init_pid == 0:
        _init(spec, console, report_w, go_r, log_fd, staged)
    try:
        send(report_w, ("pid", init_pid))  # #3
    finally:
        os._exit(0)


def _join_cgroups(procs_files: tuple[str, ...]) -> None:
    """Go on in the container's cgroups without the kernel's attach wait (see
    ``runtime.cgjoin``): on a host with cgroup2, as a child born in its cgroup2
    directory, this process waiting for it and exiting."""
    from corral.runtime.cgjoin import CgroupJoin

    join = CgroupJoin(procs_files)
    if join.v2_dir < 0:
        join.join()
        return
    pid = join.fork()
    if pid == 0:
        join.join()
        return
    join.close()
    try:
        os.waitpid(pid, 0)
    finally:
        os._exit(0)  # the child reports (or fails) on the same pipe


def _private_mounts(spec: InitSpec) -> None:
    """A private mount namespace of the host's, for what must be mounted as host root.

    The disk-quota image is mounted here, before the container's cgroups are
    joined: their device allow-list (rightly) has no block devices.  The
    container's own mount namespace, unshared later, is a copy of this one.
    """
    ns.unshare(ns.CLONE_NEWNS)
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    disk, point = spec.rootfs.disk, spec.rootfs.disk_mount
    if disk is not None and point is not None:
        m.mount(disk, point, spec.rootfs.disk_fstype, m.MS_NOSUID | m.MS_NODEV)
        for d in ("upper", "work"):
            if not os.path.isdir(f"{point}/{d}"):
                os.mkdir(f"{point}/{d}", 0o755)
                if spec.userns:  # the container's root writes here as its host id
                    os.chown(f"{point}/{d}", spec.userns[0], spec.userns[1])


def _delegate_cgroups(spec: InitSpec) -> None:
    """Hand the container's cgroups to its root, so that an init like systemd can
    manage its own subtree.  What delegation hands over (the kernel's
    cgroup-v2.rst, "Delegation Containment"; for v1 what LXC chowns): the
    directory, to make cgroups below, and the files that move processes --
    never a limit."""
    assert spec.userns is not None
    uid_base, gid_base, _size = spec.userns
    for procs in spec.cgroup_procs:
        cg = os.path.dirname(procs)
        os.chown(cg, uid_base, gid_base)
        os.chown(procs, uid_base, gid_base)
        try:
            os.chown(f"{cg}/tasks", uid_base, gid_base)  # v1
        except FileNotFoundError:  # v2
            os.chown(f"{cg}/cgroup.threads", uid_base, gid_base)
            os.chown(f"{cg}/cgroup.subtree_control", uid_base, gid_base)


def _enter_userns(spec: InitSpec) -> RootfsSpec:
    """Make the container's user namespace, stage its idmapped layers, and join it.

    Staging happens as host root in a private mount namespace (idmapped
    mounts need the host's privilege); the container's own mount namespace,
    unshared next, is a copy of it owned by the new user namespace.
    """
    assert spec.userns is not None
    uid_base, gid_base, size = spec.userns
    _delegate_cgroups(spec)
    userns_fd = ns.make_userns(uid_base, gid_base, size)
    try:
        layers = rootfs.open_layers(spec.rootfs, uid_base, size)
        try:
            layers.idmap(userns_fd)
            staged = layers.attach(spec.rootfs)
        finally:
            layers.close()
        ns.setns(userns_fd, ns.CLONE_NEWUSER)
    finally:
        os.close(userns_fd)
    _become_root()
    return staged


def _init(spec: InitSpec, console: str | None, report_w: int, go_r: int, log_fd: int,
          staged: RootfsSpec | None = None) -> None:
    step = "setup"
    try:
        if spec.console_socket >= 0:
            import fcntl
            import socket
        if spec.sysinfo_socket >= 0:  # imported before the root changes
            from corral.runtime import sysinfo_client
        if not spec.foreground:
            os.setsid()  # no controlling terminal of the caller's
        step = "hostname"
        ns.sethostname(spec.hostname)
        if spec.netns and not spec.netns_wired:
            step = "loopback"
            ns.loopback_up()
        step = "rootfs"
        rootfs.setup(spec, "pty" if spec.console_socket >= 0 else console, staged)  # #2
        if spec.console_socket >= 0:
            step = "console"
            _make_console(spec.console_socket, fcntl, socket)
        # What does not wait for the host is done before "ready", while the
        # caller has work of its own.
        step = "writing guest files"
        _write_files(spec.files)
        if spec.seccomp:
            # Before "ready", while the host has work of its own (the filter's JIT
            # and the agent's wakeup are not on the start's critical path).  What
            # runs after it -- files, dup2, close_range, prctl, sigaction, execve
            # -- is nothing the profile refuses (seccomp_profile.DENIED).
            step = "seccomp"
            if spec.sysinfo_socket >= 0:  # the agent gets a listener, the socket is closed
                sysinfo_client.install(spec.seccomp, spec.sysinfo_filter, spec.sysinfo_socket)
            else:
                seccomp.install(spec.seccomp)
        send(report_w, ("ready",))
        step = "waiting for the host"
        msg = recv(go_r)  # #4
        if not (isinstance(msg, tuple) and msg[0] == "go"):
            os._exit(126)  # the caller gave up or died: never run unconfigured
        step = "writing network files"
        _write_files(msg[1])
        step = "stdio"
        _setup_stdio(spec, log_fd)
        # No host fd beyond 0-2 may reach the container (CVE-2024-21626 class);
        # the report pipe closes itself on exec.
        close_fds_except(report_w)
        step = "capabilities"
        caps.drop_bounding(caps.cap_numbers(spec.caps))
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "TERM": "linux", "container": "corral"}
        env.update(spec.env)
        step = f"exec {spec.argv[0]}"
        execvpe(spec.argv, env)  # #5
    except BaseException as exc:
        _fail(report_w, step, exc)


def _same_file(path: str, content: bytes, mode: int) -> bool:
    """``path`` is a regular file holding ``content`` with ``mode`` already (a restart)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return (st.st_mode & 0o170000 == 0o100000 and st.st_mode & 0o7777 == mode
                and st.st_size == len(content) and os.read(fd, len(content) + 1) == content)
    finally:
        os.close(fd)


def _write_files(files: dict[str, tuple[bytes, int]]) -> None:
    for path, (content, mode) in files.items():
        if _same_file(path, content, mode):
            continue  # no new file (and inode) for what a restart would rewrite as it is
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, 0o755, exist_ok=True)
        tmp = f"{path}.corral-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        os.rename(tmp, path)


TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def _make_console(sock_fd: int, fcntl: Any, socket: Any) -> None:
    """/dev/console: a pty of the container's own devpts, its master sent to the monitor.

    Made inside the container (as LXC and nspawn do), so the console is a
    terminal the container's root owns and no host pty reaches it.
    """
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
        m.mount(f"/dev/pts/{number}", "/dev/console", None, m.MS_BIND)
        with socket.socket(fileno=os.dup(sock_fd)) as sock:
            socket.send_fds(sock, [b"c"], [master])
    finally:
        os.close(master)
    os.close(sock_fd)


def _setup_stdio(spec: InitSpec, log_fd: int) -> None:
    if spec.foreground:
        return
    if spec.console_socket >= 0:
        console = os.open("/dev/console", os.O_RDWR | os.O_NOCTTY)
        for fd in (0, 1, 2):
            os.dup2(console, fd)
        os.close(console)
        return
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    out = log_fd if log_fd >= 0 else null
    os.dup2(out, 1)
    os.dup2(out, 2)
