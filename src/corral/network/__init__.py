"""Container networking: a bridge per network with NAT, a veth per container,
persistent addresses, port forwards and DNS files.

The service layer calls, in this order over a container's life:
``plan`` (validate its options) → ``allocate`` (create: lease addresses) →
``attach`` (start: wire the init's network namespace; returns the NetState
kept in state.json) → ``detach`` (stop: works from that NetState alone) →
``release`` (destroy: free the leases).  ``doctor`` finds what a crash left.

Names are derived so two state roots never collide: the default root's
first network is bridge ``corral0`` and nft table ``inet corral``; another
root's are ``cr<id>0`` and ``inet corral_<id>``.  pyroute2 is imported only
inside the functions that touch the kernel.
"""

from __future__ import annotations

import os
import zlib

from corral.errors import NotFoundError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

# ipaddress, the records (ipam) and the rules (nft: subprocess, json) are
# imported by the functions that use them: validating options on the start
# path of an unnetworked container must not pay for them.

DEFAULT = "default"
ROUTED = "routed"  # the network routed-mode containers draw their addresses from
MODES = ("bridge", "routed", "none")
# Routed mode's gateway inside every container, held by every host-side veth
# (like OpenVZ's venet: no bridge, a host route per container).
ROUTED_GATEWAY = "169.254.0.1"
_GLOBAL_LOCK = "/run/corral-network.lock"  # subnet choice is machine-wide


class NetContext:
    """Where a state root keeps its network records, and how its names are made."""

    __slots__ = ("state_dir", "host_id", "default_root")

    def __init__(self, state_dir: str, host_id: str, default_root: bool) -> None:
        self.state_dir = state_dir
        self.host_id = host_id
        self.default_root = default_root

    @property
    def table(self) -> str:
        return "corral" if self.default_root else f"corral_{self.host_id}"

    def record(self, network: str) -> str:
        return f"{self.state_dir}/{network}.json"

    def seed(self, network: str) -> int:
        return zlib.crc32(f"{self.host_id}/{network}".encode())


def bridge_name(ctx: NetContext, network: str) -> str:
    if network == DEFAULT:
        return "corral0" if ctx.default_root else f"cr{ctx.host_id}0"
    return f"cr{ctx.seed(network) & 0xFFFFFFF:07x}"[:15]


def host_veth(ctx: NetContext, container: str, network: str) -> str:
    return f"vc{zlib.crc32(f'{ctx.host_id}/{container}/{network}'.encode()):08x}"


def _is_host_veth_name(name: str) -> bool:
    """Whether ``name`` has the form of ``host_veth``'s names."""
    return len(name) == 10 and name.startswith("vc") and \
        all(c in "0123456789abcdef" for c in name[2:])


def mac_for(ctx: NetContext, container: str, network: str) -> str:
    """Stable, locally administered, unicast."""
    h = zlib.crc32(f"mac/{ctx.host_id}/{container}/{network}".encode())
    tail = [(h >> s) & 0xFF for s in (24, 16, 8, 0)]
    return "02:" + ":".join(f"{b:02x}" for b in [len(container) & 0xFF, *tail])


# -- options ------------------------------------------------------------------------------

def parse_unpublish(text: str) -> tuple[str, int]:
    """'8080', '8080/udp' or a whole '8080:80/tcp' → (proto, host port)."""
    spec, _, proto = text.partition("/")
    host = spec.partition(":")[0]
    proto = proto or "tcp"
    if proto not in ("tcp", "udp") or not host.isdigit() or not 0 < int(host) < 65536:
        raise ValidationError(f"invalid --unpublish '{text}'",
                              hint="Use HOSTPORT[/tcp|udp], e.g. 8080.")
    return proto, int(host)


def parse_publish(text: str) -> dict[str, Any]:
    """'8080:80', '8080:80/udp' → {"host_port": 8080, "port": 80, "proto": "tcp"}."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    host, sep, port = spec.partition(":")
    if proto not in ("tcp", "udp") or not sep or not host.isdigit() or not port.isdigit() \
            or not (0 < int(host) < 65536 and 0 < int(port) < 65536):
        raise ValidationError(f"invalid --publish '{text}'",
                              hint="Use HOSTPORT:PORT[/tcp|udp], e.g. 8080:80.")
    return {"host_port": int(host), "port": int(port), "proto": proto}


_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
               "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9}


def parse_rate(text: str) -> int | None:
    """'10mbit' → 10_000_000 bits/s (tc's units: bit, kbit, mbit, gbit; bps … = bytes/s);
    'max' → None (unshaped)."""
    t = text.strip().lower()
    if t in ("max", "unlimited", "none"):
        return None
    for unit in sorted(_RATE_UNITS, key=len, reverse=True):
        if t.endswith(unit) and t[: -len(unit)].replace(".", "", 1).isdigit():
            value = int(float(t[: -len(unit)]) * _RATE_UNITS[unit])
            if value >= 8000:
                return value
    raise ValidationError(f"invalid --net-rate '{text}'",
                          hint="Use e.g. 10mbit, 500kbit, 1gbit (at least 8kbit), or max.")


def plan(mode: str | None, ip: str | None, networks: list[str] | None,
         publish: list[str] | None, isolated: bool, nameservers: list[str] | None,
         searchdomains: list[str] | None, rate: str | None = None) -> dict[str, Any]:
    """A container's network options, validated, as stored in its config."""
    mode = mode or "bridge"
    if mode not in MODES:
        raise ValidationError(f"invalid --net '{mode}'", hint=f"Use one of: {', '.join(MODES)}.")
    if mode == "none":
        if ip not in (None, "auto") or publish or networks:
            raise ValidationError("--net none takes no address, network or published port")
        return {"mode": "none"}
    if mode == "routed":
        if publish or isolated or networks:
            raise ValidationError("--net routed takes no --publish, --isolated or --network",
                                  hint="A routed container is reached at its own address.")
        networks = [ROUTED]
    if ip not in (None, "auto") or nameservers:
        import ipaddress  # ~2 ms with what it imports: only for what is given
    if ip not in (None, "auto"):
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ValidationError(f"invalid --ip '{ip}'", hint="Give an IPv4 address or auto.") \
                from None
    for ns_ in nameservers or []:
        try:
            ipaddress.ip_address(ns_)
        except ValueError:
            raise ValidationError(f"invalid --nameserver '{ns_}'") from None
    from corral.model import validate_name

    nets = networks or [DEFAULT]
    for n in nets:
        validate_name(n, "network")
    if mode == "bridge" and ROUTED in nets:
        raise ValidationError(f"network '{ROUTED}' is for --net routed")
    out = {
        "mode": mode,
        "networks": nets,
        "ip": ip or "auto",
        "publish": [parse_publish(p) for p in publish or []],
        "isolated": isolated,
        "nameservers": nameservers or [],
        "searchdomains": searchdomains or [],
    }
    if rate and parse_rate(rate) is not None:  # absent means unshaped (TOML has no null)
        out["rate"] = parse_rate(rate)
    return out


# -- networks -----------------------------------------------------------------------------

def ensure_network(ctx: NetContext, network: str = DEFAULT, *, subnet: str | None = None,
                   bridge: str | None = None) -> dict[str, Any]:
    """The network's record, creating its subnet, bridge and rules when missing.

    The common case -- record and bridge present -- reads one file and checks
    one /sys entry: no netlink and no nft call on every container start.
    """
    from corral.network import ipam

    leases = ipam.Leases(ctx.record(network))
    rec = leases.load()
    if rec and rec.get("bridge") and os.path.exists(f"/sys/class/net/{rec['bridge']}"):
        return rec
    import ipaddress

    from corral import store
    from corral.network import netlink

    os.makedirs(ctx.state_dir, mode=0o700, exist_ok=True)
    with leases.lock:
        rec = leases.load()
        if not rec:
            with store.locked(_GLOBAL_LOCK, "the machine's network allocation"):
                taken = [ipaddress.ip_network(n, strict=False) for n in netlink.host_networks()
                         if ":" not in n]
                taken += _recorded_subnets(ctx)
                if subnet is not None:
                    chosen = _explicit_subnet(subnet, taken)
                else:
                    chosen = ipam.pick_subnet(ctx.seed(network), taken)
                prefix6 = ipam.ula_prefix(ctx.seed(network))
                routed = network == ROUTED
                rec = {"name": network, "mode": "routed" if routed else "bridge",
                       "bridge": None if routed else (bridge or bridge_name(ctx, network)),
                       "subnet": str(chosen),
                       "gateway": ROUTED_GATEWAY if routed else ipam.gateway(chosen),
                       "subnet6": str(prefix6), "gateway6": ipam.gateway(prefix6),
                       "leases": {}, "forwards": {}}
                _bring_up(rec)
                leases.save(rec)
        else:
            _bring_up(rec)
    _apply_rules(ctx)
    return rec


def _explicit_subnet(text: str, taken: list[Any]) -> Any:
    import ipaddress

    from corral.errors import ConflictError

    try:
        net = ipaddress.IPv4Network(text)
    except ValueError:
        raise ValidationError(f"invalid --subnet '{text}'",
                              hint="Give an IPv4 network such as 10.210.0.0/24.") from None
    if not 16 <= net.prefixlen <= 29:
        raise ValidationError(f"--subnet {text}: use a prefix between /16 and /29")
    clash = next((t for t in taken if net.overlaps(t)), None)
    if clash is not None:
        raise ConflictError(f"--subnet {text} overlaps {clash}, already routed on this host",
                            hint="Choose another subnet.")
    return net


def validate_bridge_name(name: str) -> str:
    if not (0 < len(name) <= 15 and all(c.isalnum() or c in "-_." for c in name)):
        raise ValidationError(f"invalid bridge name '{name}'",
                              hint="Use at most 15 letters, digits, '-', '_' or '.'.")
    if os.path.exists(f"/sys/class/net/{name}"):
        from corral.errors import ConflictError

        raise ConflictError(f"a network interface named {name} already exists")
    return name


def _bring_up(rec: dict[str, Any]) -> None:
    from corral.network import netlink

    if rec.get("mode") == "routed":
        _sysctl("net/ipv4/ip_forward", "1")
        return
    _enable_ipv6_forwarding()
    plen = rec["subnet"].split("/")[1]
    netlink.ensure_bridge(rec["bridge"], [f"{rec['gateway']}/{plen}",
                                          f"{rec['gateway6']}/64"])
    _sysctl("net/ipv4/ip_forward", "1")
    # Port forwards from the host's loopback reach containers only if the bridge
    # accepts 127.0.0.0/8 sources (they are masqueraded on the way out).
    _sysctl(f"net/ipv4/conf/{rec['bridge']}/route_localnet", "1")


def _enable_ipv6_forwarding() -> None:
    """Route IPv6 for the containers without breaking the host's own autoconfiguration:
    with forwarding on, the kernel ignores router advertisements unless accept_ra is 2,
    so interfaces that accepted them (1) are moved to 2 first, as LXD does."""
    base = "/proc/sys/net/ipv6/conf"
    try:
        with open(f"{base}/all/forwarding") as f:
            if f.read().strip() == "1":
                return
        for iface in os.listdir(base):
            if iface in ("all", "default", "lo"):
                continue
            try:
                with open(f"{base}/{iface}/accept_ra") as f:
                    if f.read().strip() == "1":
                        _sysctl(f"net/ipv6/conf/{iface}/accept_ra", "2")
            except OSError:
                continue
        _sysctl("net/ipv6/conf/all/forwarding", "1")
    except OSError:
        pass  # no IPv6 on this host: the IPv4 side works regardless


def _sysctl(key: str, value: str) -> None:
    path = f"/proc/sys/{key}"
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def _records(ctx: NetContext) -> list[dict[str, Any]]:
    from corral.network import ipam

    try:
        names = sorted(f for f in os.listdir(ctx.state_dir) if f.endswith(".json"))
    except FileNotFoundError:
        return []
    return [r for r in (ipam.Leases(f"{ctx.state_dir}/{n}").load() for n in names) if r]


def _recorded_subnets(ctx: NetContext) -> list[ipaddress.IPv4Network]:
    import ipaddress

    return [ipaddress.ip_network(r["subnet"]) for r in _records(ctx)]


def _apply_rules(ctx: NetContext) -> None:
    from corral.network import nft

    records = _records(ctx)
    forwards = []
    isolated = []
    for r in records:
        for fws in r.get("forwards", {}).values():
            forwards.extend(dict(fw, subnet=r["subnet"]) for fw in fws)
        isolated.extend(r.get("isolated", {}).values())
    nft.apply(ctx.table, [{"bridge": r["bridge"], "subnet": r["subnet"],
                           "subnet6": r.get("subnet6") if r.get("bridge") else None,
                           "routed6": None if r.get("bridge") else r.get("subnet6")}
                          for r in records], forwards, isolated)



def list_networks(ctx: NetContext) -> list[dict[str, Any]]:
    return [{"name": r["name"], "bridge": r["bridge"], "subnet": r["subnet"],
             "gateway": r["gateway"], "subnet6": r["subnet6"],
             "containers": sorted(r.get("leases", {}))} for r in _records(ctx)]


def delete_network(ctx: NetContext, network: str) -> None:
    from corral.network import ipam, nft

    from corral.errors import InvalidStateError
    from corral.network import netlink

    leases = ipam.Leases(ctx.record(network))
    with leases.lock:
        rec = leases.load()
        if not rec:
            raise NotFoundError(f"no network named '{network}'")
        if rec.get("leases"):
            raise InvalidStateError(
                f"network '{network}' is used by {', '.join(sorted(rec['leases']))}",
                hint="Destroy those containers first.")
        netlink.delete_link(rec["bridge"])
        os.unlink(ctx.record(network))
    if _records(ctx):
        _apply_rules(ctx)
    else:
        nft.delete(ctx.table)


# -- containers ---------------------------------------------------------------------------

def allocate(ctx: NetContext, container: str, spec: dict[str, Any]) -> dict[str, str]:
    """Lease an address on each of the container's networks (persisted); network → address."""
    return _allocate(ctx, container, spec)[0]


def _allocate(ctx: NetContext, container: str, spec: dict[str, Any], *, durable: bool = True
              ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """``allocate``, also returning each network's record as read.  ``durable``: the
    lease is synced to disk (an ephemeral container's need not outlive a power cut:
    neither does the container, and ``doctor`` releases a lease of no container)."""
    from corral.network import ipam

    if spec.get("mode", "none") == "none":
        return {}, {}
    out: dict[str, str] = {}
    recs: dict[str, dict[str, Any]] = {}
    for i, network in enumerate(spec["networks"]):
        rec = ensure_network(ctx, network)
        mine = rec["leases"].get(container)
        if mine is None:  # new: under the lock (a lease, once made, stays until destroy)
            leases = ipam.Leases(ctx.record(network))
            with leases.lock:
                rec = leases.load()
                mine = rec["leases"].get(container)
                if mine is None:
                    used = set(rec["leases"].values())
                    wanted = spec["ip"] if i == 0 and spec["ip"] != "auto" else None
                    mine = ipam.allocate(rec["subnet"], used, wanted)
                    rec["leases"][container] = mine
                    leases.save(rec, durable=durable)
        out[network] = mine
        recs[network] = rec
    return out, recs


def release(ctx: NetContext, container: str, *, durable: bool = True) -> None:
    """Give back ``container``'s leases and forwards (``durable``: see ``_allocate``)."""
    from corral.network import ipam

    for rec in _records(ctx):
        if container in rec.get("leases", {}) or container in rec.get("forwards", {}):
            leases = ipam.Leases(ctx.record(rec["name"]))
            with leases.lock:
                rec = leases.load()
                rec["leases"].pop(container, None)
                rec.get("forwards", {}).pop(container, None)
                rec.get("isolated", {}).pop(container, None)
                leases.save(rec, durable=durable)


def attach(ctx: NetContext, container: str, pid: int, spec: dict[str, Any], *,
           durable: bool = True) -> dict[str, Any]:
    """Wire the network namespace of ``pid``; the NetState to keep for ``detach``.
    ``durable``: a new lease is synced to disk (see ``_allocate``)."""
    from corral.network import ipam, netlink

    if spec.get("mode", "none") == "none":
        return {}
    addrs, recs = _allocate(ctx, container, spec, durable=durable)
    state: dict[str, Any] = {"interfaces": [], "nameservers": spec.get("nameservers") or
                             host_nameservers(), "searchdomains": spec.get("searchdomains", [])}
    try:
        for i, network in enumerate(spec["networks"]):
            rec = recs[network]
            plen = rec["subnet"].split("/")[1]
            v4 = addrs[network]
            if rec.get("mode") == "routed":
                host_if = host_veth(ctx, container, network)
                v6 = ipam.v6_for(rec["subnet6"], v4)
                _drop_leftover_link(host_if)
                netlink.attach_routed(host_if, pid, mac_for(ctx, container, network), v4,
                                      ROUTED_GATEWAY, v6)
                state["interfaces"].append({"network": network, "host_if": host_if,
                                            "ip": f"{v4}/32", "ip6": f"{v6}/128",
                                            "gateway": ROUTED_GATEWAY, "bridge": None})
                # venet's reachability from the host's own network: proxy ARP/NDP
                state.setdefault("proxy", [])
                for uplink, family in netlink.uplinks():
                    addr = v6 if family == 10 else v4
                    if family == 10:
                        _sysctl(f"net/ipv6/conf/{uplink}/proxy_ndp", "1")
                    netlink.set_proxy(addr, uplink, True)
                    state["proxy"].append([addr, uplink])
                continue
            v6 = ipam.v6_for(rec["subnet6"], v4)
            host_if = host_veth(ctx, container, network)
            _drop_leftover_link(host_if)
            netlink.attach_veth(host_if, rec["bridge"], pid, mac_for(ctx, container, network),
                                [f"{v4}/{plen}", f"{v6}/64"],
                                [rec["gateway"], rec["gateway6"]] if i == 0 else [],
                                inner_name=f"eth{i}", peer_index=netlink.PEER_INDEX + i)
            state["interfaces"].append({"network": network, "host_if": host_if,
                                        "ip": f"{v4}/{plen}", "ip6": f"{v6}/64",
                                        "gateway": rec["gateway"], "bridge": rec["bridge"]})
        if spec.get("publish") or spec.get("isolated"):
            _set_rules_of(ctx, container, spec, addrs)
        if spec.get("rate"):
            netlink.set_rate(state["interfaces"][0]["host_if"], pid, spec["rate"])
    except BaseException:
        # The container's namespace lives on (its start is being undone): the
        # pairs made so far are removed now rather than waited for.
        for iface in state["interfaces"]:
            _drop_leftover_link(iface["host_if"])
        detach(ctx, container, state, settle=False)
        raise
    return state


def _wait_gone(names: list[str], timeout: float = 1.0) -> list[str]:
    """Wait until links ``names`` are gone, at most ``timeout``; those still there."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        names = [n for n in names if os.path.exists(f"/sys/class/net/{n}")]
        if not names or time.monotonic() > deadline:
            return names
        time.sleep(0.002)


def _settle_links(names: list[str]) -> None:
    """Wait until links ``names`` are gone; remove those still there after a second."""
    for name in _wait_gone(names):
        _drop_leftover_link(name)


def _drop_leftover_link(name: str) -> None:
    """The veth of the container's last run, if the kernel has not removed it yet
    (a restart), or a leftover of a crash: it would block the name.  /sys answers
    without a netlink round, and the removal is hand-encoded (network/rtnl.py):
    pyroute2's import would cost 100-200 ms here."""
    if os.path.exists(f"/sys/class/net/{name}"):
        import errno

        from corral.network.rtnl import Requests

        req = Requests()
        req.delete_link(name)
        req.send(f"cannot remove the old {name}", tolerate=(errno.ENODEV,))


def _set_rules_of(ctx: NetContext, container: str, spec: dict[str, Any],
                  addrs: dict[str, str]) -> None:
    """Record the container's port forwards and isolation, then rewrite the rules."""
    from corral.network import ipam

    network = spec["networks"][0]
    publish = spec.get("publish", [])
    leases = ipam.Leases(ctx.record(network))
    with leases.lock:
        rec = leases.load()
        if spec.get("isolated"):
            rec.setdefault("isolated", {})[container] = host_veth(ctx, container, network)
        for other, fws in rec.get("forwards", {}).items():
            clash = {(f["proto"], f["host_port"]) for f in fws} & \
                {(p["proto"], p["host_port"]) for p in publish}
            if other != container and clash:
                from corral.errors import ConflictError

                proto, port = sorted(clash)[0]
                raise ConflictError(f"host port {port}/{proto} is already published by "
                                    f"'{other}'")
        if publish:
            rec.setdefault("forwards", {})[container] = [dict(p, addr=addrs[network])
                                                         for p in publish]
        leases.save(rec)
    _apply_rules(ctx)


def update(ctx: NetContext, container: str, spec: dict[str, Any], state: dict[str, Any],
           pid: int | None) -> None:
    """Apply a running container's changed publish list and rate, live."""
    from corral.network import ipam, netlink

    if spec.get("mode", "none") == "none" or not state.get("interfaces"):
        return
    addrs = {net: addr.split("/")[0] for net, addr in leased(ctx, container)}
    leases = ipam.Leases(ctx.record(spec["networks"][0]))
    with leases.lock:
        rec = leases.load()
        rec.get("forwards", {}).pop(container, None)
        leases.save(rec)
    _set_rules_of(ctx, container, spec, addrs)
    netlink.set_rate(state["interfaces"][0]["host_if"], pid, spec.get("rate"))


def detach(ctx: NetContext, container: str, state: dict[str, Any], *,
           settle: bool = True) -> None:
    """Undo ``attach`` from its NetState alone; idempotent.

    The veth pair goes with the container's network namespace, which the
    kernel tears down in a worker moments after its last process exits (7-20
    ms after `run --rm` here).  With ``settle`` this waits for that, and
    removes a pair still there after a second (a namespace held from
    outside); without, it leaves the pair to the kernel: `run --rm` returns
    its exit code without waiting.  Removing the pair at once would not be
    quicker: the request waits for that same teardown, under the global rtnl
    lock every other start and stop needs too.  A start that comes first
    removes an old pair itself (_drop_leftover_link), and doctor waits for
    pending ones before it reports any.
    """
    from corral.network import ipam

    if settle:
        _settle_links([i["host_if"] for i in state.get("interfaces", [])])
    if state.get("proxy"):
        from corral.network import netlink

        for addr, uplink in state.get("proxy", []):
            netlink.set_proxy(addr, uplink, False)
    changed = False
    for rec in _records(ctx):
        if container in rec.get("forwards", {}) or container in rec.get("isolated", {}):
            leases = ipam.Leases(ctx.record(rec["name"]))
            with leases.lock:
                rec = leases.load()
                rec.get("forwards", {}).pop(container, None)
                rec.get("isolated", {}).pop(container, None)
                leases.save(rec)
            changed = True
    if changed:
        _apply_rules(ctx)


def leased(ctx: NetContext, container: str) -> list[tuple[str, str]]:
    """(network, "address/prefix") of the container's leases, without touching the kernel."""
    out = []
    for rec in _records(ctx):
        addr = rec.get("leases", {}).get(container)
        if addr:
            out.append((rec["name"], f"{addr}/{rec['subnet'].split('/')[1]}"))
    return out


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's resolvers, minus loopback stubs a container cannot reach."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    if not (parts[1].startswith("127.") or parts[1] == "::1"):
                        out.append(parts[1])
    except OSError:
        pass
    return out


def guest_files(state: dict[str, Any], hostname: str) -> dict[str, bytes]:
    """/etc/hosts and /etc/resolv.conf for the container."""
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    ifaces = state.get("interfaces", [])
    short = hostname.split(".")[0]
    names = hostname if short == hostname else f"{hostname} {short}"
    if ifaces:
        hosts.append(f"{ifaces[0]['ip'].split('/')[0]}\t{names}")
        if ifaces[0].get("ip6"):
            hosts.append(f"{ifaces[0]['ip6'].split('/')[0]}\t{names}")
    else:
        hosts.append(f"127.0.1.1\t{names}")
    out = {"/etc/hosts": ("\n".join(hosts) + "\n").encode()}
    if ifaces:
        resolv = [f"nameserver {n}" for n in state.get("nameservers", [])]
        if state.get("searchdomains"):
            resolv.append("search " + " ".join(state["searchdomains"]))
        out["/etc/resolv.conf"] = ("\n".join(resolv) + "\n").encode()
    return out


def doctor(ctx: NetContext, containers: set[str], running: set[str],
           fix: bool) -> list[tuple[str, Any]]:
    """Orphans: (description, undo) for veths, leases and forwards of no live container;
    and bridges made by an earlier version, with what brings them up to date."""
    from corral.network import netlink

    found: list[tuple[str, Any]] = []
    records = _records(ctx)
    ours = {host_veth(ctx, c, rec["name"]): c for rec in records
            for c in rec.get("leases", {})}
    live = {host_veth(ctx, c, rec["name"]) for rec in records for c in running}
    stale = {name for name in netlink.links() if name in ours and ours[name] not in running}
    for rec in records:  # and our veths on its bridges: of containers destroyed since
        try:  # (never a port an operator added: only names of the form host_veth makes)
            ports = os.listdir(f"/sys/class/net/{rec.get('bridge')}/brif")
        except OSError:
            continue
        stale.update(p for p in ports if _is_host_veth_name(p) and p not in live)
    # A stopped container's veth goes with its network namespace, which the
    # kernel removes moments after the stop: only one still there after a
    # second is a leftover (its namespace held from outside).
    for name in sorted(_wait_gone(list(stale))):
        what = f"stopped container '{ours[name]}'" if name in ours else "no container"
        found.append((f"veth {name} of {what}", lambda n=name: netlink.delete_link(n)))
    for rec in _records(ctx):
        bridge = rec.get("bridge")
        if bridge and netlink.bridge_outdated(bridge):
            found.append((f"bridge {bridge} without its fixed MAC and multicast querier "
                          "(made by an earlier version)",
                          lambda b=bridge: netlink.configure_bridge(b)))
        for c in sorted(set(rec.get("leases", {})) - containers):
            found.append((f"address lease of no container: {c} on {rec['name']}",
                          lambda c=c: release(ctx, c)))
        for c in sorted((set(rec.get("forwards", {})) | set(rec.get("isolated", {})))
                        - running):
            found.append((f"firewall rules of stopped container '{c}'",
                          lambda c=c, r=rec["name"]: _drop_forwards(ctx, c, r)))
    return found


def _drop_forwards(ctx: NetContext, container: str, network: str) -> None:
    from corral.network import ipam

    leases = ipam.Leases(ctx.record(network))
    with leases.lock:
        rec = leases.load()
        rec.get("forwards", {}).pop(container, None)
        rec.get("isolated", {}).pop(container, None)
        leases.save(rec)
    _apply_rules(ctx)
