"""The capture reader's fast paths against the slow ones: fixed-offset frames against dpkt's
decoders (whole, truncated, IPv6, VLAN, non-IP), a torn classic pcap in either byte order, and
packets routed into flows per direction (a reused port, a missed SYN, both ends one address)."""

import struct

import dpkt
import pytest

from lab.wire.flows import C2S, S2C, Flow, extract_flows
from lab.wire.pcap import TCP, UDP, Capture, Packet, _add, _from_ethernet, _plain, read_capture

T0 = 1_800_000_000.0
A, B = bytes([10, 0, 0, 3]), bytes([10, 0, 0, 2])
A6, B6 = b"\xfd" + b"\x00" * 14 + b"\x03", b"\xfd" + b"\x00" * 14 + b"\x02"
SYN, ACK, FIN, PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH


def ether(ip, kind=dpkt.ethernet.ETH_TYPE_IP) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=kind, data=ip))


def tcp(payload=b"", flags=PSH | ACK, seq=7, ack=9, opts=b""):
    segment = dpkt.tcp.TCP(sport=50000, dport=19200, seq=seq, ack=ack, flags=flags, opts=opts, data=payload)
    segment.off = (20 + len(opts)) // 4
    return segment


def udp(payload=b""):
    return dpkt.udp.UDP(sport=40000, dport=19200, ulen=8 + len(payload), data=payload)


def ipv4(transport, **fields):
    number = dpkt.ip.IP_PROTO_TCP if isinstance(transport, dpkt.tcp.TCP) else dpkt.ip.IP_PROTO_UDP
    ip = dpkt.ip.IP(src=A, dst=B, p=fields.pop("p", number), data=transport, **fields)
    ip.len = len(bytes(ip))
    return ip


def ipv6(transport):
    number = dpkt.ip.IP_PROTO_TCP if isinstance(transport, dpkt.tcp.TCP) else dpkt.ip.IP_PROTO_UDP
    ip = dpkt.ip6.IP6(src=A6, dst=B6, nxt=number, hlim=64, data=transport)
    ip.plen = len(bytes(transport))
    return ip


def frames() -> dict[str, bytes]:
    df = ipv4(tcp(b"dont fragment"))
    df.df = 1
    fragment = ipv4(udp(b"first part"))
    fragment.mf = 1
    later = ipv4(udp(b"later part"))
    later.offset = 1480
    options = dpkt.ip.IP(src=A, dst=B, p=dpkt.ip.IP_PROTO_UDP, opts=b"\x01\x01\x01\x00", data=udp(b"opt"))
    options.hl, options.len = 6, len(bytes(options))
    short_total = ipv4(tcp(b"more than the IP header says"))
    short_total.len = 20 + 20 + 3
    vlan = ether(ipv4(tcp(b"tagged")))
    return {
        "tcp": ether(ipv4(tcp(b"hello"))),
        "tcp, seq about to wrap": ether(ipv4(tcp(b"wrap", seq=2**32 - 2, ack=2**32 - 1))),
        "tcp SYN with options": ether(ipv4(tcp(flags=SYN, opts=b"\x02\x04\x05\xb4\x01\x01\x04\x02"))),
        "tcp, don't fragment": ether(df),
        "tcp, IP total length shorter than the frame": ether(short_total),
        "udp": ether(ipv4(udp("你好".encode()))),
        "udp, empty, padded to Ethernet's minimum": ether(ipv4(udp())) + b"\x00" * 18,
        "udp, first fragment": ether(fragment),
        "udp, later fragment": ether(later),
        "udp, IP options": ether(options),
        "icmp": ether(ipv4(udp(b"ping"), p=dpkt.ip.IP_PROTO_ICMP)),
        "ipv6 tcp": ether(ipv6(tcp(b"six")), dpkt.ethernet.ETH_TYPE_IP6),
        "ipv6 udp": ether(ipv6(udp(b"six")), dpkt.ethernet.ETH_TYPE_IP6),
        "vlan tcp": vlan[:12] + b"\x81\x00\x00\x05" + vlan[12:],
        "arp": ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, dpkt.ethernet.ETH_TYPE_ARP),
    }


PLAIN = {"tcp", "tcp, seq about to wrap", "tcp SYN with options", "tcp, don't fragment",
         "tcp, IP total length shorter than the frame", "udp", "udp, empty, padded to Ethernet's minimum"}


@pytest.mark.parametrize("name", sorted(frames()))
def test_the_shortcut_reads_what_dpkt_reads_or_leaves_the_frame_to_it(name):
    data = frames()[name]
    for length in range(len(data) + 1):  # every truncation too: a snapshot length cuts frames
        cut = data[:length]
        fast, slow = [], Capture()
        taken = _plain(fast.append, T0, cut)
        _add(slow, _from_ethernet, T0, cut)
        if taken:
            assert fast == slow.packets, (name, length)
        if length == len(data):
            assert taken == (name in PLAIN)
            # A later fragment carries no transport header: like ICMP and ARP, not a packet here.
            assert len(slow.packets) == (0 if name in ("icmp", "arp", "udp, later fragment") else 1)


def test_read_capture_gives_what_dpkt_alone_gives(tmp_path):
    everything = list(frames().values())
    everything += [data[:cut] for data in everything for cut in (13, 20, 40, 53)]
    path = tmp_path / "mixed.pcap"
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, data in enumerate(everything):
            writer.writepkt(data, ts=T0 + i / 1000)
    slow = Capture()
    with open(path, "rb") as fh:
        for ts, data in dpkt.pcap.Reader(fh):
            slow.records += 1
            _add(slow, _from_ethernet, ts, data)
    read = read_capture(path)
    assert read.damage is None
    assert (read.records, read.other, read.undecodable) == (slow.records, slow.other, slow.undecodable)
    assert read.packets == slow.packets


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_torn_last_record_is_found_in_either_byte_order(tmp_path, order):
    records = [ether(ipv4(udp(b"x" * n))) for n in (5, 6, 7)]
    data = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(records):
        data += struct.pack(order + "IIII", 1_800_000_000 + i, 0, len(frame), len(frame)) + frame
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    assert read_capture(path).records == 3 and read_capture(path).damage is None
    path.write_bytes(data[:-4])
    read = read_capture(path)
    assert read.records == 2 and len(read.packets) == 2
    last = len(data) - 16 - len(records[2])
    assert read.damage == {"after_packets": 2, "offset": last,
                           "detail": f"the last record is torn: {len(records[2]) - 4} of {len(records[2])} bytes"}


# Each kind of classic pcap dpkt reads: (magic, byte order, record header layout, ticks per second).
CLASSIC = {
    "micro, big-endian": (dpkt.pcap.TCPDUMP_MAGIC, ">", "IIII", 10**6),
    "micro, little-endian": (dpkt.pcap.TCPDUMP_MAGIC, "<", "IIII", 10**6),
    "nano, big-endian": (dpkt.pcap.TCPDUMP_MAGIC_NANO, ">", "IIII", 10**9),
    "nano, little-endian": (dpkt.pcap.TCPDUMP_MAGIC_NANO, "<", "IIII", 10**9),
    "modified pcap": (dpkt.pcap.MODPCAP_MAGIC, ">", "IIIIIHBB", 10**6),
}


@pytest.mark.parametrize("kind", CLASSIC)
def test_each_kind_of_classic_pcap_gives_the_records_dpkts_reader_gives(tmp_path, kind):
    magic, order, layout, ticks = CLASSIC[kind]
    everything = list(frames().values())
    data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(everything):
        extra = (1, 0x0800, 0, 0) if len(layout) > 4 else ()
        data += struct.pack(order + layout, 1_800_000_000 + i, 1000 * i + 7, len(frame), len(frame), *extra) + frame
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    slow = Capture()
    with open(path, "rb") as fh:
        for ts, frame in dpkt.pcap.Reader(fh):
            slow.records += 1
            _add(slow, _from_ethernet, float(ts), frame)  # dpkt gives nanosecond times as Decimal
    read = read_capture(path)
    assert read.damage is None and read.records == len(everything) == slow.records
    assert (read.other, read.undecodable) == (slow.other, slow.undecodable)
    assert read.packets == slow.packets
    assert read.packets[1].ts == 1_800_000_001 + 1007 / ticks


def packet(src, dst, flags=0, seq=0, ack=0, payload=b"", ts=0.0, proto=TCP):
    return Packet(T0 + ts, proto, src, dst, payload, flags, seq, ack)


def test_packets_are_routed_into_flows_per_direction():
    c, s, other = "10.0.0.3:50000", "10.0.0.2:19200", "10.0.0.9:1"
    packets = [
        packet(c, s, SYN, 100, ts=0.0), packet(s, c, SYN | ACK, 500, 101, ts=0.001), packet(c, s, ACK, 101, 501, ts=0.002),
        packet(c, s, PSH | ACK, 101, 501, b"abc", ts=0.003), packet(c, s, PSH | ACK, 101, 501, b"abc", ts=0.004),
        packet(c, s, payload=b"dgram", ts=0.005, proto=UDP),
        packet(c, s, FIN | ACK, 104, 501, ts=0.006), packet(s, c, FIN | ACK, 501, 105, ts=0.007),
        packet(c, s, SYN, 9000, ts=1.0),  # the same port again, after both FINs: a new connection
        packet(other, s, SYN | ACK, 70, 31, ts=2.0),  # its SYN was missed: `s` opened it
        packet(other, other, PSH | ACK, 1000, 0, b"self", ts=3.0),  # both ends one address
        packet(other, other, PSH | ACK, 1004, 0, b"more", ts=3.1),
    ]
    flows = extract_flows(packets)
    assert [(f.proto, f.client, f.server, len(f.packets)) for f in flows] == [
        (TCP, c, s, 7), (UDP, c, s, 1), (TCP, c, s, 1), (TCP, s, other, 1), (TCP, other, other, 2)]
    first = flows[0]
    assert [(p.dir, p.flags, p.seq, p.ack, p.len, p.retrans) for p in first.packets] == [
        (C2S, "S", 0, 0, 0, False), (S2C, "SA", 0, 1, 0, False), (C2S, "A", 1, 1, 0, False),
        (C2S, "PA", 1, 1, 3, False), (C2S, "PA", 1, 1, 3, True),
        (C2S, "FA", 4, 1, 0, False), (S2C, "FA", 1, 5, 0, False)]
    assert first.retransmissions == {C2S: 1, S2C: 0} and first.handshake_ms == 2.0
    assert first.fin == {C2S: T0 + 0.006, S2C: T0 + 0.007}
    assert flows[3].synack_ts == T0 + 2.0 and flows[3].packets[0].dir == S2C
    assert [(p.dir, p.seq) for p in flows[4].packets] == [(C2S, 1), (C2S, 5)]  # no SYN: first byte is 1
    one_by_one = Flow(TCP, c, s)
    for p in packets[:5] + packets[6:8]:
        one_by_one.add(p)
    assert one_by_one.packets == first.packets and one_by_one.retransmissions == first.retransmissions


@pytest.mark.parametrize("chunk", [1, 7, 16, 61, 1 << 20])
def test_a_capture_read_a_chunk_at_a_time_gives_the_same_packets_and_damage(tmp_path, monkeypatch, chunk):
    """The reader holds one chunk of the file at a time (issue 8): records that straddle chunks,
    and a torn last record or header, read the same whatever the chunk's size."""
    import lab.wire.pcap as pcap

    records = [ether(ipv4(udp(b"x" * n))) for n in (5, 60, 7, 200, 0)]
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(records):
        data += struct.pack("<IIII", 1_800_000_000 + i, i, len(frame), len(frame)) + frame
    path = tmp_path / "x.pcap"
    whole = {}
    for cut in (0, 4, 12, 20):
        path.write_bytes(data[:len(data) - cut])
        whole[cut] = read_capture(path)
    monkeypatch.setattr(pcap, "CHUNK", chunk)
    for cut, expected in whole.items():
        path.write_bytes(data[:len(data) - cut])
        read = read_capture(path)
        assert (read.packets, read.records, read.damage) == (expected.packets, expected.records, expected.damage)
    assert whole[0].records == 5 and whole[0].damage is None
    assert whole[4].records == 4 and "torn" in whole[4].damage["detail"]


def test_the_reader_hands_on_packets_a_batch_at_a_time(tmp_path, monkeypatch):
    """iter_capture gives the packets in batches of at most BATCH, the counts complete at the end."""
    import lab.wire.pcap as pcap

    monkeypatch.setattr(pcap, "BATCH", 3)
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i in range(10):
        frame = ether(ipv4(udp(bytes([i]))))
        data += struct.pack("<IIII", 1_800_000_000 + i, 0, len(frame), len(frame)) + frame
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    capture = Capture()
    sizes = [len(batch) for batch in pcap.iter_capture(path, capture)]
    assert sizes == [3, 3, 3, 1] and capture.records == 10 and capture.packets == []
