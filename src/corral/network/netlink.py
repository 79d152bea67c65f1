"""Typed netlink helpers over pyroute2 (imported only when networking is used:
pyroute2 takes ~100 ms to import).

Idempotent where it matters (``ensure_*``); a missing link on removal is
not an error.  Work inside a container's network namespace is done by
entering it briefly (``in_netns``) and opening the netlink socket there.
The start path (``attach_veth``) does not import pyroute2 at all (~120 ms):
its few requests are encoded and sent, one write per namespace, by
network/rtnl.py.
"""

from __future__ import annotations

import errno
import os

from corral.errors import KernelError
from corral.linux import ns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _ipr() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _code(exc: Exception) -> int | None:
    return getattr(exc, "code", None)


def _fail(what: str, exc: Exception) -> KernelError:
    code = _code(exc)
    reason = os.strerror(code) if code else str(exc)
    return KernelError(f"{what}: {reason}", errno=code)


class in_netns:  # noqa: N801 - a context manager used like a function
    """Enter the network namespace of ``pid`` for the duration of a with block."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.own = -1

    def __enter__(self) -> in_netns:
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ns.setns(target, ns.CLONE_NEWNET)
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc: object) -> None:
        ns.setns(self.own, ns.CLONE_NEWNET)
        os.close(self.own)


def link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


# A bridge's multicast snooping, made to confine what containers announce.
# Without a querier on the link the bridge trusts no group table and floods
# every multicast packet to every port: each membership report a starting
# container sends reaches all the others (through the bridge's netfilter
# hooks and their IPv6 input), a per-start cost that grows with the number
# of containers -- a fifth of all CPU time when a thousand start at once.
# With the bridge as querier, reports (MLDv1: see _quiet_ipv6_start) go to
# router ports only and neighbour solicitations only to the port that joined
# their group.  Snooping switches itself off when the group table is full
# (hash_max, 4096 by default: a thousand containers hold ~2000 groups), so
# the table is given room for tens of thousands.
BRIDGE_MULTICAST = {"br_mcast_querier": 1, "br_mcast_hash_max": 65536}


def bridge_mac(name: str) -> str:
    """The bridge's own MAC: fixed, derived from its name (locally administered).

    A bridge without a MAC of its own takes the lowest of its ports' and
    changes it as containers come and go; each change renews its IPv6
    link-local address (duplicate detection, membership reports, a new
    querier: general queries into every container) and leaves every
    container's neighbour entry for its gateway stale.  LXD fixes its
    bridges' MACs for the same reason.
    """
    import hashlib

    return "02:" + hashlib.sha256(name.encode()).digest()[:5].hex(":")


def bridge_outdated(name: str) -> bool:
    """Whether bridge ``name`` (present) lacks the settings above: one made by an
    earlier version, until it is made again (a reboot) or ``configure_bridge``."""
    base = f"/sys/class/net/{name}"
    try:
        with open(f"{base}/address") as f:
            mac = f.read().strip()
        with open(f"{base}/bridge/multicast_querier") as f:
            querier = f.read().strip()
    except FileNotFoundError:
        return False
    return mac != bridge_mac(name) or querier != str(BRIDGE_MULTICAST["br_mcast_querier"])


def configure_bridge(name: str) -> None:
    """Give an existing bridge its fixed MAC and multicast settings."""
    with _ipr() as ipr:
        idx = link_index(ipr, name)
        if idx is not None:
            _configure_bridge(ipr, idx, name)


def _configure_bridge(ipr: Any, idx: int, name: str) -> None:
    try:
        ipr.link("set", index=idx, kind="bridge", address=bridge_mac(name), **BRIDGE_MULTICAST)
    except Exception as exc:
        raise _fail(f"cannot configure bridge {name}", exc) from exc


def ensure_bridge(name: str, addresses: list[str]) -> None:
    """A bridge named ``name``, up, holding ``addresses`` (CIDR strings)."""
    with _ipr() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", address=bridge_mac(name),
                         **BRIDGE_MULTICAST)
            except Exception as exc:
                if _code(exc) != errno.EEXIST:
                    raise _fail(f"cannot create bridge {name}", exc) from exc
            idx = link_index(ipr, name)
        else:
            _configure_bridge(ipr, idx, name)
        have = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx)}
        for cidr in addresses:
            if cidr in have:
                continue
            addr, _, plen = cidr.partition("/")
            kw = {"flags": 0x02} if ":" in addr else {}  # IFA_F_NODAD: a gateway at once
            try:
                ipr.addr("add", index=idx, address=addr, prefixlen=int(plen), **kw)
            except Exception as exc:
                if _code(exc) != errno.EEXIST:
                    raise _fail(f"cannot add {cidr} to {name}", exc) from exc
        ipr.link("set", index=idx, state="up")


def delete_link(name: str) -> bool:
    """Remove a link (a veth takes its peer with it); False if it was not there."""
    with _ipr() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except Exception as exc:
            if _code(exc) != errno.ENODEV:
                raise _fail(f"cannot remove {name}", exc) from exc
        return True


def links() -> list[str]:
    with _ipr() as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]


def host_networks() -> list[str]:
    """Every IPv4 network the host routes or holds an address in (for subnet choice)."""
    out = []
    with _ipr() as ipr:
        for r in ipr.get_routes(family=2):
            dst = r.get_attr("RTA_DST")
            if dst:
                out.append(f"{dst}/{r['dst_len']}")
        for a in ipr.get_addr(family=2):
            out.append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
    return out


LOOPBACK_INDEX = 1  # in every network namespace
PEER_INDEX = 2  # the container's end, asked for: the first free index in a new namespace


def _veth_into(ipr: Any, host_name: str, mac: str, pid: int, inner_name: str,
               peer_index: int, **host_end: Any) -> None:
    """A veth pair born with its peer (named ``inner_name``, index ``peer_index``,
    MAC ``mac``) already in the network namespace of ``pid``; the host end gets
    ``host_end`` (master, state) in the same request.

    Made in place rather than moved there: moving a device between namespaces
    waits for an RCU grace period (~25 ms here), most of a container's start.
    The peer's index is chosen so that nothing needs looking up inside.
    """
    try:
        ipr.link("add", ifname=host_name, kind="veth", **host_end,
                 peer={"ifname": inner_name, "address": mac, "net_ns_pid": pid,
                       "index": peer_index})
    except Exception as exc:
        raise _fail(f"cannot create veth {host_name}", exc) from exc


def _ifindex(name: str) -> int | None:
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def attach_veth(host_name: str, bridge: str | None, pid: int, mac: str,
                addresses: list[str], gateways: list[str], inner_name: str = "eth0",
                peer_index: int = PEER_INDEX) -> None:
    """A veth pair: ``host_name`` on the host (on ``bridge`` if given), ``inner_name``
    (index ``peer_index``) in the network namespace of ``pid`` with ``addresses``
    and default routes via ``gateways``.

    Two writes in all: the pair, born with its peer in the container's
    namespace (see ``_veth_into``), then everything inside at once.
    """
    from corral.network.rtnl import Requests

    master = None
    if bridge is not None:
        master = _ifindex(bridge)
        if master is None:
            raise KernelError(f"bridge {bridge} is missing",
                              hint="corral doctor --fix recreates it")
    ipv6 = _host_has_ipv6()
    pair = Requests()
    pair.veth(host_name, master=master, peer=inner_name, peer_index=peer_index, peer_mac=mac,
              peer_netns_pid=pid, up=not ipv6)
    if ipv6:
        # A bridge port needs no IPv6 address of its own (LXD turns IPv6 off on
        # its host ends too): no link-local address, local route, multicast
        # memberships or duplicate detection on the host per container.
        pair.no_ipv6_addresses(host_name)
        pair.link_up(0, host_name)
    pair.send(f"cannot create veth {host_name}")
    inside = Requests()
    if peer_index == PEER_INDEX:  # the first interface
        inside.link_up(LOOPBACK_INDEX)
    inside.link_up(peer_index)
    for cidr in addresses:
        inside.address(peer_index, cidr)
    for gw in gateways:
        inside.default_route(gw)
    try:
        with in_netns(pid):
            if ipv6:
                _quiet_ipv6_start(inner_name, first=peer_index == PEER_INDEX)
            inside.send(f"cannot configure {inner_name} in the container")
    except BaseException:
        delete_link(host_name)
        raise


def _quiet_ipv6_start(ifname: str, *, first: bool) -> None:
    """In the container's network namespace, before ``ifname`` is up.

    Multicast that a bridge floods reaches every port, so each packet a
    container sends when its interface comes up can be delivered into every
    other container on the bridge: at a thousand containers, a thousand
    deliveries (through the bridge's netfilter hooks) per packet, a cost that
    grows with the square of the count when all start.  Its addresses are
    static and unique (its MAC is Corral's, its global address comes with
    NODAD), so it needs no duplicate detection for its link-local address and
    no router solicitation (router advertisements are still accepted).  Its
    membership reports are MLDv1: the bridge (the link's querier, see
    BRIDGE_MULTICAST) learns from them and passes them to router ports only,
    where an MLDv2 report, sent to all MLDv2 routers (ff02::16), would still
    be flooded.  What MLDv1 lacks is source-specific joins (SSM), which nothing
    on a container's link would serve: the bridge routes no multicast beyond
    it, and any-source groups between containers work as before.  Where the
    namespace shows
    ``mld_qrv`` (one of the host's user namespace: a privileged container),
    one report per group instead of two (RFC 6636 4.5 allows a robustness of
    1 on a reliable link; a veth is one).
    """
    # Each name looked up under /proc/sys is compared with the same name of
    # every other network namespace (one dentry per namespace, told apart by
    # proc_sys_compare): with a thousand containers, a path costs thousands
    # of comparisons per step.  So the directories are looked up once and
    # the files opened relative to them.
    ipv6 = os.open("/proc/sys/net/ipv6", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        conf = os.open(f"conf/{ifname}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                       dir_fd=ipv6)
        try:
            for name, value in (("accept_dad", b"0"), ("router_solicitations", b"0"),
                                ("force_mld_version", b"1")):
                _write_sysctl_at(conf, name, value)
        finally:
            os.close(conf)
        if first:
            _write_sysctl_at(ipv6, "mld_qrv", b"1")
    finally:
        os.close(ipv6)


def _write_sysctl_at(dir_fd: int, name: str, value: bytes) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        # A kernel without the knob, or a namespace that does not show it
        # (mld_qrv, in a user namespace's): its default then.
        return
    try:
        os.write(fd, value)
    finally:
        os.close(fd)


_ipv6: bool | None = None


def _host_has_ipv6() -> bool:
    """Whether the kernel has IPv6 (not booted with ipv6.disable=1); asked once per
    process, as each /proc/sys lookup costs more with every network namespace."""
    global _ipv6
    if _ipv6 is None:
        _ipv6 = os.path.isdir("/proc/sys/net/ipv6")
    return _ipv6


GATEWAY6_LL = "fe80::1"  # routed mode's IPv6 gateway: link-local on every host end
NTF_PROXY = 0x08


def uplinks() -> list[tuple[str, int]]:
    """(name, family) of the interfaces holding the host's default routes."""
    out = []
    with _ipr() as ipr:
        for family in (2, 10):
            for r in ipr.get_routes(family=family):
                if r["dst_len"] == 0 and r.get_attr("RTA_OIF"):
                    name = ipr.get_links(r.get_attr("RTA_OIF"))[0].get_attr("IFLA_IFNAME")
                    if (name, family) not in out:
                        out.append((name, family))
    return out


def set_proxy(address: str, ifname: str, present: bool) -> None:
    """A proxy ARP (IPv4) or NDP (IPv6) entry: the host answers for ``address`` on
    ``ifname``, as OpenVZ's venet does, so the routed container is reachable there."""
    family = 10 if ":" in address else 2
    with _ipr() as ipr:
        idx = link_index(ipr, ifname)
        if idx is None:
            return
        try:
            ipr.neigh("add" if present else "del", dst=address, ifindex=idx, family=family,
                      flags=NTF_PROXY)
        except Exception as exc:
            if _code(exc) not in (errno.EEXIST, errno.ENOENT, errno.ESRCH):
                raise _fail(f"cannot {'add' if present else 'remove'} the proxy entry "
                            f"{address} on {ifname}", exc) from exc


def attach_routed(host_name: str, pid: int, mac: str, address: str, gateway: str,
                  address6: str | None = None) -> None:
    """Routed mode: a veth with no bridge.  The host end holds ``gateway``/32 (and
    fe80::1) and host routes to the container's /32 (and /128); inside, those
    addresses and default routes via the gateways, reached on-link."""
    with _ipr() as ipr:
        _veth_into(ipr, host_name, mac, pid, "eth0", PEER_INDEX)
        try:
            idx = link_index(ipr, host_name)
            ipr.addr("add", index=idx, address=gateway, prefixlen=32)
            ipr.addr("add", index=idx, address=GATEWAY6_LL, prefixlen=64, flags=0x02)
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst=f"{address}/32", oif=idx)
            if address6:
                ipr.route("add", dst=f"{address6}/128", oif=idx, family=10)
        except Exception as exc:
            delete_link(host_name)
            raise _fail(f"cannot wire veth {host_name}", exc) from exc
    with in_netns(pid), _ipr() as inner:
        try:
            inner.link("set", index=LOOPBACK_INDEX, state="up")
            pidx = PEER_INDEX
            inner.addr("add", index=pidx, address=address, prefixlen=32)
            if address6:
                inner.addr("add", index=pidx, address=address6, prefixlen=128, flags=0x02)
            inner.link("set", index=pidx, state="up")
            inner.route("add", dst=f"{gateway}/32", oif=pidx, scope=253)  # RT_SCOPE_LINK
            inner.route("add", dst="0.0.0.0/0", gateway=gateway, oif=pidx)
            if address6:
                inner.route("add", dst="::/0", gateway=GATEWAY6_LL, oif=pidx, family=10)
        except Exception as exc:
            delete_link(host_name)
            raise _fail("cannot configure eth0 in the container", exc) from exc


def add_host_route(dst: str, dev: str) -> None:
    with _ipr() as ipr:
        family = 10 if ":" in dst else 2
        try:
            ipr.route("add", dst=dst, oif=link_index(ipr, dev), family=family)
        except Exception as exc:
            if _code(exc) != errno.EEXIST:
                raise _fail(f"cannot route {dst} to {dev}", exc) from exc


def set_rate(host_if: str, pid: int | None, rate_bits: int | None) -> None:
    """Shape both directions to ``rate_bits`` per second with a token bucket on each
    end's egress: the host end's is the container's download, eth0's inside its
    upload.  None removes the shaping."""
    burst = max(32 * 1024, (rate_bits or 0) // 8 // 50)  # 20 ms of traffic, at least 32 KiB

    def shape(ipr: Any, ifname: str) -> None:
        idx = link_index(ipr, ifname)
        if idx is None:
            return
        try:
            if rate_bits is None:
                ipr.tc("del", index=idx, handle="1:", root=True)
            else:
                ipr.tc("replace", "tbf", index=idx, handle="1:", rate=rate_bits // 8,
                       burst=burst, latency="50ms")
        except Exception as exc:
            if rate_bits is not None or _code(exc) not in (errno.ENOENT, errno.EINVAL):
                raise _fail(f"cannot shape {ifname}", exc) from exc

    with _ipr() as ipr:
        shape(ipr, host_if)
    if pid is not None:
        with in_netns(pid), _ipr() as inner:
            shape(inner, "eth0")
