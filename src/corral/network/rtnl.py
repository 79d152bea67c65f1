"""The few rtnetlink requests of a container's start, encoded without pyroute2.

pyroute2 is Corral's netlink library, but importing it costs ~120 ms (its
package imports everything it has, from ssl to nftables), two thirds of a
single networked ``corral start``.  A start needs seven fixed requests: a
veth pair, links up, addresses, default routes; a stop at most one, the
veth's removal.  They are laid out here
with ``struct`` after rtnetlink(7) and the kernel's uapi headers
(linux/netlink.h, rtnetlink.h, if_link.h, veth.h, if_addr.h); everything
else (bridges, queries, tc, routed mode) stays with pyroute2.  The tests
check what the kernel made of them (tests/integration/test_network.py).
"""

from __future__ import annotations

import _socket
import os
import struct

from corral.errors import KernelError

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_PID = 1, 3, 10, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_AF_SPEC, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 26, 8, 1
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02
RTA_GATEWAY = 5
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg
_IFADDR = struct.Struct("=BBBBI")  # struct ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg
_NLMSG = struct.Struct("=IHHII")  # struct nlmsghdr


def _attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes (the length excludes the padding)."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _family(address: str) -> tuple[int, bytes]:
    family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
    return family, _socket.inet_pton(family, address)


class Requests:
    """Requests for one netlink write, numbered from 1, each acknowledged."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def _add(self, kind: int, flags: int, body: bytes) -> None:
        seq = len(self.parts) + 1
        self.parts.append(_NLMSG.pack(_NLMSG.size + len(body), kind,
                                      flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)

    def veth(self, name: str, *, peer: str, peer_index: int, peer_mac: str, peer_netns_pid: int,
             master: int | None = None, up: bool = True) -> None:
        """``name`` here, its peer born in the network namespace of a process."""
        mac = bytes.fromhex(peer_mac.replace(":", ""))
        peer_msg = (_IFINFO.pack(0, 0, peer_index, 0, 0) + _attr(IFLA_IFNAME, peer.encode() + b"\0")
                    + _attr(IFLA_ADDRESS, mac)
                    + _attr(IFLA_NET_NS_PID, struct.pack("=I", peer_netns_pid)))
        info = (_attr(IFLA_INFO_KIND, b"veth\0")
                + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_msg)))
        body = _IFINFO.pack(0, 0, 0, IFF_UP if up else 0, IFF_UP if up else 0) \
            + _attr(IFLA_IFNAME, name.encode() + b"\0")
        if master is not None:
            body += _attr(IFLA_MASTER, struct.pack("=I", master))
        body += _attr(IFLA_LINKINFO, info)
        self._add(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def link_up(self, index: int, name: str | None = None) -> None:
        """Up, by index, or by ``name`` when the index is not known (0)."""
        body = _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)
        if name is not None:
            body += _attr(IFLA_IFNAME, name.encode() + b"\0")
        self._add(RTM_NEWLINK, 0, body)

    def no_ipv6_addresses(self, name: str) -> None:
        """No address of its own for the IPv6 of link ``name``, not even a
        link-local one ("ip link set NAME addrgenmode none"); before it is up.
        (The kernel refuses the attribute on a link being created.)"""
        spec = _attr(IFLA_AF_SPEC, _attr(_socket.AF_INET6, _attr(
            IFLA_INET6_ADDR_GEN_MODE, bytes([IN6_ADDR_GEN_MODE_NONE]))))
        self._add(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0)
                  + _attr(IFLA_IFNAME, name.encode() + b"\0") + spec)

    def delete_link(self, name: str) -> None:
        """Remove link ``name`` (a veth takes its peer with it)."""
        self._add(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0)
                  + _attr(IFLA_IFNAME, name.encode() + b"\0"))

    def address(self, index: int, cidr: str) -> None:
        """An address; IPv6 ones without duplicate detection (usable at once)."""
        addr, _, plen = cidr.partition("/")
        family, raw = _family(addr)
        flags = IFA_F_NODAD if family == _socket.AF_INET6 else 0
        body = (_IFADDR.pack(family, int(plen), flags, RT_SCOPE_UNIVERSE, index)
                + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
                + _attr(IFA_FLAGS, struct.pack("=I", flags)))
        self._add(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def default_route(self, gateway: str) -> None:
        family, raw = _family(gateway)
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE,
                           RTN_UNICAST, 0) + _attr(RTA_GATEWAY, raw)
        self._add(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)

    def encode(self) -> bytes:
        return b"".join(self.parts)

    def send(self, what: str, *, tolerate: tuple[int, ...] = ()) -> None:
        """Send them in one write on a netlink socket of the calling thread's
        network namespace; raise for the first that failed with an errno not in
        ``tolerate``.

        The kernel runs the messages of one write in order and acknowledges
        each: one round trip instead of one per request.
        """
        expected = set(range(1, len(self.parts) + 1))
        first_error = 0
        # _socket, the C module: socket.py would import enum and selectors (~3 ms).
        sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                              _socket.NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            sock.settimeout(10)  # the kernel answers at once; never hang a start on it
            sock.sendto(self.encode(), (0, 0))
            while expected:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    raise KernelError(f"{what}: no answer from the kernel") from None
                off = 0
                while off + _NLMSG.size <= len(data):
                    length, kind, _flags, seq, _pid = _NLMSG.unpack_from(data, off)
                    if kind == NLMSG_ERROR:  # an acknowledgement: error 0 if none
                        code = -struct.unpack_from("=i", data, off + _NLMSG.size)[0]
                        expected.discard(seq)
                        if code and code not in tolerate and not first_error:
                            first_error = code
                    off += max((length + 3) & ~3, _NLMSG.size)
        finally:
            sock.close()
        if first_error:
            raise KernelError(f"{what}: {os.strerror(first_error)}", errno=first_error)
