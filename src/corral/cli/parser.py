"""``corral``'s full argument parser (argparse), built only when the fast path
of ``main`` does not serve the command line: every command but ``run`` and
``exec`` in their usual form, and ``--help``.  Kept apart so that the
launcher's module (``main``), which every command loads, stays small.
"""

from __future__ import annotations

from corral import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def build() -> Any:
    import argparse

    p = argparse.ArgumentParser(
        prog="corral",
        description="Corral: system containers on one Linux kernel.",
    )
    p.add_argument("--version", action="version", version=f"corral {__version__}")
    p.add_argument("--root", metavar="DIR",
                   help="state root (default: $CORRAL_ROOT or /var/lib/corral)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def cmd(name: str, help_: str) -> Any:
        return sub.add_parser(name, help=help_, description=help_)

    t = cmd("template", "build, list, inspect and remove templates")
    tsub = t.add_subparsers(dest="tcommand", metavar="ACTION")
    tsub.required = True
    tb = tsub.add_parser("build", help="build a template: 'tiny' (offline), debian-11/12/13, "
                         "ubuntu-22.04/24.04 (debootstrap, cached)")
    tb.add_argument("kind")
    tb.add_argument("--name", help="template name (default: the kind)")
    tb.add_argument("--force", action="store_true", help="rebuild if it exists")
    tb.add_argument("--mirror", metavar="URL",
                    help="package mirror for debootstrap kinds (default: the distribution's)")
    tu = tsub.add_parser("update", help="upgrade a template's OS into a new version layer "
                         "(containers move with 'corral rebase')")
    tu.add_argument("name")
    tu.add_argument("--command", dest="upgrade_command", metavar="CMD",
                    help="shell command to run instead of the distribution's upgrade")
    ti = tsub.add_parser("import", help="import a rootfs tarball (.tar, .tar.gz, .tar.xz, "
                         ".tar.zst), a directory, oci:DIR[:TAG] or oci-archive:FILE[:TAG]")
    ti.add_argument("source")
    ti.add_argument("name")
    _list_info_remove(tsub, "template", "remove")

    sn = cmd("snapshot", "create, list, restore and delete a container's snapshots")
    snsub = sn.add_subparsers(dest="scommand", metavar="ACTION")
    snsub.required = True
    for verb, help_ in (("create", "snapshot a container (frozen for the instant of the cut)"),
                        ("restore", "bring a container's files back to a snapshot"),
                        ("delete", "delete a snapshot")):
        sp = snsub.add_parser(verb, help=help_)
        sp.add_argument("name")
        sp.add_argument("snapshot")
        if verb == "restore":
            sp.add_argument("--force", action="store_true",
                            help="stop a running container first and start it again after")
    sl = snsub.add_parser("list", help="list a container's snapshots")
    sl.add_argument("name")
    sl.add_argument("--json", action="store_true")

    cl = cmd("clone", "a new container sharing another's layers, with its own identity")
    cl.add_argument("source")
    cl.add_argument("name")
    cl.add_argument("--snapshot", metavar="SNAP", help="clone this snapshot of the source")

    rb = cmd("rebase", "move a container onto another version of its template")
    rb.add_argument("name")
    rb.add_argument("--version", type=int, metavar="V", help="(default: the latest)")
    rb.add_argument("--force", action="store_true", help="stop and restart it if running")

    bk = cmd("backup", "write a container (config, layers, snapshots) to one archive")
    bk.add_argument("name")
    bk.add_argument("-o", "--output", required=True, metavar="FILE")

    rs = cmd("restore", "make a container from a backup archive")
    rs.add_argument("archive")
    rs.add_argument("--name", help="(default: the name in the backup)")

    c = cmd("create", "create a container from a template")
    c.add_argument("name")
    _source_args(c)
    c.add_argument("--hostname")
    c.add_argument("--init", help="the init command (default: the template's)")
    c.add_argument("--start", action="store_true", help="start it once created")
    c.add_argument("--ssh-key", metavar="FILE", help="root's authorized_keys from FILE")
    c.add_argument("--userpasswd", metavar="USER:PASS",
                   help="create USER if missing and set its password (at the first start)")
    c.add_argument("--timezone", metavar="TZ", help="e.g. Europe/Berlin (at the first start)")
    _autostart_args(c)
    c.add_argument("--console", choices=("pty", "log"),
                   help="pty: a console to attach to and reboot from inside, kept by a small "
                        "monitor process; log: output to a log, no resident process "
                        "(default: the template's choice)")
    _limit_args(c)
    _net_args(c)

    st = cmd("set", "change a container's limits, live if it runs (persisted)")
    st.add_argument("name")
    _limit_args(st)
    _autostart_args(st)
    gg = st.add_argument_group("guest (applied now if running; files kept for every start)")
    gg.add_argument("--hostname")
    gg.add_argument("--userpasswd", metavar="USER:PASS", help="create USER if missing, set "
                    "its password (running only)")
    gg.add_argument("--ssh-key", metavar="FILE", help="root's authorized_keys from FILE")
    gg.add_argument("--timezone", metavar="TZ", help="e.g. Europe/Berlin (running only)")
    gg.add_argument("--nameserver", action="append", metavar="ADDR")
    gg.add_argument("--searchdomain", action="append", metavar="DOMAIN")
    sg = st.add_argument_group("network")
    sg.add_argument("--publish", "-p", action="append", metavar="HOSTPORT:PORT[/PROTO]")
    sg.add_argument("--unpublish", action="append", metavar="HOSTPORT[:PORT][/PROTO]")
    sg.add_argument("--net-rate", metavar="RATE", help="e.g. 10mbit, or max to remove")

    sa = cmd("stats", "resource usage from the kernel")
    sa.add_argument("name", nargs="?")
    sa.add_argument("--all", action="store_true", help="every container of this host")
    sa.add_argument("--json", action="store_true")

    tp = cmd("top", "live table of all containers, sorted by CPU (q to quit)")
    tp.add_argument("--interval", type=float, default=1.0, metavar="S")
    tp.add_argument("--once", action="store_true", help="print one table and exit")

    for verb, help_ in (("start", "start containers"), ("stop", "stop containers"),
                        ("restart", "restart containers"), ("destroy", "destroy containers")):
        v = cmd(verb, help_)
        v.add_argument("names", nargs="*", metavar="NAME", help="names or globs ('web*')")
        v.add_argument("--all", action="store_true", help="every container of this host")
        v.add_argument("--parallel", "-j", type=int, default=1, metavar="N",
                       help="work on N containers at a time")
        if verb in ("stop", "restart"):
            v.add_argument("--timeout", type=float, default=10.0, metavar="S",
                           help="seconds to wait for a clean shutdown before killing (10)")
        if verb == "destroy":
            v.add_argument("--force", action="store_true", help="stop it first if running")

    ls = cmd("list", "list containers")
    ls.add_argument("--json", action="store_true")
    inf = cmd("info", "show a container")
    inf.add_argument("name")
    inf.add_argument("--json", action="store_true")

    e = cmd("exec", "run a command in a running container")
    e.add_argument("name")
    e.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    e.add_argument("--user", "-u")
    e.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    e.add_argument("--cwd", "-w", metavar="DIR")
    e.add_argument("argv", nargs="+", metavar="CMD")

    co = cmd("console", "attach to a container's console (Ctrl-a q detaches)")
    co.add_argument("name")

    en = cmd("enter", "open a login shell in a running container")
    en.add_argument("name")
    en.add_argument("--user", "-u")

    r = cmd("run", "run a command as the init of a new container")
    r.add_argument("--rm", action="store_true", help="destroy the container when it exits")
    r.add_argument("--name")
    r.add_argument("--hostname")
    _source_args(r)
    r.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    _limit_args(r)
    _net_args(r)
    r.add_argument("argv", nargs="+", metavar="CMD")

    nw = cmd("network", "create, list, inspect and delete networks")
    nsub = nw.add_subparsers(dest="ncommand", metavar="ACTION")
    nsub.required = True
    nc = nsub.add_parser("create", help="create a network (bridge, subnet, NAT)")
    nc.add_argument("name")
    nc.add_argument("--subnet", metavar="CIDR",
                    help="IPv4 subnet (default: a free /24 in 10.200.0.0/13)")
    nc.add_argument("--bridge", metavar="IFNAME", help="bridge name (default: derived)")
    _list_info_remove(nsub, "network", "delete")

    cmd("autostart", "start the containers marked --autostart, by boot order (run at boot)")
    sd = cmd("shutdown-all", "stop every running container cleanly (run at host shutdown)")
    sd.add_argument("--timeout", type=float, default=30.0, metavar="S")

    d = cmd("doctor", "find (and remove) leftovers of crashed operations")
    d.add_argument("--fix", action="store_true")
    return p


def _autostart_args(p: Any) -> None:
    g = p.add_argument_group("autostart")
    g.add_argument("--autostart", choices=("on", "off"), nargs="?", const="on",
                   help="start it when the host boots (corral.service)")
    g.add_argument("--boot-order", type=int, metavar="N", help="lower starts first (0)")
    g.add_argument("--boot-delay", type=float, metavar="S",
                   help="seconds to wait after starting it before the next one (0)")


def _list_info_remove(sub: Any, noun: str, remove_verb: str) -> None:
    """The list / info / remove actions every managed noun has."""
    lst = sub.add_parser("list", help=f"list {noun}s")
    lst.add_argument("--json", action="store_true")
    info = sub.add_parser("info", help=f"show a {noun}")
    info.add_argument("name")
    info.add_argument("--json", action="store_true")
    rm = sub.add_parser(remove_verb, help=f"{remove_verb} an unused {noun}")
    rm.add_argument("name")


def _limit_args(p: Any) -> None:
    from corral.cgroups.resources import LIMITS

    g = p.add_argument_group("resource limits (K/M/G/T sizes; max = unlimited)")
    for name, (kind, help_) in LIMITS.items():
        flag = "--" + name.replace("_", "-")
        if kind == "io":
            g.add_argument(flag, dest=name, action="append", metavar="DEV=N", help=help_)
        else:
            g.add_argument(flag, dest=name, metavar="N", help=help_)


def _net_args(p: Any) -> None:
    g = p.add_argument_group("network")
    g.add_argument("--net", choices=("bridge", "routed", "none"),
                   help="bridge: own address on the host's bridge with NAT (default); "
                   "routed: a /32 routed by the host, no bridge (like OpenVZ venet); "
                   "none: loopback only")
    g.add_argument("--ip", metavar="ADDR", help="IPv4 address on the first network (auto)")
    g.add_argument("--network", action="append", metavar="NAME",
                   help="network to attach to (repeatable; default: default)")
    g.add_argument("--publish", "-p", action="append", metavar="HOSTPORT:PORT[/PROTO]",
                   help="forward a host port to the container (repeatable)")
    g.add_argument("--isolated", action="store_true",
                   help="reach the gateway and the outside, not other containers")
    g.add_argument("--nameserver", action="append", metavar="ADDR")
    g.add_argument("--searchdomain", action="append", metavar="DOMAIN")
    g.add_argument("--net-rate", metavar="RATE",
                   help="shape traffic both ways, e.g. 10mbit (tc units)")


def _source_args(p: Any) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--template", "-T", metavar="T")
    g.add_argument("--rootfs", metavar="DIR", help="use a directory as the root, without copying")
    p.add_argument("--privileged", action="store_true",
                   help="no user namespace: the container's root is the host's root "
                        "(default: its own range of 65536 host ids)")
    s = p.add_argument_group("security knobs (for debugging and nesting; defaults are safe)")
    s.add_argument("--seccomp", choices=("default", "nesting", "unconfined"),
                   help="nesting: also allow new user namespaces inside; unconfined: no filter")
    s.add_argument("--cap-add", action="append", metavar="CAP",
                   help="a capability beyond the profile (e.g. sys_time), or all")
    s.add_argument("--systempaths", choices=("default", "unconfined"),
                   help="unconfined: /proc not masked, /sys writable")
    s.add_argument("--devices", choices=("default", "unconfined"),
                   help="unconfined: no device allow-list (the capabilities still apply)")
