"""nftables rules of one state root, built by pure functions, applied in one batch.

Everything Corral adds lives under one table name (``corral`` for the default
state root, ``corral_<id>`` for others): the ``inet`` table holds NAT, port
forwards and forwarding; a ``bridge`` table of the same name holds the
isolation of ``--isolated`` containers (frames switched between two ports of
one bridge never reach an inet hook).  Removing Corral's rules is deleting
that name in both families.  The ruleset is rebuilt from the networks' records and
replaced atomically (delete + add in one ``nft -j -f -`` transaction).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from corral.errors import CommandError, UnsupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _rule(table: str, chain: str, expr: list[dict[str, Any]]) -> dict[str, Any]:
    return {"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": expr}}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(proto: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": field}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _prefix(cidr: str) -> dict[str, Any]:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length)}}


def build_ruleset(table: str, networks: list[dict[str, Any]],
                  forwards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The whole table: NAT for every network, and port forwards.

    ``networks``: {"bridge": "corral0", "subnet": "10.200.3.0/24"}.
    ``forwards``: {"proto": "tcp", "host_port": 8080, "addr": "10.200.3.2", "port": 80}.
    """
    cmds: list[dict[str, Any]] = [
        {"add": {"table": {"family": "inet", "name": table}}},
        {"add": {"chain": {"family": "inet", "table": table, "name": "prerouting",
                           "type": "nat", "hook": "prerouting", "prio": -100,
                           "policy": "accept"}}},
        {"add": {"chain": {"family": "inet", "table": table, "name": "output", "type": "nat",
                           "hook": "output", "prio": -100, "policy": "accept"}}},
        {"add": {"chain": {"family": "inet", "table": table, "name": "postrouting",
                           "type": "nat", "hook": "postrouting", "prio": 100,
                           "policy": "accept"}}},
        {"add": {"chain": {"family": "inet", "table": table, "name": "forward",
                           "type": "filter", "hook": "forward", "prio": 0,
                           "policy": "accept"}}},
    ]
    for net in networks:
        subnet, bridge = net["subnet"], net["bridge"]
        if bridge is None:  # routed: no bridge to name, match the addresses instead
            for proto, net_ in (("ip", subnet), ("ip6", net.get("routed6"))):
                if not net_:
                    continue
                cmds.append(_rule(table, "postrouting", [
                    _match(_payload(proto, "saddr"), _prefix(net_)),
                    _match(_payload(proto, "daddr"), _prefix(net_), "!="),
                    {"masquerade": None}]))
                for field in ("saddr", "daddr"):
                    cmds.append(_rule(table, "forward", [_match(_payload(proto, field),
                                                                _prefix(net_)),
                                                         {"accept": None}]))
            continue
        # Traffic leaving the host from a container gets the host's address
        # (IPv4, and IPv6 from the network's unique-local prefix).
        cmds.append(_rule(table, "postrouting", [
            _match(_payload("ip", "saddr"), _prefix(subnet)),
            _match(_meta("oifname"), bridge, "!="),
            {"masquerade": None}]))
        if net.get("subnet6"):
            cmds.append(_rule(table, "postrouting", [
                _match(_payload("ip6", "saddr"), _prefix(net["subnet6"])),
                _match(_meta("oifname"), bridge, "!="),
                {"masquerade": None}]))
        # Forwarded traffic of the containers is accepted even where the host's
        # own firewall drops forwarding by default.
        for direction in ("iifname", "oifname"):
            cmds.append(_rule(table, "forward", [_match(_meta(direction), bridge),
                                                 {"accept": None}]))
        # Port forwards reached from the host's loopback arrive from 127.0.0.1:
        # give them the gateway's address so the container can answer.
        cmds.append(_rule(table, "postrouting", [
            _match(_payload("ip", "saddr"), _prefix("127.0.0.0/8")),
            _match(_meta("oifname"), bridge),
            {"masquerade": None}]))
    for fw in forwards:
        dnat = {"dnat": {"family": "ip", "addr": fw["addr"], "port": fw["port"]}}
        port_match = _match(_payload(fw["proto"], "dport"), fw["host_port"])
        proto_match = _match(_meta("l4proto"), fw["proto"])
        # From other hosts and namespaces (prerouting) and from the host itself
        # (output: locally generated packets never pass prerouting).
        cmds.append(_rule(table, "prerouting", [
            _match(_meta("nfproto"), "ipv4"), proto_match, port_match,
            _match({"fib": {"flags": ["daddr"], "result": "type"}}, "local"), dnat]))
        cmds.append(_rule(table, "output", [
            _match(_meta("nfproto"), "ipv4"), proto_match, port_match,
            _match({"fib": {"flags": ["daddr"], "result": "type"}}, "local"), dnat]))
        # A container reaching another through the host's address comes back in
        # on the bridge (hairpin): masquerade so the answer returns through us.
        cmds.append(_rule(table, "postrouting", [
            _match(_payload("ip", "daddr"), fw["addr"]), proto_match,
            _match(_payload(fw["proto"], "dport"), fw["port"]),
            _match({"ct": {"key": "status"}}, "dnat", "in"),
            _match(_payload("ip", "saddr"), _prefix(fw["subnet"])),
            {"masquerade": None}]))
    return cmds


def build_isolation(table: str, isolated: list[str]) -> list[dict[str, Any]]:
    """Drop frames bridged to or from an isolated container's port.  Its traffic to
    the host (gateway) and beyond is routed, not bridged, so it is untouched."""
    cmds: list[dict[str, Any]] = [
        {"add": {"table": {"family": "bridge", "name": table}}},
        {"add": {"chain": {"family": "bridge", "table": table, "name": "forward",
                           "type": "filter", "hook": "forward", "prio": 0,
                           "policy": "accept"}}},
    ]
    for direction in ("iifname", "oifname"):
        cmds.append({"add": {"rule": {"family": "bridge", "table": table, "chain": "forward",
                                      "expr": [_match(_meta(direction), {"set": isolated}),
                                               {"drop": None}]}}})
    return cmds


def _nft(batch: list[dict[str, Any]]) -> None:
    if shutil.which("nft") is None:
        raise UnsupportedError("nft is not installed", hint="apt-get install nftables")
    doc = json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *batch]})
    p = subprocess.run(["nft", "-j", "-f", "-"], input=doc, capture_output=True, text=True)
    if p.returncode != 0:
        raise CommandError(f"nft refused Corral's rules: {p.stderr.strip()[-400:]}")


def table_exists(table: str, family: str = "inet") -> bool:
    p = subprocess.run(["nft", "-j", "list", "table", family, table], capture_output=True)
    return p.returncode == 0


def _deletes(table: str) -> list[dict[str, Any]]:
    return [{"delete": {"table": {"family": fam, "name": table}}}
            for fam in ("inet", "bridge") if table_exists(table, fam)]


def apply(table: str, networks: list[dict[str, Any]], forwards: list[dict[str, Any]],
          isolated: list[str] | None = None) -> None:
    """Replace the tables with the given rules in one transaction (delete them if empty)."""
    batch = _deletes(table)
    if networks:
        batch.extend(build_ruleset(table, networks, forwards))
        if isolated:
            batch.extend(build_isolation(table, sorted(isolated)))
    if batch:
        _nft(batch)


def delete(table: str) -> None:
    if shutil.which("nft"):
        batch = _deletes(table)
        if batch:
            _nft(batch)
