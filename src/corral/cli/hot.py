"""The latency-critical commands, kept apart: `run` and `exec`.

The fast parser (``main._fast_parse``) serves them, and dispatch loads this
small module for them instead of every command's code and the table
renderer (~0.5 ms of each run and exec).  The option helpers live here too;
``create`` and ``set`` use the same ones.
"""

from __future__ import annotations

import os

from corral.cli.main import _env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _raw_limits(args: Any) -> dict[str, Any]:
    if getattr(args, "no_limits", False):
        return {}  # the fast parser saw no limit flag (see main._fast_parse)
    from corral.cgroups.resources import LIMITS

    return {k: getattr(args, k) for k in LIMITS if getattr(args, k, None) is not None}


def _limits(args: Any) -> dict[str, Any]:
    raw = _raw_limits(args)
    if not raw:
        return {}
    from corral.host.resources import parse_limits

    return parse_limits(raw)


def _network(args: Any) -> dict[str, Any]:
    if args.net == "none" and not (args.ip or args.network or args.publish or args.isolated
                                   or args.nameserver or args.searchdomain or args.net_rate):
        return {"mode": "none"}  # network.plan's answer, without loading the package
    from corral.network import plan

    return plan(args.net, args.ip, args.network, args.publish, args.isolated,
                args.nameserver, args.searchdomain, args.net_rate)


def _security(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.seccomp:
        out["seccomp"] = args.seccomp
    if args.cap_add:
        out["cap_add"] = [c.lower().removeprefix("cap_") for c in args.cap_add]
    if args.systempaths:
        out["systempaths"] = args.systempaths
    if args.devices:
        out["devices"] = args.devices
    return out


def cmd_exec(host: Any, args: Any) -> int:
    from corral.runtime.spec import ExecSpec

    spec = ExecSpec(argv=tuple(args.argv), env=_env(args.env), user=args.user, cwd=args.cwd,
                    tty=args.tty)
    return int(host.exec(args.name, spec))


def cmd_run(host: Any, args: Any) -> int:
    from corral.model import ContainerConfig

    name = args.name or f"run-{os.urandom(4).hex()}"
    cfg = ContainerConfig(name=name, template=args.template, rootfs=args.rootfs,
                          hostname=args.hostname, init=list(args.argv), env=_env(args.env),
                          limits=_limits(args), network=_network(args),
                          privileged=args.privileged, **_security(args))
    return int(host.run(cfg, remove=args.rm))
