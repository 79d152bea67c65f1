"""The start path's hand-encoded rtnetlink requests are well-formed netlink messages."""

from __future__ import annotations

import struct

from corral.network.rtnl import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    RTM_DELLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    Requests,
)


def _messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out, off = [], 0
    while off < len(data):
        length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        assert length >= 16 and length % 4 == 0
        out.append((kind, flags, seq, data[off + 16:off + length]))
        off += length
    assert off == len(data)
    return out


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off < len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        out[kind] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def test_requests_are_numbered_acknowledged_and_aligned() -> None:
    r = Requests()
    r.veth("vhost0", master=7, peer="eth0", peer_index=2, peer_mac="02:00:00:00:00:01",
           peer_netns_pid=1234)
    r.link_up(2)
    r.address(2, "10.0.0.2/24")
    r.address(2, "fd00::2/64")
    r.default_route("10.0.0.1")
    msgs = _messages(r.encode())
    assert [m[2] for m in msgs] == [1, 2, 3, 4, 5]
    assert all(m[1] & (NLM_F_REQUEST | NLM_F_ACK) == NLM_F_REQUEST | NLM_F_ACK for m in msgs)
    kind, _flags, _seq, body = msgs[0]
    assert kind == RTM_NEWLINK
    attrs = _attrs(body[16:])
    assert attrs[3] == b"vhost0\0" and struct.unpack("=I", attrs[10])[0] == 7
    info = _attrs(attrs[18])
    assert info[1] == b"veth\0"
    peer = _attrs(_attrs(info[2])[1][16:])  # VETH_INFO_PEER: ifinfomsg, then attributes
    assert struct.unpack_from("=i", _attrs(info[2])[1], 4)[0] == 2  # the peer's index
    assert peer[3] == b"eth0\0" and peer[1] == bytes.fromhex("020000000001")
    assert struct.unpack("=I", peer[19])[0] == 1234
    kind, _flags, _seq, body = msgs[3]
    assert kind == RTM_NEWADDR and body[0] == 10 and body[1] == 64 and body[2] == 0x02


def test_a_link_is_removed_by_name() -> None:
    r = Requests()
    r.delete_link("vc0123456789")
    (kind, flags, seq, body), = _messages(r.encode())
    assert kind == RTM_DELLINK and seq == 1 and flags == NLM_F_REQUEST | NLM_F_ACK
    assert struct.unpack_from("=i", body, 4)[0] == 0  # by name, not index
    assert _attrs(body[16:])[3] == b"vc0123456789\0"
