"""Container life cycle: create, start, stop, restart, destroy, run, exec, info, list.

Every mutation holds the container's lock and registers an undo after each
side effect (``Reverter``), so a failure leaves the container as it was.
State files record what the kernel holds (init PID and start time, cgroup),
and each operation first cleans what an earlier crash may have left.
"""

from __future__ import annotations

import os
import _signal as signal  # see runtime/exec.py: no enum on the hot path
import time

from corral import store
from corral.errors import ConflictError, InvalidStateError, ValidationError, from_oserror
from corral.model import FROZEN, STOPPED, ContainerConfig, RuntimeState
from corral.revert import Reverter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.host import Host
    from corral.runtime.spec import ExecSpec


_rmtree = store.remove_tree


# -- create / destroy -------------------------------------------------------------------

def _prepare(host: Host, cfg: ContainerConfig, *, template_defaults: bool = True) -> None:
    """Validate what ``cfg`` refers to and fill in the template's defaults; touches nothing."""
    from corral.host import templates

    if cfg.template is not None:
        templates.require_present(host, cfg.template)
        if template_defaults:
            meta = templates.require(host, cfg.template)
            if cfg.init == ["/sbin/init"] and meta.get("init"):
                init = meta["init"]
                cfg.init = [str(a) for a in init] if isinstance(init, list) else [str(init)]
            if cfg.stop_signal == "SIGTERM" and meta.get("stop_signal"):
                cfg.stop_signal = str(meta["stop_signal"])
            if cfg.template_version is None:
                cfg.template_version = templates.latest_version(meta)
            if cfg.console is None:
                cfg.console = str(meta.get("console") or "log")
    elif cfg.rootfs is not None and not os.path.isdir(cfg.rootfs):
        raise ValidationError(f"rootfs {cfg.rootfs} is not a directory")
    if not cfg.created:
        cfg.created = time.time()
    host.ensure_dirs()


def _has_disk_quota(cfg: ContainerConfig) -> bool:
    return cfg.limits.get("disk", -1) not in (-1, None)


def _make_dirs(host: Host, name: str, disk_size: int | None = None, owner: int = 0) -> None:
    """The container's directory, without its config (held under its lock).

    The config file, written atomically and last, is what makes a directory
    a container: a crash before it leaves a directory that ``doctor``
    removes, never half a container.
    """
    if host.exists(name):
        raise ConflictError(f"container '{name}' already exists",
                            hint="Choose another name, or destroy the old one first.")
    final = host.paths.container_dir(name)
    if os.path.lexists(final):  # a leftover of a crash: nothing in it is wanted
        _rmtree(final)
    from corral.storage import layers

    layers.detect(host.paths.containers).make_container_dir(final)
    # rootfs/ (a privileged container's mount point) and disk/ (where a disk
    # quota's image is mounted) are made by the start that needs them: on
    # this kind of disk a directory made and removed costs 0.1-0.3 ms, and
    # `run --rm` would pay for both without using them.
    for sub in ("upper", "work"):
        os.mkdir(f"{final}/{sub}", 0o755)
    if owner:
        # An unprivileged container's root writes its upper as its own host
        # ids; it reaches upper/ and work/ through this directory, which it
        # may cross but not list.
        for sub in ("upper", "work"):
            os.chown(f"{final}/{sub}", owner, owner)
        os.chmod(final, 0o711)
    if disk_size is not None:
        from corral.storage import disk

        try:
            disk.create(host.paths.disk_image(name), disk_size)
        except BaseException:
            _rmtree(final)
            raise


class _lock_removed_on_failure:  # noqa: N801
    """A failed create leaves no lock file behind for a container that does not exist."""

    def __init__(self, host: Host, name: str, lock: Any) -> None:
        self.host, self.name, self.lock = host, name, lock

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: object) -> None:
        if exc_type is not None and not self.host.exists(self.name):
            self.lock.unlink()


def create(host: Host, cfg: ContainerConfig, *, durable: bool = True) -> ContainerConfig:
    _prepare(host, cfg)
    with host.lock(cfg.name) as lock, _lock_removed_on_failure(host, cfg.name, lock):
        with Reverter() as undo:
            _lease_ids(host, cfg, undo)
            _make_dirs(host, cfg.name, cfg.limits["disk"] if _has_disk_quota(cfg) else None,
                       owner=cfg.idmap["base"] if cfg.idmap else 0)
            undo.add(_rmtree, host.paths.container_dir(cfg.name))
            if cfg.has_own_network:
                from corral import network

                undo.add(network.release, host.net, cfg.name)
                network.allocate(host.net, cfg.name, cfg.network)
            host.save_config(cfg, durable=durable)
            undo.success()
    return cfg


def _lease_ids(host: Host, cfg: ContainerConfig, undo: Reverter, *,
               durable: bool = True) -> None:
    """An unprivileged container's own range of host ids (see host/idmaps.py)."""
    if cfg.privileged:
        cfg.idmap = None
        return
    from corral.host import idmaps

    base = idmaps.allocate(host.root, cfg.name, durable=durable)
    undo.add(idmaps.release, host.root, cfg.name, base)
    cfg.idmap = {"base": base, "size": idmaps.SIZE}


def destroy(host: Host, name: str, *, force: bool = False, gc: bool = True) -> None:
    cfg = host.load_config(name)  # NotFoundError first
    with host.lock(name) as lock:
        state = host.load_state(name)
        current = host.status(name, state)
        if not current.can_destroy(force):
            raise InvalidStateError(f"container '{name}' is {current}",
                                    hint=f"Stop it first, or use 'corral destroy --force {name}'.")
        if current != STOPPED:
            _stop_locked(host, name, state, timeout=0)
        _remove(host, name, state, lock)
    if gc and (cfg.layers or os.path.isdir(host.paths.snapshots(name))):
        from corral.host import snapshots

        snapshots.gc_layers(host)


def _remove(host: Host, name: str, state: RuntimeState, lock: Any,
            cfg: ContainerConfig | None = None, *, settle: bool = True) -> None:
    """Everything of a stopped container, gone; its lock is held by the caller.
    ``settle``: see _teardown."""
    # Its files are deleted below, and their page cache with them: releasing
    # that first (~1.5 ms) would also evict the template's shared pages that
    # it read first, for the next container to read from disk again.
    _teardown(host, name, state, uncharge=False, settle=settle)
    cfg = cfg or host.load_config(name)
    # Without a network of its own (none, host) it never held an address.
    if cfg.has_own_network and os.path.isdir(host.net_dir):
        from corral import network

        network.release(host.net, name, durable=not cfg.ephemeral)
    if cfg.idmap:
        from corral.host import idmaps

        idmaps.release(host.root, name, cfg.idmap["base"])
    # The config goes first: from then on this is no container, and a crash
    # leaves a directory that the next create or doctor removes.
    os.unlink(host.paths.config_file(name))
    _rmtree(host.paths.container_dir(name))
    try:
        os.unlink(host.paths.console_log(name))
    except FileNotFoundError:
        pass
    lock.unlink()


# -- start ----------------------------------------------------------------------------------

def _init_spec(host: Host, cfg: ContainerConfig, *, foreground: bool, argv: list[str] | None,
               cgroup: Any, disk_loop: str | None = None, console_socket: int = -1,
               files: dict[str, tuple[bytes, int]] | None = None) -> Any:
    from corral.cgroups.mounts import host_cgroup_mounts
    from corral.host import templates
    from corral.runtime.spec import CgroupMount, InitSpec, RootfsSpec

    p = host.paths
    if not cfg.idmap:  # a privileged root is mounted here (in its own mount namespace)
        _ensure_dir(p.mountpoint(cfg.name))
    if disk_loop:
        _ensure_dir(p.disk_mount(cfg.name))
    if cfg.rootfs is not None:
        rootfs = RootfsSpec(mountpoint=p.mountpoint(cfg.name), bind=cfg.rootfs)
    else:
        from corral.storage import layers

        lower = tuple(p.layer_tree(i) for i in cfg.layers)
        owners = tuple(layers.owner_of(i) for i in cfg.layers)
        stack = templates.stack(host, str(cfg.template), cfg.template_version)
        lower += stack
        owners += (0,) * len(stack)
        rootfs = RootfsSpec(mountpoint=p.mountpoint(cfg.name), lower=lower, lower_owners=owners,
                            upper=p.upper(cfg.name), work=p.work(cfg.name),
                            disk=disk_loop, disk_mount=p.disk_mount(cfg.name) if disk_loop
                            else None,
                            disk_fstype=_disk_fstype(p.disk_image(cfg.name)) if disk_loop
                            else None,
                            volatile=cfg.ephemeral)
    mounts = tuple(CgroupMount(target=t, fstype=f, options=o)
                   for t, f, o in host_cgroup_mounts())
    from corral.runtime import filters, lxcfs, sysinfo_client

    binds = lxcfs.container_binds()
    # sysinfo(2) (busybox free, uptime) answered by the host's agent, when confined
    confined = cfg.seccomp != "unconfined"
    nesting = cfg.seccomp == "nesting"
    return InitSpec(
        name=cfg.name,
        hostname=cfg.effective_hostname,
        rootfs=rootfs,
        argv=tuple(argv or cfg.init),
        env=dict(cfg.env),
        cgroup_procs=tuple(str(f) for f in cgroup.procs_files(v1_inner=not cfg.idmap)),
        cgroup_mounts=mounts,
        foreground=foreground,
        console_log=None if foreground or console_socket >= 0 else p.console_log(cfg.name),
        console_socket=console_socket,
        binds=binds,
        userns=(cfg.idmap["base"], cfg.idmap["base"], cfg.idmap["size"]) if cfg.idmap else None,
        # In its own user namespace, sys_admin is over the container's own
        # namespaces only: what systemd needs to mount /run, /tmp and cgroups.
        caps=_caps(cfg),
        seccomp=filters.program(nesting=nesting) if confined else b"",
        systempaths=cfg.systempaths == "default",
        files=files or {},
        # What network.guest_files gives at "go" (see _launch's ``early``).
        late_files=("/etc/hosts", "/etc/resolv.conf") if cfg.has_own_network else (),
        # "host": the template updater's build container uses the host's
        # network to reach the distribution's mirror, as debootstrap does.
        netns=cfg.network.get("mode") != "host",
        netns_wired=cfg.has_own_network,
        sysinfo_filter=filters.program(nesting=nesting, sysinfo=True) if confined else b"",
        sysinfo_socket=sysinfo_client.connect(cgroup.root, cgroup.group) if confined else -1,
    )


def _ensure_dir(path: str) -> None:
    if not os.path.isdir(path):
        os.mkdir(path, 0o755)


def _disk_fstype(image: str) -> str:
    from corral.storage import disk  # only here: it imports subprocess (~7 ms)

    return disk.fstype(image)


def _caps(cfg: ContainerConfig) -> tuple[str, ...]:
    from corral.runtime.spec import DEFAULT_CAPS

    caps = DEFAULT_CAPS + ("sys_admin",) if cfg.idmap else DEFAULT_CAPS
    if "all" in cfg.cap_add:
        from corral.linux.caps import CAP_NAMES

        return tuple(CAP_NAMES)
    return caps + tuple(c for c in cfg.cap_add if c not in caps)


def _guest_files(cfg: ContainerConfig) -> dict[str, tuple[bytes, int]]:
    hn = cfg.effective_hostname
    hosts = (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hn}\n"
             "::1\tlocalhost ip6-localhost ip6-loopback\n")
    return {"/etc/hostname": (f"{hn}\n".encode(), 0o644),
            "/etc/hosts": (hosts.encode(), 0o644)}


def _launch(host: Host, cfg: ContainerConfig, *, foreground: bool = False,
            argv: list[str] | None = None,
            meanwhile: Any = None, console_socket: int = -1) -> RuntimeState:
    """Cgroup, namespaces, root, exec; the container's lock is held by the caller.

    ``meanwhile`` runs while the children set up the namespaces (see
    ``spawn.spawn``).
    """
    from corral.linux import proc
    from corral.runtime import spawn

    cg = host.cgroup(cfg.name)
    limits = cfg.limits

    def make_cgroups() -> None:
        # Called by spawn.spawn, before the fork the container's first process
        # is born in them (or in that process, for a disk image; see there).
        try:
            # In a user namespace (unprivileged), its processes live in the outer
            # cgroup of each v1 hierarchy (see cgroups.base).
            cg.create(restrict_devices=cfg.devices == "default", v1_inner=not cfg.idmap)
        except OSError as exc:
            raise from_oserror(f"cannot create the cgroups of '{cfg.name}'", exc) from exc
        if limits:
            from corral.host import resources

            resources.apply(host, cfg.name, limits)

    networked = cfg.has_own_network
    files = _guest_files(cfg)
    if networked:
        del files["/etc/hosts"]  # the network's, with the address, comes with "go"
    if cfg.guest:
        from corral.host import guest

        files.update(guest.files(cfg))
    state = RuntimeState(cgroup=cg.group)
    net_files: dict[str, tuple[bytes, int]] = {}

    with Reverter() as undo:
        undo.add(cg.destroy)
        undo.add(host.clear_state, cfg.name)

        def early(pid: int) -> None:
            # While the init builds its root: all that needs only its PID (its
            # network namespace exists from the start, see spawn).  The network
            # first: wiring it takes longer than the init's root.
            state.pid, state.pid_start, state.started = pid, proc.start_time(pid), time.time()
            if networked:
                from corral import network

                undo.add(lambda: network.detach(host.net, cfg.name, state.net))
                # An ephemeral container's lease is not synced (nor its records).
                state.net = network.attach(host.net, cfg.name, pid, cfg.network,
                                           durable=not cfg.ephemeral)
                for path, content in network.guest_files(state.net,
                                                         cfg.effective_hostname).items():
                    net_files[path] = (content, 0o644)
            if meanwhile is not None:
                meanwhile()
            # Recorded once, in full: should we die before "go", the init sees its
            # pipe close and exits (its namespace takes the veth with it), and the
            # record then reads as stopped; doctor removes the cgroups.
            host.save_state(cfg.name, state)

        loop = None
        if _has_disk_quota(cfg) and cfg.rootfs is None:
            from corral.storage import disk

            loop = disk.attach(host.paths.disk_image(cfg.name))
            undo.add(disk.release, loop)
        spec = _init_spec(host, cfg, foreground=foreground, argv=argv, cgroup=cg,
                          disk_loop=loop, console_socket=console_socket, files=files)
        console = _foreground_console() if foreground else None
        child = spawn.spawn(spec, console, early, prepare=make_cgroups)
        undo.add(child.abort)
        if loop is not None:
            # Mounted inside the container now: from here the loop device frees
            # itself when the container's mount namespace goes away.
            disk.release(loop)
        child.release(net_files)
        undo.success()
    return state


def _foreground_console() -> str | None:
    """`corral run` on a terminal: the terminal becomes the container's /dev/console."""
    for fd in (0, 1, 2):
        if os.isatty(fd):
            return os.ttyname(fd)
    return None


def start(host: Host, name: str, *, details: bool = True) -> dict[str, Any]:
    """Start ``name``; its ``info``, or with ``details=False`` only its name, state and
    init PID (``start --all`` prints no more, and a full ``info`` per container
    -- config, leases, cgroup usage -- cost ~1.2 ms of each start)."""
    cfg = host.load_config(name)
    with host.lock(name):
        state = host.load_state(name)
        host.status(name, state).require("start", name)
        _teardown(host, name, state)  # leftovers of a container that died or crashed
        state = _start_locked(host, cfg)
    if cfg.guest.get("pending"):
        from corral.host import guest

        guest.run_pending(host, name)
    if details:
        return info(host, name)
    return {"name": name, "state": "running", "pid": state.pid}


def _start_locked(host: Host, cfg: ContainerConfig) -> RuntimeState:
    if cfg.console == "pty":
        from corral.host import monitor

        monitor.start(host, cfg.name)
        return host.load_state(cfg.name)
    return _launch(host, cfg)


# -- stop -----------------------------------------------------------------------------------

def stop(host: Host, name: str, *, timeout: float = 10.0) -> None:
    host.load_config(name)
    with host.lock(name):
        state = host.load_state(name)
        host.status(name, state).require("stop", name)
        _stop_locked(host, name, state, timeout=timeout)
        _teardown(host, name, state)


def restart(host: Host, name: str, *, timeout: float = 10.0) -> dict[str, Any]:
    cfg = host.load_config(name)
    with host.lock(name):
        state = host.load_state(name)
        if host.status(name, state) != STOPPED:
            _stop_locked(host, name, state, timeout=timeout)
        _teardown(host, name, state)
        _start_locked(host, cfg)
    return info(host, name)


def _stop_locked(host: Host, name: str, state: RuntimeState, *, timeout: float) -> None:
    """Ask the init to shut down the way it expects; kill the cgroup after ``timeout``."""
    pidfd = _ask_to_stop(host, name, state, timeout)
    try:
        if pidfd >= 0:
            import select

            poller = select.poll()  # any fd number (a daemon may hold more than 1024)
            poller.register(pidfd, select.POLLIN)
            poller.poll(int(timeout * 1000))
        _kill_cgroup(host.cgroup(name))
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _ask_to_stop(host: Host, name: str, state: RuntimeState, timeout: float) -> int:
    """Thaw, send the init its stop signal; a pidfd that becomes readable when it has
    exited, or -1 when there is nothing to wait for."""
    cfg = host.load_config(name)
    cg = host.cgroup(name)
    if cg.exists() and cg.frozen():
        cg.thaw()
    assert state.pid is not None
    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        return -1
    from corral.linux import proc

    if timeout <= 0 or not proc.is_alive(state.pid, state.pid_start):
        os.close(pidfd)
        return -1

    signal.pidfd_send_signal(pidfd, signal_number(cfg.stop_signal))
    return pidfd


def signal_number(name: str) -> int:
    """``SIGTERM``, ``SIGPWR``, ``SIGRTMIN+3`` (systemd's halt) … as a number;
    SIGTERM if unknown."""
    import signal as named

    if name.startswith("SIGRTMIN"):
        offset = name[len("SIGRTMIN"):].lstrip("+") or "0"
        if offset.isdigit():
            return int(named.SIGRTMIN) + int(offset)
    member = named.Signals.__members__.get(name)
    return int(member) if member is not None else int(named.SIGTERM)


def stop_many(host: Host, names: list[str], *, timeout: float) -> list[tuple[str, Any]]:
    """Stop several containers at once: signal every init, wait for all of them
    together (a busybox init takes ~2 s to power off, so one by one is slow), then
    kill what is left and tear down.  Returns (name, error) for those that failed."""
    import contextlib
    import resource
    import select

    from corral.errors import CorralError

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # a lock and a pidfd per container
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    failed: list[tuple[str, Any]] = []
    pending: dict[int, str] = {}
    with contextlib.ExitStack() as stack:
        stopping: list[tuple[str, RuntimeState]] = []
        for name in names:
            try:
                host.load_config(name)
                stack.enter_context(host.lock(name))
                state = host.load_state(name)
                host.status(name, state).require("stop", name)
                fd = _ask_to_stop(host, name, state, timeout)
            except CorralError as exc:
                failed.append((name, exc))
                continue
            if fd >= 0:
                pending[fd] = name
            stopping.append((name, state))
        deadline = time.monotonic() + timeout
        # poll, not select: a thousand pidfds go past select's FD_SETSIZE (1024).
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)
        try:
            while pending and time.monotonic() < deadline:
                left_ms = max(0, int((deadline - time.monotonic()) * 1000))
                for fd, _event in poller.poll(left_ms):
                    poller.unregister(fd)
                    os.close(fd)
                    del pending[fd]
        finally:
            for fd in pending:
                os.close(fd)
        for name, state in stopping:
            try:
                _kill_cgroup(host.cgroup(name))
                _teardown(host, name, state)
            except (CorralError, OSError) as exc:
                failed.append((name, exc))
    return failed


def _kill_cgroup(cg: Any, wait: float = 10.0) -> None:
    if not cg.exists():
        return
    cg.kill()
    deadline = time.monotonic() + wait
    while cg.populated() and time.monotonic() < deadline:
        time.sleep(0.005)


def _teardown(host: Host, name: str, state: RuntimeState, *, uncharge: bool = True,
              settle: bool = True) -> None:
    """Remove what a stopped container leaves: processes, cgroups, state file.  Idempotent.

    ``settle``: wait for the kernel to remove its veth with its network
    namespace (network.detach); `run --rm` returns without.
    """
    cg = host.cgroup(name)
    if cg.exists():
        cg.destroy(uncharge=uncharge)  # kills what is left first
    if state.net:
        from corral import network

        network.detach(host.net, name, state.net, settle=settle)
    host.clear_state(name)


# -- run: a command as the init of a new container, in the foreground -----------------------

def run(host: Host, cfg: ContainerConfig, *, remove: bool) -> int:
    from corral.linux import ns

    cfg.ephemeral = remove
    _prepare(host, cfg, template_defaults=False)
    # The init is our grandchild; as a subreaper we can wait for it.
    ns.prctl(ns.PR_SET_CHILD_SUBREAPER, 1)
    with host.lock(cfg.name) as lock:
        with Reverter() as undo:
            _lease_ids(host, cfg, undo, durable=not remove)
            _make_dirs(host, cfg.name, cfg.limits["disk"] if _has_disk_quota(cfg) else None,
                       owner=cfg.idmap["base"] if cfg.idmap else 0)
            undo.success()
        try:
            # An ephemeral container's records need not survive a power cut.
            state = _launch(host, cfg, foreground=True, argv=cfg.init,
                            meanwhile=lambda: _write_records_early(host, cfg, remove))
        except BaseException:
            if remove or not host.exists(cfg.name):
                if cfg.has_own_network and os.path.isdir(host.net_dir):
                    from corral import network

                    network.release(host.net, cfg.name, durable=not remove)  # its address
                if cfg.idmap:
                    from corral.host import idmaps

                    idmaps.release(host.root, cfg.name, cfg.idmap["base"])
                if host.exists(cfg.name):
                    os.unlink(host.paths.config_file(cfg.name))
                _rmtree(host.paths.container_dir(cfg.name))
                lock.unlink()
            raise
    assert state.pid is not None
    code = _wait_foreground(state.pid)
    if remove:
        with host.lock(cfg.name) as lock:
            _remove(host, cfg.name, state, lock, cfg, settle=False)
    else:
        with host.lock(cfg.name):
            _teardown(host, cfg.name, state)
    return code


def _write_records_early(host: Host, cfg: ContainerConfig, remove: bool) -> None:
    """The config, written while the children build the container's namespaces."""
    host.save_config(cfg, durable=not remove)


def _wait_foreground(pid: int) -> int:
    """Wait for the init, forwarding SIGINT/SIGTERM/SIGHUP to it; its status becomes ours."""
    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signal.SIGKILL if signum == signal.SIGINT else signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                return 255
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
        else 128 + os.WTERMSIG(status)


# -- exec -----------------------------------------------------------------------------------

def exec_in(host: Host, name: str, spec: ExecSpec) -> int:
    from corral.runtime import exec as rexec

    # The latency-critical path: no config or state file is parsed.  The
    # kernel says where the init is: the process of the container's cgroups
    # that is PID 1 in its own PID namespace.
    host.require_exists(name)
    cg = host.cgroup(name)
    pid = cg.init_pid() if cg.exists() else None
    if pid is None:
        STOPPED.require("exec", name)
    if cg.frozen():
        FROZEN.require("exec", name)
    assert pid is not None
    return rexec.run(pid, lambda: cg.init_pid() == pid, cg.procs_files(), spec,
                     sysinfo=(cg.root, cg.group))


# -- info / list ----------------------------------------------------------------------------

def info(host: Host, name: str) -> dict[str, Any]:
    from corral.storage import disk

    cfg = host.load_config(name)
    state = host.load_state(name)
    current = host.status(name, state)
    out: dict[str, Any] = {
        "name": name,
        "state": str(current),
        "template": cfg.template,
        "rootfs": cfg.rootfs,
        "hostname": cfg.effective_hostname,
        "pid": state.pid if current != STOPPED else None,
        "ip": None,
        "addresses": [],
        "processes": 0,
        "memory_bytes": 0,
        "created": cfg.created,
        "started": state.started if current != STOPPED else None,
        "ephemeral": cfg.ephemeral,
        "init": cfg.init,
        "privileged": cfg.privileged,
        "seccomp": cfg.seccomp,
        "cap_add": cfg.cap_add,
        "systempaths": cfg.systempaths,
        "devices": cfg.devices,
        "idmap": None if cfg.idmap is None else
        f"0-{cfg.idmap['size'] - 1} -> {cfg.idmap['base']}-"
        f"{cfg.idmap['base'] + cfg.idmap['size'] - 1}",
        "template_version": cfg.template_version,
        "layers": len(cfg.layers),
        "console": cfg.console or "log",
        "autostart": cfg.autostart,
        "boot_order": cfg.boot_order,
        "boot_delay": cfg.boot_delay,
        "limits": cfg.limits,
        "disk_quota": disk.describe(host.paths.disk_image(name))
        if _has_disk_quota(cfg) else "none",
    }
    addresses = [i["ip"] for i in state.net.get("interfaces", [])] + \
        [i["ip6"] for i in state.net.get("interfaces", [])] if current != STOPPED else []
    if not addresses and cfg.network.get("mode", "none") != "none" and \
            os.path.isdir(host.net_dir):
        from corral import network

        addresses = [a for _n, a in network.leased(host.net, name)]
    out["addresses"] = addresses
    out["ip"] = next((a for a in addresses if ":" not in a), None)
    out["network"] = cfg.network.get("mode", "none")
    if current != STOPPED:
        cg = host.cgroup(name)
        out["cgroup"] = cg.group
        try:
            out["processes"], out["memory_bytes"] = cg.usage()
        except OSError:
            pass
    return out


def list_all(host: Host) -> list[dict[str, Any]]:
    return [info(host, n) for n in host.names()]
