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


def _each(names: list[str], verb: str, fn: Any) -> int:
    """Apply ``fn`` to every name; report failures at the end instead of stopping."""
    failed: list[tuple[str, CorralError]] = []
    for name in names:
        try:
            fn(name)
        except CorralError as exc:
            if len(names) == 1:
                raise
            failed.append((name, exc))
            sys.stderr.write(f"corral: {name}: {exc.message}\n")
    if failed:
        sys.stderr.write(f"corral: {verb} failed for {len(failed)} of {len(names)}: "
                         f"{', '.join(n for n, _ in failed)}\n")
        return max(e.exit_code for _, e in failed)
    return 0


def cmd_start(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.start(name)
        print(f"container '{name}' started (pid {i['pid']})")
    return _each(args.names, "start", one)


def cmd_stop(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        host.stop(name, timeout=args.timeout)
        print(f"container '{name}' stopped")
    return _each(args.names, "stop", one)


def cmd_restart(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        i = host.restart(name, timeout=args.timeout)
        print(f"container '{name}' restarted (pid {i['pid']})")
    return _each(args.names, "restart", one)


def cmd_destroy(host: Any, args: Any) -> int:
    def one(name: str) -> None:
        host.destroy(name, force=args.force)
        print(f"container '{name}' destroyed")
    return _each(args.names, "destroy", one)


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
