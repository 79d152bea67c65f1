"""IP address management: a network's subnet, its gateway and per-container leases.

Pure functions decide; ``Leases`` persists them in a JSON file under the
state root, changed only under an flock, so concurrent creates never get the
same address.
"""

from __future__ import annotations

import os

from corral import store
from corral.errors import ConflictError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Any

# Candidate IPv4 subnets: 10.<x>.<y>.0/24 inside 10.200.0.0/13, started at a
# point derived from the state root so that roots rarely even try the same one.
# (ipaddress, with what it imports ~2 ms, is loaded by the functions that
# compute with it: a start of a container with its lease reads one record.)
POOL = "10.200.0.0/13"


def candidate_subnets(seed: int) -> list[ipaddress.IPv4Network]:
    import ipaddress

    subnets = list(ipaddress.ip_network(POOL).subnets(new_prefix=24))
    start = seed % len(subnets)
    return subnets[start:] + subnets[:start]


def pick_subnet(seed: int, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first candidate that overlaps none of ``taken`` (host routes, other networks)."""
    for net in candidate_subnets(seed):
        if not any(net.overlaps(t) for t in taken):
            return net
    raise ConflictError("no free /24 left in 10.200.0.0/13 for a container network",
                        hint="Give the network a subnet explicitly.")


def ula_prefix(seed: int) -> ipaddress.IPv6Network:
    """A unique-local /64 (RFC 4193) derived from the network's identity."""
    import ipaddress

    global_id = seed & 0xFFFFFFFFFF
    return ipaddress.ip_network(f"fd{global_id >> 32:02x}:{(global_id >> 16) & 0xFFFF:04x}:"
                                f"{global_id & 0xFFFF:04x}::/64")


def gateway(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(next(subnet.hosts()))


def allocate(subnet: str | ipaddress.IPv4Network, used: set[str], wanted: str | None) -> str:
    """An address for a container: ``wanted`` if free and inside, else the first free one.

    The first free one by integer arithmetic: every new container's start
    (each `run --rm`) leases here, and ipaddress costs ~2 ms; it is loaded only
    to check a ``wanted`` address.  The network address, the gateway (its
    first host) and the broadcast address are never leased.
    """
    if wanted is not None:
        import ipaddress

        net = ipaddress.ip_network(subnet)
        reserved = {gateway(net), str(net.network_address), str(net.broadcast_address)}
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise ValidationError(f"invalid address '{wanted}'") from None
        if addr not in net:
            raise ValidationError(f"address {wanted} is outside the network's subnet {net}",
                                  hint=f"Choose an address in {net}, or --ip auto.")
        if str(addr) in used or str(addr) in reserved:
            raise ConflictError(f"address {wanted} is already in use",
                                hint="Choose another address, or --ip auto.")
        return str(addr)
    import _socket

    base, _, plen = str(subnet).partition("/")
    first = int.from_bytes(_socket.inet_aton(base), "big")
    for host in range(first + 2, first + (1 << (32 - int(plen))) - 1):
        addr = _socket.inet_ntoa(host.to_bytes(4, "big"))
        if addr not in used:
            return addr
    raise ConflictError(f"no free address left in {subnet}")


def v6_for(prefix: str | ipaddress.IPv6Network, v4: str) -> str:
    """The container's IPv6 address: the prefix plus its IPv4 host part (stable, unique).

    Byte arithmetic rather than ipaddress: this runs on every networked start.
    """
    import _socket

    net = int.from_bytes(_socket.inet_pton(_socket.AF_INET6, str(prefix).split("/")[0]), "big")
    host = int.from_bytes(_socket.inet_pton(_socket.AF_INET, v4)[2:], "big")
    return _socket.inet_ntop(_socket.AF_INET6, (net + host).to_bytes(16, "big"))


class Leases:
    """The JSON record of one network: subnet, gateway and leases, changed under a lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = store.locked(f"{path}.lock", f"network record {os.path.basename(path)}")

    def load(self) -> dict[str, Any]:
        try:
            return store.read_json(self.path)  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {}

    def save(self, record: dict[str, Any], *, durable: bool = True) -> None:
        store.write_json(self.path, record, durable=durable)
