"""``corral``: the command line's entry, its fast parser and the one CorralError →
exit code translator.

Start-up cost is part of every container start we benchmark, so this module
imports only ``sys`` at the top; argparse (``cli/parser.py``), the service
layer and the drivers are imported when a command needs them.
"""

from __future__ import annotations

import sys

from corral import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _env(pairs: list[str]) -> dict[str, str]:
    from corral.errors import ValidationError

    out = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise ValidationError(f"invalid --env '{pair}'", hint="Use --env KEY=VALUE.")
        out[k] = v
    return out


class _Args:
    """What argparse would return, for the fast path below."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


# Flags of the latency-critical commands, as declared in parser.build(): name → (dest,
# takes value, repeatable).  Only these are understood by the fast path; anything else
# goes to argparse.
_FAST = {
    "exec": {"-t": ("tty", False, False), "--tty": ("tty", False, False),
             "-u": ("user", True, False), "--user": ("user", True, False),
             "-e": ("env", True, True), "--env": ("env", True, True),
             "-w": ("cwd", True, False), "--cwd": ("cwd", True, False)},
    "run": {"--rm": ("rm", False, False), "--name": ("name", True, False),
            "--hostname": ("hostname", True, False), "-T": ("template", True, False),
            "--template": ("template", True, False), "--rootfs": ("rootfs", True, False),
            "-e": ("env", True, True), "--env": ("env", True, True),
            "--net": ("net", True, False), "--privileged": ("privileged", False, False),
            "--seccomp": ("seccomp", True, False), "--cap-add": ("cap_add", True, True),
            "--systempaths": ("systempaths", True, False),
            "--devices": ("devices", True, False)},
}
_FAST_DEFAULTS = {
    "exec": {"tty": False, "user": None, "env": [], "cwd": None},
    "run": {"rm": False, "privileged": False, "seccomp": None, "cap_add": None,
            "systempaths": None, "devices": None, "name": None, "hostname": None,
            "template": None,
            "rootfs": None,
            "env": [], "net": None, "ip": None, "network": None, "publish": None,
            "isolated": False, "nameserver": None, "searchdomain": None, "net_rate": None},
}


def _fast_parse(argv: list[str]) -> _Args | None:
    """Parse `exec` and `run` without importing argparse (~10 ms of every exec).

    Accepts exactly the spelled-out forms that parser.build() defines, with the
    command after `--`; returns None for anything else (help, errors,
    abbreviations, `--flag=value`), which argparse then handles and reports.
    """
    glob: dict[str, Any] = {"root": None, "debug": False}
    i = 0
    while i < len(argv) and argv[i] in ("--root", "--debug"):
        if argv[i] == "--debug":
            glob["debug"] = True
            i += 1
        elif i + 1 < len(argv):
            glob["root"] = argv[i + 1]
            i += 2
        else:
            return None
    if i >= len(argv) or argv[i] not in _FAST or "--" not in argv[i:]:
        return None
    command = argv[i]
    flags = _FAST[command]
    opts: dict[str, Any] = {k: (list(v) if isinstance(v, list) else v)
                            for k, v in _FAST_DEFAULTS[command].items()}
    positional: list[str] = []
    i += 1
    while argv[i] != "--":
        arg = argv[i]
        if arg in flags:
            dest, takes, many = flags[arg]
            if takes:
                if i + 1 >= len(argv) or argv[i + 1] == "--":
                    return None
                value: Any = argv[i + 1]
                i += 2
            else:
                value = True
                i += 1
            if many:
                opts[dest] = [*(opts[dest] or []), value]
            else:
                opts[dest] = value
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
            i += 1
    rest = argv[i + 1:]
    if not rest:
        return None
    if command == "exec":
        if len(positional) != 1:
            return None
        opts["name"] = positional[0]
    elif positional or (opts["template"] is None) == (opts["rootfs"] is None) or \
            opts["net"] not in (None, "bridge", "none"):
        return None
    else:
        opts["no_limits"] = True  # a limit flag would have sent this to argparse
    return _Args(command=command, argv=rest, **glob, **opts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:  # the fast path: no argparse, no service layer
        sys.stdout.write(f"corral {__version__}\n")
        return 0
    args = _fast_parse(argv)
    if args is None:
        from corral.cli.parser import build

        args = build().parse_args(argv)
    else:
        from corral.cli import preload

        if args.command == "exec":
            preload.load(preload.EXEC)
        else:
            preload.load(preload.RUN + (preload.NETWORK if args.net != "none" else ()))
    from corral.errors import CorralError

    try:
        return _dispatch(args)
    except CorralError as exc:
        if args.debug:
            raise
        msg = f"corral: error: {exc.message}"
        if exc.hint:
            msg += f"\n  hint: {exc.hint}"
        sys.stderr.write(msg + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("corral: interrupted\n")
        return 130
    except OSError as exc:  # a bug below if it reaches here, but never a traceback
        if args.debug:
            raise
        sys.stderr.write(f"corral: error: {exc}\n  hint: rerun with --debug for details\n")
        return 1


def entry() -> None:
    """The console script: ``main()``, then leave without the interpreter's teardown.

    Python's own exit (clearing a hundred modules, a last garbage collection)
    costs ~2.5 ms at the end of every command, as much as ``corral exec``
    spends in the kernel.  Nothing of ours needs it: files are written with
    os.write or closed by ``with`` blocks, no atexit hook is registered, and
    no thread outlives its command.  Only stdout and stderr hold buffered
    bytes; a failure to flush them (a closed pipe) exits 120, as Python does.

    The garbage collector is off from the launcher's first line (pip's
    wrapper: from here) until ``_dispatch`` has loaded the command's code:
    loading ~100 modules makes enough container objects (functions, code,
    classes) for several full collections that walk all of them, 2-3 ms of
    every `run` and `exec` (median of 60 alternating runs of `run --rm
    /bin/true`: 33.5 ms with, 30.6 ms without).  See ``collect_again``.
    """
    import gc
    import os

    gc.disable()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        os._exit(120)
    os._exit(code)


def _host(args: Any) -> Any:
    from corral.host import Host
    from corral.paths import default_root

    return Host(args.root or default_root())


def collect_again() -> None:
    """Turn the garbage collector back on, for objects made from now on.

    ``gc.freeze`` moves everything loaded so far (modules, functions,
    classes: alive until exit anyway) out of the collector's sight, so its
    collections walk only what the command makes after this point.
    """
    import gc

    gc.freeze()
    gc.enable()


def _dispatch(args: Any) -> int:
    if args.command in ("run", "exec"):
        # Off until exit: what follows is the container's start (or the
        # exec) and then waiting for it, with no cycles worth collecting.
        # A process that outlives the command (a console monitor, a
        # daemon) calls collect_again itself.
        from corral.cli import hot as commands  # without every other command's code
    else:
        from corral.cli import commands  # type: ignore[no-redef]

        collect_again()
    return int(getattr(commands, f"cmd_{args.command.replace('-', '_')}")(_host(args), args) or 0)


if __name__ == "__main__":
    entry()
