"""One function per command: arguments in, ``Host`` call, rendered output out."""

from __future__ import annotations

import os
import sys

from corral.cli import render
from corral.cli.hot import (  # noqa: F401 - run and exec are served from there
    _limits,
    _network,
    _raw_limits,
    _security,
    cmd_exec,
    cmd_run,
)
from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cmd_template(host: Any, args: Any) -> int:
    if args.tcommand == "build":
        from corral.cli.progress import Progress

        with Progress() as progress:
            t = host.template_build(args.kind, args.name, force=args.force, mirror=args.mirror,
                                    progress=progress)
        print(f"template '{t['name']}' ready: {t['os']} {t['version']} "
              f"({render.human_size(t['size_bytes'])}, built in {t['build_seconds']} s)")
    elif args.tcommand == "update":
        v = host.template_update(args.name, command=args.upgrade_command)
        print(f"template '{args.name}' version {v['version']}: "
              f"{render.human_size(v['bytes'])} changed in {v['seconds']} s "
              f"(move containers with 'corral rebase NAME')")
    elif args.tcommand == "import":
        from corral.cli.progress import Progress

        with Progress() as progress:
            t = host.template_import(args.source, args.name, progress=progress)
        print(f"template '{t['name']}' imported: {t['os']} {t['version']} "
              f"({render.human_size(t['size_bytes'])}, {t['files']} files, "
              f"in {t['build_seconds']} s)")
    elif args.tcommand == "list":
        ts = host.template_list()
        if args.json:
            render.emit_json(ts)
        else:
            print(render.table(
                ("NAME", "KIND", "OS", "VERSION", "ARCH", "SIZE", "LAYERS", "CREATED", "USED BY"),
                [(t["name"], t["kind"], t["os"], t["version"], t["arch"],
                  render.human_size(t["size_bytes"]), t["layers"], render.when(t["created"]),
                  len(t["used_by"])) for t in ts]))
    elif args.tcommand == "info":
        t = host.template_info(args.name)
        render.emit_json(t) if args.json else print(render.keyvalue(t))
    elif args.tcommand == "remove":
        host.template_remove(args.name)
        print(f"template '{args.name}' removed")
    return 0


def cmd_create(host: Any, args: Any) -> int:
    from corral.model import ContainerConfig

    kw: dict[str, Any] = {"name": args.name, "template": args.template, "rootfs": args.rootfs,
                          "hostname": args.hostname, "limits": _limits(args),
                          "network": _network(args), "privileged": args.privileged,
                          "console": args.console, **_security(args)}
    from corral.host import guest

    kw["guest"] = {}
    if args.ssh_key:
        kw["guest"]["ssh_keys"] = guest.read_ssh_keys(args.ssh_key)
    pending: list[dict[str, Any]] = []
    if args.userpasswd:
        pending.append({"userpasswd": list(guest.parse_userpasswd(args.userpasswd))})
    if args.timezone:
        pending.append({"timezone": guest.validate_timezone(args.timezone)})
    if pending:
        kw["guest"]["pending"] = pending
    kw.update(_autostart(args))
    if args.init:
        import shlex

        kw["init"] = shlex.split(args.init)
    cfg = host.create(ContainerConfig(**kw))
    print(f"container '{cfg.name}' created")
    if args.start:
        i = host.start(cfg.name)
        print(f"container '{cfg.name}' started (pid {i['pid']})")
    return 0


def _select(host: Any, args: Any) -> list[str]:
    """Names, shell-style globs ("web*") and --all, resolved against existing containers."""
    from corral.errors import NotFoundError, ValidationError

    if args.all:
        if args.names:
            raise ValidationError("give names or --all, not both")
        return host.names()
    if not args.names:
        raise ValidationError("no container named", hint="Give one or more names, or --all.")
    existing: list[str] | None = None
    out: list[str] = []
    for pattern in args.names:
        if any(c in pattern for c in "*?["):
            import fnmatch

            existing = existing if existing is not None else host.names()
            matched = fnmatch.filter(existing, pattern)
            if not matched:
                raise NotFoundError(f"no container matches '{pattern}'")
            out.extend(m for m in matched if m not in out)
        elif pattern not in out:
            out.append(pattern)
    return out


def _tolerant(args: Any, fn: Any) -> Any:
    """With --all or a glob, a container already in the wanted state is skipped, not an
    error (``start --all`` starts what is stopped); named ones still report it."""
    if not (args.all or any(c in n for n in args.names for c in "*?[")):
        return fn
    from corral.errors import InvalidStateError

    def run(name: str) -> None:
        try:
            fn(name)
        except InvalidStateError:
            pass
    return run


def _each(names: list[str], verb: str, fn: Any, parallel: int = 1,
          warm: Any = None) -> int:
    """Apply ``fn`` to every name; report failures at the end instead of stopping.

    With ``parallel`` > 1 the names are shared out to that many forked
    workers (processes, not threads: the runtime forks and unshares, which a
    threaded process must not do).
    """
    if len(names) == 1:
        fn(names[0])
        return 0
    if parallel > 1:
        if warm is not None:
            warm()  # load once what every worker would otherwise load for itself
        failed = _each_parallel(names, fn, parallel)
    else:
        failed = []
        for name in names:
            try:
                fn(name)
            except Exception as exc:  # reported, and the rest go on
                failed.append(_failure(name, exc))
    if failed:
        sys.stderr.write(f"corral: {verb} failed for {len(failed)} of {len(names)}: "
                         f"{', '.join(n for n, _, _ in failed)}\n")
        return max(code for _, _, code in failed)
    return 0


def _failure(name: str, exc: BaseException) -> tuple[str, str, int]:
    """A mass operation's failure on ``name``: one line on stderr, and its entry
    (name, reason, exit code) for the summary.  Never a traceback, also for an
    exception that is not one of ours."""
    if isinstance(exc, CorralError):
        what, code = exc.message, exc.exit_code
    else:
        what, code = str(exc) or type(exc).__name__, 1
    sys.stderr.write(f"corral: {name}: {what}\n")
    return (name, what, code)


def _each_parallel(names: list[str], fn: Any, parallel: int) -> list[tuple[str, str, int]]:
    """Ctrl-C (SIGINT to the group, or to this process alone) stops the whole
    operation: each worker finishes or undoes the name it is on (the
    operations undo a half-done step on any exception) and begins no other,
    and this process waits for them before it raises KeyboardInterrupt."""
    import marshal

    workers: list[tuple[int, int]] = []
    try:
        for w in range(min(parallel, len(names))):
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _worker(names[w::parallel], fn, wfd, marshal)
            os.close(wfd)
            workers.append((pid, r))
        failed: list[tuple[str, str, int]] = []
        for pid, r in workers:
            with os.fdopen(r, "rb", closefd=False) as f:
                data = f.read()
            os.waitpid(pid, 0)
            failed.extend(marshal.loads(data) if data else [("worker", "crashed", 1)])
        return failed
    except KeyboardInterrupt:
        import _signal

        for pid, _r in workers:  # ours, by PID: they may not have had the signal
            try:
                os.kill(pid, _signal.SIGINT)
            except ProcessLookupError:
                pass
        for pid, _r in workers:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        raise
    finally:
        for _pid, r in workers:
            os.close(r)


def _worker(names: list[str], fn: Any, wfd: int, marshal: Any) -> None:
    """A forked worker of ``_each_parallel``: ``fn`` over its share of ``names``,
    its failures sent back marshalled on ``wfd``; never returns."""
    import _signal

    def interrupt_once(_signum: int, _frame: object) -> None:
        # A Ctrl-C reaches a worker twice (the terminal's, to the group, and the
        # caller's, forwarded): the second must not cut short the undoing of
        # the step the first interrupted.
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        raise KeyboardInterrupt

    _signal.signal(_signal.SIGINT, interrupt_once)
    results = []
    for name in names:
        try:
            fn(name)
        except KeyboardInterrupt:
            results.append(_failure(name, KeyboardInterrupt("interrupted")))
            break  # the rest of its share is not begun
        except BaseException as exc:  # reported, and it goes on with the next
            results.append(_failure(name, exc))
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        data = marshal.dumps(results)
        while data:
            data = data[os.write(wfd, data):]
    except (OSError, KeyboardInterrupt):
        pass  # the caller is gone (interrupted): nobody to tell
    os._exit(0)


def cmd_start(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.start(name, details=False)
        print(f"container '{name}' started (pid {i['pid']})")
    return _each(_select(host, args), "start", _tolerant(args, one), args.parallel,
                 host.warm_for_start)


def cmd_stop(host: Any, args: Any) -> int:
    """One container: stop it.  Several: signal all, wait for all at once (--parallel is
    not needed: the waiting is shared), then report every failure at the end."""
    names = _select(host, args)
    if len(names) == 1 and not (args.all or any(c in args.names[0] for c in "*?[")):
        host.stop(names[0], timeout=args.timeout)
        print(f"container '{names[0]}' stopped")
        return 0
    from corral.errors import InvalidStateError

    tolerant = args.all or any(c in n for n in args.names for c in "*?[")
    failed = [(n, e) for n, e in host.stop_many(names, timeout=args.timeout)
              if not (tolerant and isinstance(e, InvalidStateError))]  # already stopped
    for name in names:
        if name not in {n for n, _ in failed}:
            print(f"container '{name}' stopped")
    for name, exc in failed:
        sys.stderr.write(f"corral: {name}: {exc}\n")
    if failed:
        sys.stderr.write(f"corral: stop failed for {len(failed)} of {len(names)}: "
                         f"{', '.join(n for n, _ in failed)}\n")
        return max(getattr(e, "exit_code", 1) for _, e in failed)
    return 0


def cmd_restart(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.restart(name, timeout=args.timeout)
        print(f"container '{name}' restarted (pid {i['pid']})")
    return _each(_select(host, args), "restart", one, args.parallel, host.warm_for_start)


def cmd_destroy(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        host.destroy(name, force=args.force)
        print(f"container '{name}' destroyed")
    return _each(_select(host, args), "destroy", one, args.parallel)


def cmd_list(host: Any, args: Any) -> int:
    items = host.list()
    if args.json:
        render.emit_json(items)
        return 0
    print(render.table(
        ("NAME", "STATE", "TEMPLATE", "ADDRESS", "PROCESSES", "MEMORY", "PRIVILEGES"),
        [(i["name"], i["state"], i["template"] or i["rootfs"], i["ip"],
          i["processes"] if i["state"] != "stopped" else None,
          render.human_size(i["memory_bytes"]) if i["state"] != "stopped" else None,
          "privileged" if i["privileged"] else "unprivileged")
         for i in items]))
    return 0


def cmd_info(host: Any, args: Any) -> int:
    i = host.info(args.name)
    if args.json:
        i["usage"] = host.stats(args.name)
        render.emit_json(i)
        return 0
    i = dict(i)
    limits = i.pop("limits")
    i["memory_bytes"] = render.human_size(i["memory_bytes"])
    import time as _time

    for key in ("created", "started"):
        if i.get(key):
            i[key] = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(i[key]))
    print(render.keyvalue(i))
    s = host.stats(args.name)
    h, lim = render.human_size, render.limit_size
    rows = [
        ("cpu", f"{s['cpu_seconds']:.2f} s", "max" if limits.get("cpus", -1) == -1
         else f"{limits['cpus']} CPUs"),
        ("memory", h(s["memory_bytes"]), lim(limits.get("memory"))),
        ("swap", h(s["swap_bytes"]), lim(limits.get("swap"))),
        ("processes", s["pids"], "max" if limits.get("pids", -1) == -1 else limits["pids"]),
        ("disk", h(s["disk_bytes"]), lim(limits.get("disk"))),
    ]
    for key in ("cpu_weight", "cpuset", "io_weight", "io_read_bps", "io_write_bps",
                "io_read_iops", "io_write_iops"):
        if key in limits:
            rows.append((key.replace("_", " "), "-", _show_limit(key, limits[key])))
    print()
    print(render.table(("RESOURCE", "USAGE", "LIMIT"), rows))
    return 0


def cmd_console(host: Any, args: Any) -> int:
    from corral.cli.console import attach
    from corral.host import monitor

    host.require_exists(args.name)
    return attach(monitor.socket_path(host, args.name), args.name)


def cmd_enter(host: Any, args: Any) -> int:
    from corral.runtime.spec import ExecSpec

    return int(host.exec(args.name, ExecSpec(argv=("/bin/sh", "-l"), user=args.user, tty=True)))


def cmd_set(host: Any, args: Any) -> int:
    raw = _raw_limits(args)
    net_change = args.publish or args.unpublish or args.net_rate
    guest_change = (args.hostname or args.userpasswd or args.ssh_key or args.timezone
                    or args.nameserver or args.searchdomain)
    boot = _autostart(args)
    if boot:
        b = host.set_autostart(args.name, **boot)
        print(f"container '{args.name}': autostart {'on' if b['autostart'] else 'off'}, "
              f"boot order {b['boot_order']}, boot delay {b['boot_delay']:g} s")
    if not raw and not net_change and not guest_change:
        if boot:
            return 0
        from corral.errors import ValidationError

        raise ValidationError("nothing to set", hint="Give a limit, e.g. --memory 512M.")
    if guest_change:
        from corral.host import guest

        done = host.set_guest(
            args.name, hostname=args.hostname,
            userpasswd=guest.parse_userpasswd(args.userpasswd) if args.userpasswd else None,
            ssh_keys=guest.read_ssh_keys(args.ssh_key) if args.ssh_key else None,
            timezone=args.timezone, nameservers=args.nameserver,
            searchdomains=args.searchdomain)
        print(f"container '{args.name}': " + ", ".join(done))
    if raw:
        limits = host.set_limits(args.name, raw)
        print(f"container '{args.name}': " + ", ".join(
            f"{k}={_show_limit(k, v)}" for k, v in sorted(limits.items())))
    if net_change:
        spec = host.set_network(args.name, rate=args.net_rate, publish=args.publish,
                                unpublish=args.unpublish)
        ports = ", ".join(f"{p['host_port']}:{p['port']}/{p['proto']}"
                          for p in spec.get("publish", [])) or "none"
        rate = spec.get("rate")
        print(f"container '{args.name}': published {ports}; rate "
              f"{'max' if not rate else f'{rate / 1e6:g}mbit'}")
    return 0


def _show_limit(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{d}={_show_limit(key, v)}" for d, v in value.items()) or "-"
    if value == -1:
        return "max"
    if key in ("memory", "swap", "disk") or key.endswith("_bps"):
        return render.human_size(value)
    return str(value)


_STATS_COLUMNS = ("NAME", "STATE", "CPU s", "MEMORY", "MEM LIMIT", "SWAP", "PIDS", "DISK",
                  "IO R/W", "NET RX/TX", "OOM", "FAILCNT")


def _stats_row(s: dict[str, Any]) -> tuple[Any, ...]:
    h, lim = render.human_size, render.limit_size
    return (s["name"], s["state"], f"{s['cpu_seconds']:.2f}", h(s["memory_bytes"]),
            lim(s["memory_limit_bytes"]), h(s["swap_bytes"]),
            f"{s['pids']}/{'max' if s['pids_limit'] == -1 else s['pids_limit']}",
            h(s["disk_bytes"]), f"{h(s['io_read_bytes'])}/{h(s['io_write_bytes'])}",
            f"{h(s['net_rx_bytes'])}/{h(s['net_tx_bytes'])}", s["oom_kills"],
            f"mem {s['failcnt']['memory']} pids {s['failcnt']['pids']}")


def cmd_stats(host: Any, args: Any) -> int:
    from corral.errors import ValidationError

    if args.all == bool(args.name):
        raise ValidationError("give a container name or --all")
    names = host.names() if args.all else [args.name]
    items = [host.stats(n) for n in names]
    if args.json:
        render.emit_json(items if args.all else items[0])
    else:
        print(render.table(_STATS_COLUMNS, [_stats_row(s) for s in items]))
    return 0


def cmd_top(host: Any, args: Any) -> int:
    """A refreshing table sorted by CPU use over the last interval; q or Ctrl-C quits."""
    import select
    import time

    interactive = sys.stdin.isatty() and not args.once
    saved = None
    if interactive:
        import termios
        import tty

        saved = termios.tcgetattr(0)
        tty.setcbreak(0)
    before: dict[str, tuple[float, float]] = {}
    try:
        while True:
            rows = []
            for name in host.names():
                s = host.stats(name)
                now = time.monotonic()
                prev = before.get(name)
                pct = 0.0
                if prev is not None and now > prev[1]:
                    pct = 100 * (s["cpu_seconds"] - prev[0]) / (now - prev[1])
                before[name] = (s["cpu_seconds"], now)
                rows.append((pct, s))
            rows.sort(key=lambda r: (-r[0], r[1]["name"]))
            table = render.table(
                ("NAME", "STATE", "CPU%", "MEMORY", "MEM LIMIT", "PIDS", "NET RX/TX"),
                [(s["name"], s["state"], f"{pct:5.1f}", render.human_size(s["memory_bytes"]),
                  render.limit_size(s["memory_limit_bytes"]), s["pids"],
                  f"{render.human_size(s['net_rx_bytes'])}/"
                  f"{render.human_size(s['net_tx_bytes'])}") for pct, s in rows])
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J" + f"corral top — {len(rows)} containers, "
                                 "q to quit\n\n" + table + "\n")
                sys.stdout.flush()
                ready, _, _ = select.select([0], [], [], args.interval)
                if ready and os.read(0, 16).strip().lower().startswith(b"q"):
                    return 0
            else:
                print(table)
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)


def cmd_network(host: Any, args: Any) -> int:
    if args.ncommand == "create":
        n = host.network_create(args.name, subnet=args.subnet, bridge=args.bridge)
        print(f"network '{n['name']}': bridge {n['bridge']}, {n['subnet']}, {n['subnet6']}")
    elif args.ncommand == "list":
        items = host.network_list()
        if args.json:
            render.emit_json(items)
        else:
            print(render.table(("NAME", "BRIDGE", "SUBNET", "GATEWAY", "IPV6", "CONTAINERS"),
                               [(n["name"], n["bridge"], n["subnet"], n["gateway"], n["subnet6"],
                                 len(n["containers"])) for n in items]))
    elif args.ncommand == "info":
        n = host.network_info(args.name)
        render.emit_json(n) if args.json else print(render.keyvalue(n))
    elif args.ncommand == "delete":
        host.network_delete(args.name)
        print(f"network '{args.name}' deleted")
    return 0


def cmd_snapshot(host: Any, args: Any) -> int:
    if args.scommand == "create":
        s = host.snapshot_create(args.name, args.snapshot)
        print(f"snapshot '{args.snapshot}' of '{args.name}' taken in {s['seconds']} s"
              + (" (live)" if s["live"] else ""))
    elif args.scommand == "list":
        snaps = host.snapshot_list(args.name)
        if args.json:
            render.emit_json(snaps)
        else:
            print(render.table(("NAME", "CREATED", "LAYERS", "TEMPLATE", "LIVE"),
                               [(s["name"], render.when(s["created"]), len(s["layers"]),
                                 f"{s.get('template')} v{s.get('template_version') or 1}",
                                 "yes" if s.get("live") else "no") for s in snaps]))
    elif args.scommand == "restore":
        r = host.snapshot_restore(args.name, args.snapshot, force=args.force)
        print(f"'{args.name}' restored to snapshot '{args.snapshot}' in {r['seconds']} s"
              + (" and started again" if r["restarted"] else ""))
    elif args.scommand == "delete":
        host.snapshot_delete(args.name, args.snapshot)
        print(f"snapshot '{args.snapshot}' of '{args.name}' deleted")
    return 0


def cmd_clone(host: Any, args: Any) -> int:
    cfg = host.clone(args.source, args.name, snapshot=args.snapshot)
    print(f"container '{cfg.name}' cloned from '{args.source}'"
          + (f" snapshot '{args.snapshot}'" if args.snapshot else ""))
    return 0


def cmd_rebase(host: Any, args: Any) -> int:
    r = host.rebase(args.name, args.version, force=args.force)
    print(f"'{r['name']}' moved from {r['template']} version {r['from']} to {r['to']}"
          + (" and started again" if r["restarted"] else ""))
    return 0


def cmd_backup(host: Any, args: Any) -> int:
    from corral.cli.progress import Progress

    with Progress() as progress:
        b = host.backup(args.name, args.output, progress=progress)
    print(f"backup of '{args.name}' written to {b['path']} "
          f"({render.human_size(b['bytes'])}, {b['layers']} layers, {b['snapshots']} snapshots, "
          f"in {b['seconds']} s)")
    return 0


def cmd_restore(host: Any, args: Any) -> int:
    from corral.cli.progress import Progress

    with Progress() as progress:
        r = host.restore(args.archive, args.name, progress=progress)
    print(f"container '{r['name']}' restored from {args.archive} "
          f"({r['layers']} layers, {r['snapshots']} snapshots, in {r['seconds']} s)")
    return 0


def _autostart(args: Any) -> dict[str, Any]:
    from corral.errors import ValidationError

    out: dict[str, Any] = {}
    if args.autostart is not None:
        out["autostart"] = args.autostart == "on"
    if args.boot_order is not None:
        out["boot_order"] = args.boot_order
    if args.boot_delay is not None:
        if not 0 <= args.boot_delay <= 3600:
            raise ValidationError("--boot-delay must be between 0 and 3600 seconds")
        out["boot_delay"] = args.boot_delay
    return out


def cmd_autostart(host: Any, args: Any) -> int:
    results = host.autostart()
    for name, err in results:
        print(f"{name}: {'started' if err is None else f'failed: {err}'}")
    return 1 if any(err is not None for _, err in results) else 0


def cmd_shutdown_all(host: Any, args: Any) -> int:
    names = [i["name"] for i in host.list() if i["state"] != "stopped"]
    failed = host.stop_many(names, timeout=args.timeout)
    for name, err in failed:
        print(f"{name}: {err}")
    print(f"{len(names) - len(failed)} of {len(names)} containers stopped")
    return 1 if failed else 0


def cmd_doctor(host: Any, args: Any) -> int:
    found = host.doctor(fix=args.fix)
    for line in found:
        print(line)
    if not found:
        print("nothing left behind")
    return 1 if found and not args.fix else 0
