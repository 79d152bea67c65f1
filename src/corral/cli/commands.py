"""One function per command: arguments in, ``Host`` call, rendered output out."""

from __future__ import annotations

import os
import sys

from corral.cli import render
from corral.cli.main import _env
from corral.errors import CorralError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def cmd_template(host: Any, args: Any) -> int:
    if args.tcommand == "build":
        t = host.template_build(args.kind, args.name, force=args.force)
        print(f"template '{t['name']}' ready: {t['os']} {t['version']} "
              f"({render.human_size(t['size_bytes'])}, built in {t['build_seconds']} s)")
    elif args.tcommand == "list":
        ts = host.template_list()
        if args.json:
            render.emit_json(ts)
        else:
            print(render.table(
                ("NAME", "KIND", "OS", "VERSION", "ARCH", "SIZE", "USED BY"),
                [(t["name"], t["kind"], t["os"], t["version"], t["arch"],
                  render.human_size(t["size_bytes"]), len(t["used_by"])) for t in ts]))
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
                          "hostname": args.hostname}
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


def _each(names: list[str], verb: str, fn: Any, parallel: int = 1) -> int:
    """Apply ``fn`` to every name; report failures at the end instead of stopping.

    With ``parallel`` > 1 the names are shared out to that many forked
    workers (processes, not threads: the runtime forks and unshares, which a
    threaded process must not do).
    """
    if len(names) == 1:
        fn(names[0])
        return 0
    if parallel > 1:
        failed = _each_parallel(names, fn, parallel)
    else:
        failed = []
        for name in names:
            try:
                fn(name)
            except CorralError as exc:
                failed.append((name, exc.message, exc.exit_code))
                sys.stderr.write(f"corral: {name}: {exc.message}\n")
    if failed:
        sys.stderr.write(f"corral: {verb} failed for {len(failed)} of {len(names)}: "
                         f"{', '.join(n for n, _, _ in failed)}\n")
        return max(code for _, _, code in failed)
    return 0


def _each_parallel(names: list[str], fn: Any, parallel: int) -> list[tuple[str, str, int]]:
    import marshal

    workers = []
    for w in range(min(parallel, len(names))):
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            results = []
            for name in names[w::parallel]:
                try:
                    fn(name)
                except CorralError as exc:
                    results.append((name, exc.message, exc.exit_code))
                    sys.stderr.write(f"corral: {name}: {exc.message}\n")
                except BaseException as exc:  # reported, never a traceback
                    results.append((name, str(exc), 1))
            sys.stdout.flush()
            sys.stderr.flush()
            with os.fdopen(wfd, "wb") as f:
                f.write(marshal.dumps(results))
            os._exit(0)
        os.close(wfd)
        workers.append((pid, r))
    failed: list[tuple[str, str, int]] = []
    for pid, r in workers:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        failed.extend(marshal.loads(data) if data else [("worker", "crashed", 1)])
    return failed


def cmd_start(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.start(name)
        print(f"container '{name}' started (pid {i['pid']})")
    return _each(_select(host, args), "start", one, args.parallel)


def cmd_stop(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        host.stop(name, timeout=args.timeout)
        print(f"container '{name}' stopped")
    return _each(_select(host, args), "stop", one, args.parallel)


def cmd_restart(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.restart(name, timeout=args.timeout)
        print(f"container '{name}' restarted (pid {i['pid']})")
    return _each(_select(host, args), "restart", one, args.parallel)


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
        ("NAME", "STATE", "TEMPLATE", "ADDRESS", "PROCESSES", "MEMORY"),
        [(i["name"], i["state"], i["template"] or i["rootfs"], i["ip"],
          i["processes"] if i["state"] != "stopped" else None,
          render.human_size(i["memory_bytes"]) if i["state"] != "stopped" else None)
         for i in items]))
    return 0


def cmd_info(host: Any, args: Any) -> int:
    i = host.info(args.name)
    if args.json:
        render.emit_json(i)
    else:
        i = dict(i)
        i["memory_bytes"] = render.human_size(i["memory_bytes"])
        print(render.keyvalue(i))
    return 0


def cmd_exec(host: Any, args: Any) -> int:
    from corral.runtime.spec import ExecSpec

    spec = ExecSpec(argv=tuple(args.argv), env=_env(args.env), user=args.user, cwd=args.cwd,
                    tty=args.tty)
    return int(host.exec(args.name, spec))


def cmd_enter(host: Any, args: Any) -> int:
    from corral.runtime.spec import ExecSpec

    return int(host.exec(args.name, ExecSpec(argv=("/bin/sh", "-l"), user=args.user, tty=True)))


def cmd_run(host: Any, args: Any) -> int:
    from corral.model import ContainerConfig

    name = args.name or f"run-{os.urandom(4).hex()}"
    cfg = ContainerConfig(name=name, template=args.template, rootfs=args.rootfs,
                          hostname=args.hostname, init=list(args.argv), env=_env(args.env))
    return int(host.run(cfg, remove=args.rm))


def cmd_doctor(host: Any, args: Any) -> int:
    found = host.doctor(fix=args.fix)
    for line in found:
        print(line)
    if not found:
        print("nothing left behind")
    return 1 if found and not args.fix else 0
