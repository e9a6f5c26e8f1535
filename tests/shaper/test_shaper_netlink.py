"""NFQUEUE message encoding and decoding, and the packet changes the queue makes (pure)."""

from __future__ import annotations

import random
import socket
import struct
import sys

import pytest

from lab.shaper import netlink
from lab.shaper.packetqueue import corrupt_bit, ipv4_destination


def _split(data: bytes):
    (kind, seq, body), = netlink.parse_messages(data)
    return kind, seq, body[4:], body[:4]


def test_config_command_packs_and_parses_back():
    data = netlink.config_cmd(7, netlink.NFQNL_CFG_CMD_BIND, seq=42)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", data)
    assert length == len(data) == 16 + 4 + 8
    assert kind == (3 << 8) | 2 and flags == netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
    assert (seq, pid) == (42, 0)
    _kind, _seq, attrs, nfgen = _split(data)
    assert nfgen == bytes([socket.AF_UNSPEC, 0, 0, 7])  # queue number big-endian
    assert netlink.parse_attrs(attrs) == {netlink.NFQA_CFG_CMD: bytes([1, 0, 0, socket.AF_INET])}


def test_config_params_set_copy_packet_maxlen_and_fail_open():
    _kind, _seq, attrs, _ = _split(netlink.config_params(300, copy_range=0xFFFF, maxlen=1024))
    parsed = netlink.parse_attrs(attrs)
    assert parsed[netlink.NFQA_CFG_PARAMS] == b"\x00\x00\xff\xff\x02"  # range, COPY_PACKET
    assert parsed[netlink.NFQA_CFG_QUEUE_MAXLEN] == struct.pack("!I", 1024)
    assert parsed[netlink.NFQA_CFG_FLAGS] == parsed[netlink.NFQA_CFG_MASK] == struct.pack("!I", 1)


def test_verdict_with_and_without_a_new_payload():
    kind, _seq, attrs, nfgen = _split(netlink.verdict(8, 0x01020304, netlink.NF_DROP))
    assert kind == (3 << 8) | 1 and nfgen[2:] == b"\x00\x08"
    assert netlink.parse_attrs(attrs) == {netlink.NFQA_VERDICT_HDR: b"\0\0\0\0\x01\x02\x03\x04"}
    payload = b"\x45" + b"\x00" * 20  # 21 bytes: the attribute is padded to 4
    data = netlink.verdict(8, 9, netlink.NF_ACCEPT, payload)
    assert len(data) % 4 == 0
    parsed = netlink.parse_attrs(_split(data)[2])
    assert parsed[netlink.NFQA_VERDICT_HDR] == struct.pack("!II", 1, 9)
    assert parsed[netlink.NFQA_PAYLOAD] == payload


@pytest.mark.skipif(sys.byteorder != "little", reason="the hand-written message is in little-endian host order")
def test_parses_a_packet_message_written_by_hand():
    # One NFQNL_MSG_PACKET as the kernel sends it: netlink header (host order), nfgenmsg
    # (AF_INET, v0, queue 7), PACKET_HDR (id 5, ETH_P_IP, hook 3 = LOCAL_OUT), MARK 0x2a,
    # PAYLOAD 5 bytes (padded), and an attribute we do not know (type 11 with the nested flag).
    message = bytes.fromhex(
        "3c000000" "0003" "0000" "00000000" "00000000"   # len 60, type 0x300, flags, seq, pid
        "02000007"                                       # nfgenmsg
        "0b000100" "00000005" "0800" "03" "00"           # NFQA_PACKET_HDR, padded
        "08000300" "0000002a"                            # NFQA_MARK
        "09000a00" "4500001c" "ff" "000000"              # NFQA_PAYLOAD, padded
        "08000b80" "deadbeef"                            # nested attr 11
    )
    (kind, _seq, body), = netlink.parse_messages(message)
    assert kind == (netlink.NFNL_SUBSYS_QUEUE << 8) | netlink.NFQNL_MSG_PACKET
    packet = netlink.parse_packet(body)
    assert packet is not None
    assert (packet.packet_id, packet.hw_protocol, packet.hook, packet.queue_num, packet.mark) == (5, 0x0800, 3, 7, 42)
    assert packet.payload == bytes.fromhex("4500001cff")


def test_two_messages_in_one_datagram_and_a_truncated_tail():
    one = netlink.verdict(1, 1, netlink.NF_ACCEPT)
    two = netlink.verdict(1, 2, netlink.NF_DROP)
    assert [m[0] for m in netlink.parse_messages(one + two + two[:10])] == [0x301, 0x301]
    assert netlink.parse_attrs(netlink.attr(2, b"abcd") + b"\x40\x00\x01\x00") == {2: b"abcd"}


def test_error_message_code():
    assert netlink.error_code(struct.pack("=i", -1) + b"\0" * 16) == 1
    assert netlink.error_code(struct.pack("=i", 0)) == 0


def _udp_packet(payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 1, 0, 64, 17, 0,
                         socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    return header + struct.pack("!HHHH", 4000, 5000, 8 + len(payload), 0x1234) + payload


def _tcp_packet(payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + len(payload), 1, 0, 64, 6, 0,
                         socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    tcp = struct.pack("!HHIIBBHHH", 4000, 5000, 1, 1, 5 << 4, 0x10, 100, 0xABCD, 0)
    return header + tcp + payload


def _diff(a: bytes, b: bytes) -> list[int]:
    return [i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y]


@pytest.mark.parametrize("make,payload_at", [(_udp_packet, 28), (_tcp_packet, 40)])
def test_corrupt_flips_one_bit_in_the_transport_payload(make, payload_at):
    rng = random.Random(1)
    original = make(b"hello world")
    for _ in range(50):
        changed = corrupt_bit(original, rng)
        (index,) = _diff(original, changed)
        assert index >= payload_at and len(changed) == len(original)
        assert bin(original[index] ^ changed[index]).count("1") == 1


def test_corrupt_without_payload_hits_the_checksum_and_spares_the_ip_header():
    rng = random.Random(2)
    ack = _tcp_packet(b"")
    assert _diff(ack, corrupt_bit(ack, rng))[0] in (36, 37)
    assert corrupt_bit(b"\x45\x00", rng) == b"\x45\x00"  # too short to be a packet: unchanged


def test_ipv4_destination_is_read_from_the_header():
    assert ipv4_destination(_udp_packet(b"x")) == "10.0.0.2"
    assert ipv4_destination(b"\x60" + b"\0" * 39) is None
