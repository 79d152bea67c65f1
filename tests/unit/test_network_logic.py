"""The pure parts of networking: addresses, names, options and nft rules."""

from __future__ import annotations

import ipaddress
import multiprocessing
from pathlib import Path

import pytest

from corral import network
from corral.errors import ConflictError, ValidationError
from corral.network import ipam, nft


def test_pick_subnet_skips_taken_and_is_spread_by_seed() -> None:
    first = ipam.pick_subnet(0, [])
    assert first == ipaddress.ip_network("10.200.0.0/24")
    taken = [ipaddress.ip_network("10.200.0.0/16")]
    assert ipam.pick_subnet(0, taken) == ipaddress.ip_network("10.201.0.0/24")
    assert ipam.pick_subnet(12345, []) != first


def test_allocate_explicit_auto_and_refusals() -> None:
    net = ipaddress.ip_network("10.200.1.0/24")
    assert ipam.allocate(net, set(), None) == "10.200.1.2"  # .1 is the gateway
    assert ipam.allocate(net, {"10.200.1.2"}, None) == "10.200.1.3"
    assert ipam.allocate(net, set(), "10.200.1.50") == "10.200.1.50"
    with pytest.raises(ConflictError):
        ipam.allocate(net, {"10.200.1.50"}, "10.200.1.50")
    with pytest.raises(ConflictError):
        ipam.allocate(net, set(), "10.200.1.1")
    with pytest.raises(ValidationError, match="outside"):
        ipam.allocate(net, set(), "10.9.9.9")
    small = ipaddress.ip_network("10.200.2.0/30")
    with pytest.raises(ConflictError, match="no free address"):
        ipam.allocate(small, {"10.200.2.2"}, None)


def test_ula_and_v6_addresses() -> None:
    prefix = ipam.ula_prefix(0xDEADBEEF42)
    assert prefix.prefixlen == 64 and prefix.subnet_of(ipaddress.ip_network("fd00::/8"))
    assert ipam.v6_for(prefix, "10.200.1.7").endswith("::107")


def _lease(path: str, i: int, q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    leases = ipam.Leases(path)
    net = ipaddress.ip_network("10.200.3.0/24")
    with leases.lock:
        rec = leases.load() or {"leases": {}}
        addr = ipam.allocate(net, set(rec["leases"].values()), None)
        rec["leases"][f"c{i}"] = addr
        leases.save(rec)
    q.put(addr)


def test_leases_under_concurrency(tmp_path: Path) -> None:
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_lease, args=(str(tmp_path / "n.json"), i, q))
             for i in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    addrs = [q.get() for _ in procs]
    assert len(set(addrs)) == 12


def test_names_fit_ifnamsiz_and_are_stable() -> None:
    ctx = network.NetContext("/x", "abc123", False)
    assert network.bridge_name(ctx, "default") == "crabc1230"
    assert network.bridge_name(network.NetContext("/x", "abc123", True), "default") == "corral0"
    for name in ("a", "x" * 63):
        veth = network.host_veth(ctx, name, "default")
        assert len(veth) <= 15 and veth == network.host_veth(ctx, name, "default")
    assert network.host_veth(ctx, "a", "default") != network.host_veth(ctx, "b", "default")
    mac = network.mac_for(ctx, "web", "default")
    assert mac.startswith("02:") and len(mac.split(":")) == 6
    assert ctx.table == "corral_abc123"


def test_plan_and_publish_parsing() -> None:
    spec = network.plan(None, None, None, ["8080:80", "5353:53/udp"], True, ["1.1.1.1"], None)
    assert spec["mode"] == "bridge" and spec["networks"] == ["default"]
    assert spec["publish"] == [{"host_port": 8080, "port": 80, "proto": "tcp"},
                               {"host_port": 5353, "port": 53, "proto": "udp"}]
    assert network.plan("none", None, None, None, False, None, None) == {"mode": "none"}
    for bad in (("bogus", None, None), ("bridge", "1.2.3", None), ("none", "10.0.0.2", None)):
        with pytest.raises(ValidationError):
            network.plan(bad[0], bad[1], bad[2], None, False, None, None)
    for text in ("80", "0:80", "8080:80/sctp", "a:b", "70000:80"):
        with pytest.raises(ValidationError):
            network.parse_publish(text)


def test_nft_ruleset_shape() -> None:
    cmds = nft.build_ruleset("corral_t", [{"bridge": "crt0", "subnet": "10.200.1.0/24"}],
                             [{"proto": "tcp", "host_port": 8080, "addr": "10.200.1.2",
                               "port": 80, "subnet": "10.200.1.0/24"}])
    assert cmds[0] == {"add": {"table": {"family": "inet", "name": "corral_t"}}}
    rules = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    assert {r["table"] for r in rules} == {"corral_t"}
    masq = [r for r in rules if r["chain"] == "postrouting" and
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "crt0"}}
            in r["expr"]]
    assert masq and masq[0]["expr"][-1] == {"masquerade": None}
    dnats = [r for r in rules if r["expr"][-1].get("dnat")]
    assert {r["chain"] for r in dnats} == {"prerouting", "output"}
    assert dnats[0]["expr"][-1]["dnat"] == {"family": "ip", "addr": "10.200.1.2", "port": 80}
    iso = nft.build_isolation("corral_t", ["vc1"])
    assert iso[0] == {"add": {"table": {"family": "bridge", "name": "corral_t"}}}
    assert all(r["add"]["rule"]["expr"][-1] == {"drop": None} for r in iso[2:])


def test_guest_files() -> None:
    state = {"interfaces": [{"ip": "10.200.1.2/24", "ip6": "fd00::102/64"}],
             "nameservers": ["10.0.0.53"], "searchdomains": ["example.test"]}
    files = network.guest_files(state, "web.example.test")
    assert b"10.200.1.2\tweb.example.test web" in files["/etc/hosts"]
    assert files["/etc/resolv.conf"] == b"nameserver 10.0.0.53\nsearch example.test\n"
    assert "/etc/resolv.conf" not in network.guest_files({}, "x")


def test_host_nameservers_drop_loopback(tmp_path: Path) -> None:
    f = tmp_path / "resolv.conf"
    f.write_text("nameserver 127.0.0.53\nnameserver 10.1.1.1\n# c\nnameserver ::1\n")
    assert network.host_nameservers(str(f)) == ["10.1.1.1"]


def test_a_bridge_mac_is_its_own_fixed_and_locally_administered() -> None:
    from corral.network.netlink import bridge_mac

    mac = bridge_mac("cr1a2b3c0")
    assert mac == bridge_mac("cr1a2b3c0") != bridge_mac("cr1a2b3c1")
    octets = [int(o, 16) for o in mac.split(":")]
    assert len(octets) == 6
    assert octets[0] & 0x02 and not octets[0] & 0x01  # locally administered, unicast


@pytest.mark.parametrize("subnet", ["10.200.0.0/24", "10.201.7.0/24", "192.168.4.0/22",
                                    "10.9.0.0/30", "10.9.0.0/31"])
def test_the_first_free_address_is_what_ipaddress_says(subnet: str) -> None:
    """allocate's arithmetic against the same rule in ipaddress's terms: the first
    host that is neither the gateway (the first host), the network, the broadcast
    address nor leased."""
    net = ipaddress.ip_network(subnet)
    hosts = [str(h) for h in net.hosts()]
    reserved = {hosts[0], str(net.network_address), str(net.broadcast_address)}
    for used in (set(), set(hosts[1:4]), set(hosts[1:])):
        free = [h for h in hosts if h not in used and h not in reserved]
        for given in (subnet, net):
            if not free:
                with pytest.raises(ConflictError):
                    ipam.allocate(given, used, None)
            else:
                assert ipam.allocate(given, used, None) == free[0]


def test_a_containers_ipv6_address_is_its_prefix_plus_its_ipv4_host_part() -> None:
    for prefix, v4 in (("fd00:ed8b:e9bf::/64", "10.201.191.7"), ("fd12:3456:789a::/64",
                                                                   "10.200.255.254")):
        expected = ipaddress.ip_network(prefix).network_address + \
            (int(ipaddress.ip_address(v4)) & 0xFFFF)
        assert ipam.v6_for(prefix, v4) == str(expected)
        assert ipam.v6_for(ipaddress.ip_network(prefix), v4) == str(expected)


def test_only_names_of_our_veths_count_as_ours() -> None:
    ctx = network.NetContext("/tmp/x", "ab12cd", default_root=False)
    assert network._is_host_veth_name(network.host_veth(ctx, "web1", "default"))
    for other in ("eth1", "vcabc", "vc0123456789", "vcXYZ45678", "tap0123456", "veth1234ab"):
        assert not network._is_host_veth_name(other)
