"""The wire view on small captures made here: flows, messages matched with packets, where a round
trip was lost, and captures that are damaged, missing or off."""

import json

import dpkt
import pytest

from lab.expect import evaluate
from lab.logs import conversations_csv, join_views
from lab.scenario import Scenario
from lab.wire.file import read_wire_view, write_wire_view
from lab.wire.pcap import read_capture
from lab.wire.records import check_records, timeline_records, wire_timeline
from lab.wire.view import build_wire_view, iso

T0 = 1_800_000_000.0
CLIENT, SERVER = "10.0.0.3", "10.0.0.2"


def frame(src, sport, dst, dport, payload=b"", proto="udp", flags=0, seq=0, ack=0):
    if proto == "udp":
        transport = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        transport.ulen = 8 + len(payload)
        number = dpkt.ip.IP_PROTO_UDP
    else:
        transport = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, data=payload)
        number = dpkt.ip.IP_PROTO_TCP
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=number, data=transport)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def write_pcap(path, frames, writer=dpkt.pcap.Writer):
    with open(path, "wb") as fh:
        out = writer(fh)
        for ts, data in frames:
            out.writepkt(data, ts=ts)
    return path


def rec(t, service, proto, event, **fields):
    role = "server" if service == "server" else "client"
    return {"v": 1, "ts": iso(T0 + t), "host": service, "role": role, "service": service, "proto": proto,
            "event": event, **fields}


def udp_run(tmp_path):
    """client1 sends four UDP messages: one echoed, one whose echo never left the server, one
    whose echo crossed the wire but never reached the client, one that never left the client."""
    c, s = (CLIENT, 40000), (SERVER, 19200)
    frames = [
        (T0 + 1.000, frame(*c, *s, b"alpha")), (T0 + 1.001, frame(*s, *c, b"alpha")),
        (T0 + 2.000, frame(*c, *s, b"bravo")),
        (T0 + 3.000, frame(*c, *s, b"charlie")), (T0 + 3.001, frame(*s, *c, b"charlie")),
    ]
    (tmp_path / "capture").mkdir()
    write_pcap(tmp_path / "capture" / "lab.pcap", frames)
    events = [rec(0.999, "client1", "udp", "bound", local="0.0.0.0:40000", local_route=f"{CLIENT}:40000",
                  peer=f"{SERVER}:19200", session=0)]
    for t, seq, text in ((1.0001, 1, "alpha"), (2.0001, 2, "bravo"), (3.0001, 3, "charlie"), (4.0001, 4, "delta")):
        events.append(rec(t, "client1", "udp", "sent", seq=seq, bytes=len(text), text=text, session=0,
                          local="0.0.0.0:40000"))
    events.append(rec(1.002, "client1", "udp", "reply", seq=1, bytes=5, intact=True, rtt_ms=1.0, session=0))
    events.sort(key=lambda r: r["ts"])
    return events


def test_each_lost_udp_round_trip_says_where_it_was_lost(tmp_path):
    events = udp_run(tmp_path)
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    assert view["capture"]["status"] == "ok" and view["capture"]["packets"] == 5
    where = {m["seq"]: m["where"] for m in view["messages"]}
    assert where == {1: "ok", 2: "no-echo-on-wire", 3: "echo-not-received", 4: "request-not-on-wire"}
    (flow,) = view["flows"]
    assert flow["owner"] == {"client": "client1", "session": 0, "local": f"{CLIENT}:40000"}
    assert (flow["network"], flow["side"]) == ("lab", "server")
    assert flow["packets"] == {"c2s": 3, "s2c": 2} and flow["bytes"] == {"c2s": 17, "s2c": 12}
    assert [p["msg"] for p in flow["packets_list"]] == [1, 1, 2, 3, 3]
    (row,) = rows
    assert row.wire["wire_client"] == f"{CLIENT}:40000" and row.wire["wire_server"] == f"{SERVER}:19200"
    assert row.wire["lost_where"] == "request-not-on-wire:1 no-echo-on-wire:1 echo-not-received:1"
    assert row.wire["wire_flag"] == "sent-not-on-wire"  # a disagreement, flagged
    assert view["flags"][0]["kind"] == "sent-not-on-wire"
    csv_line = conversations_csv(rows).splitlines()[1]
    assert csv_line.endswith("request-not-on-wire:1 no-echo-on-wire:1 echo-not-received:1,sent-not-on-wire")


def test_wire_expectations_read_the_view(tmp_path):
    events = udp_run(tmp_path)
    view = build_wire_view(tmp_path, events, join_views(events), capture_on=True)
    checks = Scenario.model_validate({"name": "t", "description": "x", "expect": [
        {"check": "lost_where", "where": "no-echo-on-wire", "equals": 1},
        {"check": "lost_where", "where": "echo-not-received", "max": 0},
        {"check": "retransmissions", "proto": "tcp", "max": 0},
    ]}).expect
    results = evaluate(checks, events + check_records(view))
    assert [r.passed for r in results] == [True, False, False]  # no TCP flow: nothing to measure, no pass
    assert results[2].measured == "no data"


def tcp_frames():
    c, s = (CLIENT, 50000), (SERVER, 19200)
    syn, ack, psh, fin = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN
    return [
        (T0 + 1.000, frame(*c, *s, proto="tcp", flags=syn, seq=1000)),
        (T0 + 1.001, frame(*s, *c, proto="tcp", flags=syn | ack, seq=5000, ack=1001)),
        (T0 + 1.002, frame(*c, *s, proto="tcp", flags=ack, seq=1001, ack=5001)),
        (T0 + 1.010, frame(*c, *s, b"hello", proto="tcp", flags=psh, seq=1001, ack=5001)),
        (T0 + 1.210, frame(*c, *s, b"hello", proto="tcp", flags=psh, seq=1001, ack=5001)),  # retransmitted
        (T0 + 1.211, frame(*s, *c, b"hello", proto="tcp", flags=psh, seq=5001, ack=1006)),
        (T0 + 1.500, frame(*c, *s, b"world!", proto="tcp", flags=psh, seq=1006, ack=5006)),
        (T0 + 1.501, frame(*s, *c, b"world!", proto="tcp", flags=psh, seq=5006, ack=1012)),
        (T0 + 2.000, frame(*c, *s, proto="tcp", flags=fin | ack, seq=1012, ack=5012)),
        (T0 + 2.001, frame(*s, *c, proto="tcp", flags=fin | ack, seq=5012, ack=1013)),
    ]


def tcp_events():
    events = [rec(1.003, "client1", "tcp", "connected", local=f"{CLIENT}:50000", peer=f"{SERVER}:19200", session=0)]
    for t, seq, text in ((1.011, 1, "hello"), (1.5001, 2, "world!")):
        events.append(rec(t, "client1", "tcp", "sent", seq=seq, bytes=len(text), text=text, session=0))
        events.append(rec(t + 0.21 if seq == 1 else t + 0.002, "client1", "tcp", "reply", seq=seq, bytes=len(text),
                          intact=True, session=0))
    return sorted(events, key=lambda r: r["ts"])


def test_tcp_flow_handshake_retransmission_and_close(tmp_path):
    (tmp_path / "capture").mkdir()
    write_pcap(tmp_path / "capture" / "lab.pcap", tcp_frames())
    events = tcp_events()
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    (flow,) = view["flows"]
    assert flow["tcp"]["handshake_ms"] == pytest.approx(2.0, abs=0.01)
    assert flow["tcp"]["retransmissions"] == {"c2s": 1, "s2c": 0}
    assert [p["flags"] for p in flow["packets_list"]][:3] == ["S", "SA", "A"]
    assert [(p["seq"], p["len"], p["retrans"], p["msg"]) for p in flow["packets_list"] if p["len"]] == [
        (1, 5, False, 1), (1, 5, True, 1), (1, 5, False, 1), (6, 6, False, 2), (6, 6, False, 2)]
    assert [m["retransmissions"] for m in view["messages"]] == [1, 0]
    assert all(m["where"] == "ok" for m in view["messages"])
    wire = rows[0].wire
    assert (wire["retransmissions"], wire["fin"], wire["rst"], wire["wire_flag"]) == (1, "both", "", "ok")
    assert (wire["wire_packets_out"], wire["wire_packets_in"], wire["wire_bytes_out"], wire["wire_bytes_in"]) == (6, 4, 16, 11)
    results = evaluate(Scenario.model_validate({"name": "t", "description": "x", "expect": [
        {"check": "retransmissions", "min": 1}, {"check": "handshake_ms", "max_ms": 1.0}]}).expect,
        events + check_records(view))
    assert [r.passed for r in results] == [True, False]


def test_a_truncated_capture_keeps_the_flows_up_to_the_damage(tmp_path):
    (tmp_path / "capture").mkdir()
    path = write_pcap(tmp_path / "capture" / "lab.pcap", tcp_frames())
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # the run was killed while the last record was being written
    read = read_capture(path)
    assert read.records == 9 and read.damage["after_packets"] == 9 and "torn" in read.damage["detail"]
    events = tcp_events()
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    assert view["capture"]["status"] == "damaged" and "ends early" in view["capture"]["reason"]
    assert view["flows"][0]["packets"] == {"c2s": 6, "s2c": 3}  # the FIN back was in the torn record
    assert rows[0].wire["wire_flag"].startswith("capture-damaged")


def test_a_corrupt_record_header_stops_the_reading_there(tmp_path):
    path = write_pcap(tmp_path / "x.pcap", tcp_frames())
    data = bytearray(path.read_bytes())
    second = 24 + 16 + len(tcp_frames()[0][1])  # file header, first record
    data[second + 8:second + 12] = (0x7FFFFFF0).to_bytes(4, "little")  # an absurd captured length
    path.write_bytes(bytes(data))
    read = read_capture(path)
    assert read.records == 1 and read.damage is not None and read.damage["after_packets"] == 1


def test_pcapng_is_read_too(tmp_path):
    path = write_pcap(tmp_path / "x.pcapng", tcp_frames(), writer=dpkt.pcapng.Writer)
    read = read_capture(path)
    assert read.records == 10 and read.damage is None and len(read.packets) == 10


def test_not_a_capture_and_no_capture_still_give_a_view_that_says_why(tmp_path):
    events = tcp_events()
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=False)
    assert view["capture"]["status"] == "off" and "--no-capture" in view["capture"]["reason"]
    assert rows[0].wire == {"wire_flag": "no-capture"}
    assert view["messages"][0]["where"] == "ok"  # the client's own view still stands
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "lab.pcap").write_bytes(b"this is not a capture file")
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    assert view["capture"]["status"] == "missing" and "not a readable capture" in view["capture"]["reason"]
    assert rows[0].wire["wire_flag"] == "no-capture"
    (tmp_path / "capture" / "lab.pcap").unlink()
    view = build_wire_view(tmp_path, events, join_views(events), capture_on=True)
    assert view["capture"]["status"] == "missing" and "did not write one" in view["capture"]["reason"]
    result = evaluate(Scenario.model_validate({"name": "t", "description": "x", "expect": [
        {"check": "retransmissions", "max": 0}]}).expect, events + check_records(view))[0]
    assert not result.passed and "did not write one" in result.detail


def test_a_flow_no_program_claims_gets_its_own_row(tmp_path):
    (tmp_path / "capture").mkdir()
    stray = [(T0 + 5.0, frame("10.0.0.9", 33333, SERVER, 19200, b"who am I"))]
    write_pcap(tmp_path / "capture" / "lab.pcap", tcp_frames() + stray)
    events = tcp_events()
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    assert [r.client for r in rows] == ["client1", "?"]
    assert rows[1].flag == "wire-only" and rows[1].wire["wire_flag"] == "wire-only"
    assert rows[1].wire["wire_client"] == "10.0.0.9:33333"
    assert view["flags"] == [{"kind": "wire-only", "client": None, "proto": "udp", "address": "10.0.0.9:33333",
                              "flow": "udp 10.0.0.9:33333 10.0.0.2:19200", "network": "lab",
                              "detail": "a flow no client or server record claims"}]


def test_wire_json_round_trips_and_feeds_the_timeline(tmp_path):
    events = udp_run(tmp_path)
    view = build_wire_view(tmp_path, events, join_views(events), capture_on=True)
    write_wire_view(tmp_path, view)
    assert read_wire_view(tmp_path) == json.loads((tmp_path / "wire.json").read_text())
    lines = timeline_records(read_wire_view(tmp_path), client="client1")
    assert [r["event"] for r in lines].count("datagram") == 5
    assert [(r["seq"], r["reason"]) for r in lines if r["event"] == "lost"] == [
        (2, "no-echo-on-wire"), (3, "echo-not-received"), (4, "request-not-on-wire")]
    assert timeline_records(read_wire_view(tmp_path), client="client2") == []
    # Read as a stream, in time order: the same lines.
    assert list(wire_timeline(tmp_path, client="client1")) == sorted(lines, key=lambda r: r["ts"])
    assert list(wire_timeline(tmp_path, client="client2")) == []


def test_the_fixed_offset_shortcut_reads_what_dpkt_reads():
    from lab.wire.pcap import Capture, _add, _from_ethernet, _plain

    c, s = (CLIENT, 50000), (SERVER, 19200)
    with_options = dpkt.tcp.TCP(sport=50000, dport=19200, seq=7, ack=9, flags=dpkt.tcp.TH_SYN,
                                opts=b"\x02\x04\x05\xb4\x01\x01\x04\x02")  # MSS, SACK permitted
    with_options.off = (20 + 8) // 4
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 3]), dst=bytes([10, 0, 0, 2]), p=dpkt.ip.IP_PROTO_TCP, data=with_options)
    ip.len = len(bytes(ip))
    ip.df = 1
    frames = [
        frame(*c, *s, b"hello", proto="tcp", flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, seq=2**32 - 2, ack=5),
        frame(*s, *c, "你好".encode(), proto="udp"),
        frame(*c, *s, b"", proto="udp"),
        bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)),
    ]
    for data in frames:
        fast, slow = [], Capture()
        assert _plain(fast.append, T0, data)
        _add(slow, _from_ethernet, T0, data)
        assert fast == slow.packets
    options = dpkt.ip.IP(src=bytes([10, 0, 0, 3]), dst=bytes([10, 0, 0, 2]), p=dpkt.ip.IP_PROTO_UDP,
                         opts=b"\x01\x01\x01\x00", data=dpkt.udp.UDP(sport=1, dport=2, ulen=8))
    options.hl, options.len = 6, len(bytes(options))
    framed = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=options))
    assert not _plain([].append, T0, framed)  # IP options: left to dpkt, which reads it
    slow = Capture()
    _add(slow, _from_ethernet, T0, framed)
    assert [(p.src, p.dst) for p in slow.packets] == [("10.0.0.3:1", "10.0.0.2:2")]


def test_kernel_drops_reach_the_verdict_details(tmp_path):
    from lab.wire.view import drop_details

    events = udp_run(tmp_path)
    events.append({"v": 1, "ts": iso(T0 + 9), "host": "capture", "role": "capture", "service": "capture",
                   "proto": None, "event": "summary", "interface": "lab-1a2b3c", "captured": 5, "received": 9,
                   "kernel_dropped": 4})
    view = build_wire_view(tmp_path, events, join_views(events), capture_on=True)
    assert (view["capture"]["interface"], view["capture"]["kernel_dropped"]) == ("lab-1a2b3c", 4)
    assert drop_details(view) == ["capture: 4 packets dropped by the kernel, 0 by the interface: the wire view misses them"]
    events[-1]["kernel_dropped"] = 0
    assert drop_details(build_wire_view(tmp_path, events, join_views(events), capture_on=True)) == []


def test_a_name_lookup_and_a_refused_attempt_are_flagged_with_their_container_not_rows(tmp_path):
    """While a server restarts, a client's resolver asks the host's DNS through Docker's and its
    reconnects are refused: both leave its container, neither is a conversation of the lab."""
    (tmp_path / "capture").mkdir()
    lookup = (T0 + 5.0, frame(CLIENT, 45000, "10.255.255.53", 53, b"\x12\x34dns?"))
    syn = (T0 + 5.1, frame(CLIENT, 40777, SERVER, 19200, proto="tcp", flags=dpkt.tcp.TH_SYN, seq=7))
    rst = (T0 + 5.1001, frame(SERVER, 19200, CLIENT, 40777, proto="tcp", flags=dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK, ack=8))
    stranger = (T0 + 6.0, frame("10.0.0.9", 40888, SERVER, 19200, proto="tcp", flags=dpkt.tcp.TH_SYN, seq=1))
    write_pcap(tmp_path / "capture" / "lab.pcap", tcp_frames() + [lookup, syn, rst, stranger])
    events = tcp_events()
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    assert [r.client for r in rows] == ["client1", "?"]  # only the stranger's attempt is a row
    kinds = {f["kind"]: f for f in view["flags"]}
    assert kinds["resolver"]["client"] == "client1" and kinds["resolver"]["address"] == f"{CLIENT}:45000"
    assert kinds["connect-attempt"]["client"] == "client1" and "refused" in kinds["connect-attempt"]["detail"]
    assert kinds["wire-only"]["address"] == "10.0.0.9:40888"
    assert len(view["flows"]) == 4  # every flow is still in wire.json


def test_a_masqueraded_socket_claims_its_translated_flow_and_an_untranslated_packet_is_flagged(tmp_path):
    """Captured beyond a NAT router: the conversation is the flow with the router's address; a
    packet the router let through with the client's own address is that socket's, flagged
    `untranslated`, not a conversation of its own."""
    private, router = ("10.0.1.3", 50000), ("10.0.0.5", 50000)
    s = (SERVER, 19200)
    syn, ack, psh = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    frames = [
        (T0 + 1.000, frame(*router, *s, proto="tcp", flags=syn, seq=1000)),
        (T0 + 1.001, frame(*s, *router, proto="tcp", flags=syn | ack, seq=5000, ack=1001)),
        (T0 + 1.002, frame(*router, *s, proto="tcp", flags=ack, seq=1001, ack=5001)),
        (T0 + 1.010, frame(*router, *s, b"hello", proto="tcp", flags=psh, seq=1001, ack=5001)),
        (T0 + 1.011, frame(*s, *router, b"hello", proto="tcp", flags=psh, seq=5001, ack=1006)),
        (T0 + 1.300, frame(*private, *s, b"world!", proto="tcp", flags=psh, seq=1006, ack=5006)),  # leaked
        (T0 + 1.500, frame(*router, *s, b"world!", proto="tcp", flags=psh, seq=1006, ack=5006)),
        (T0 + 1.501, frame(*s, *router, b"world!", proto="tcp", flags=psh, seq=5006, ack=1012)),
    ]
    (tmp_path / "capture").mkdir()
    write_pcap(tmp_path / "capture" / "lab.pcap", frames)
    events = [{"v": 2, "ts": iso(T0 + 0.5), "host": "nat", "role": "netns", "proto": None, "event": "applied",
               "nat": ["masquerade"], "addresses": ["10.0.1.2", router[0]]},
              rec(1.003, "client1", "tcp", "connected", local="10.0.1.3:50000", peer=f"{SERVER}:19200", session=0),
              rec(1.004, "server", "tcp", "accepted", local=f"{SERVER}:19200", peer="10.0.0.5:50000", conn=1),
              rec(1.0105, "server", "tcp", "received", local=f"{SERVER}:19200", peer="10.0.0.5:50000", conn=1,
                  bytes=5, text="hello")]
    for t, seq, text in ((1.009, 1, "hello"), (1.2999, 2, "world!")):
        events.append(rec(t, "client1", "tcp", "sent", seq=seq, bytes=len(text), text=text, session=0))
        events.append(rec(t + 0.21 if seq == 2 else t + 0.003, "client1", "tcp", "reply", seq=seq,
                          bytes=len(text), intact=True, session=0))
    events.sort(key=lambda r: r["ts"])
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True)
    (row,) = rows
    assert row.flag == "nat" and row.wire["wire_client"] == "10.0.0.5:50000"
    assert row.wire["wire_flag"] == "untranslated"
    (flag,) = view["flags"]
    assert flag["kind"] == "untranslated" and flag["client"] == "client1" and flag["detail"].startswith("1 packet(s)")
    assert all(m["where"] == "ok" for m in view["messages"])


# ---- a topology: one capture per network, both sides of a router --------------------------------

PRIVATE, ROUTER_OUT = "10.0.1.3", "10.0.0.5"


def tcp_exchange(c, s, t0=T0 + 1.0):
    """A TCP conversation from c to s ("hello" echoed), as one side of a router saw it."""
    syn, ack, psh = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    return [
        (t0, frame(*c, *s, proto="tcp", flags=syn, seq=1000)),
        (t0 + 0.001, frame(*s, *c, proto="tcp", flags=syn | ack, seq=5000, ack=1001)),
        (t0 + 0.002, frame(*c, *s, proto="tcp", flags=ack, seq=1001, ack=5001)),
        (t0 + 0.010, frame(*c, *s, b"hello", proto="tcp", flags=psh, seq=1001, ack=5001)),
        (t0 + 0.011, frame(*s, *c, b"hello", proto="tcp", flags=psh, seq=5001, ack=1006)),
    ]


def two_sided_run(tmp_path, near_frames, server_frames, local, server_saw, nat=True):
    """Captures of two networks, `home` (the client's) and `internet` (the server's), and the
    records of one client socket at `local` that the server saw at `server_saw`."""
    (tmp_path / "capture").mkdir()
    write_pcap(tmp_path / "capture" / "home.pcap", near_frames)
    write_pcap(tmp_path / "capture" / "internet.pcap", server_frames)
    events = [rec(1.003, "client1", "tcp", "connected", local=local, peer=f"{SERVER}:19200", session=0),
              rec(1.004, "server", "tcp", "accepted", local=f"{SERVER}:19200", peer=server_saw, conn=1),
              rec(1.0105, "server", "tcp", "received", local=f"{SERVER}:19200", peer=server_saw, conn=1,
                  bytes=5, text="hello"),
              rec(1.009, "client1", "tcp", "sent", seq=1, bytes=5, text="hello", session=0),
              rec(1.012, "client1", "tcp", "reply", seq=1, bytes=5, intact=True, session=0)]
    if nat:
        events.append({"v": 2, "ts": iso(T0 + 0.5), "host": "nat", "role": "netns", "proto": None,
                       "event": "applied", "nat": ["masquerade"], "addresses": ["10.0.1.2", ROUTER_OUT]})
    events.sort(key=lambda r: r["ts"])
    rows = join_views(events)
    view = build_wire_view(tmp_path, events, rows, capture_on=True, networks=["home", "internet"],
                           server_networks=["internet"])
    return rows, view


def test_a_masqueraded_socket_gets_its_flow_on_each_side_of_the_router(tmp_path):
    """The client's own network carries its private address, the server's the router's: one row
    with both, the server's side in the usual columns, and the private address is no leak."""
    private, outside = (PRIVATE, 50000), (ROUTER_OUT, 50000)
    rows, view = two_sided_run(tmp_path, tcp_exchange(private, (SERVER, 19200)),
                               tcp_exchange(outside, (SERVER, 19200), T0 + 1.0002), f"{PRIVATE}:50000",
                               f"{ROUTER_OUT}:50000")
    (row,) = rows
    assert row.flag == "nat" and row.wire["wire_flag"] == "ok"
    assert row.wire["wire_client"] == f"{ROUTER_OUT}:50000" and row.wire["wire_client_near"] == f"{PRIVATE}:50000"
    assert row.wire["wire_server_near"] == f"{SERVER}:19200" and row.wire["wire_network_near"] == "home"
    assert view["flags"] == []
    sides = {f["network"]: (f["side"], f["client"], f["owner"]["client"]) for f in view["flows"]}
    assert sides == {"home": ("client", f"{PRIVATE}:50000", "client1"),
                     "internet": ("server", f"{ROUTER_OUT}:50000", "client1")}
    assert [m["where"] for m in view["messages"]] == ["ok"]
    assert [p["network"] for p in view["capture"]["points"]] == ["home", "internet"]
    assert view["capture"]["file"] == "capture/internet.pcap" and view["capture"]["packets"] == 10
    assert len([r for r in check_records(view) if r["event"] == "flow"]) == 1  # the server's side only
    header, line = conversations_csv(rows).splitlines()
    near = header.split(",").index("wire_client_near")
    assert line.split(",")[near] == f"{PRIVATE}:50000"


def test_an_untranslated_packet_beyond_the_router_is_a_leak_but_the_same_address_on_its_own_network_is_not(tmp_path):
    private, outside = (PRIVATE, 50000), (ROUTER_OUT, 50000)
    psh = dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    leaked = (T0 + 1.3, frame(*private, SERVER, 19200, b"stray", proto="tcp", flags=psh, seq=1006, ack=5006))
    rows, view = two_sided_run(tmp_path, tcp_exchange(private, (SERVER, 19200)),
                               tcp_exchange(outside, (SERVER, 19200), T0 + 1.0002) + [leaked],
                               f"{PRIVATE}:50000", f"{ROUTER_OUT}:50000")
    (row,) = rows
    assert row.wire["wire_flag"] == "untranslated" and row.wire["wire_client_near"] == f"{PRIVATE}:50000"
    (flag,) = view["flags"]
    assert flag["kind"] == "untranslated" and flag["detail"].startswith("1 packet(s)")
    assert flag["flow"] == f"tcp {PRIVATE}:50000 {SERVER}:19200"  # the one on the server's network
    assert not any(f["kind"] == "wire-only" for f in view["flags"])


def test_a_routed_flow_seen_on_both_networks_is_one_row(tmp_path):
    """No NAT: the same addresses on both sides of the router. One row, both flows owned by it;
    a stray flow routed the same way is one wire-only row, not two."""
    own = (PRIVATE, 50000)
    stray = [(T0 + 5.0, frame("10.0.1.9", 33333, SERVER, 19200, b"who am I"))]
    rows, view = two_sided_run(tmp_path, tcp_exchange(own, (SERVER, 19200)) + stray,
                               tcp_exchange(own, (SERVER, 19200), T0 + 1.0002) + stray,
                               f"{PRIVATE}:50000", f"{PRIVATE}:50000", nat=False)
    assert [r.client for r in rows] == ["client1", "?"]
    assert rows[0].flag == "ok" and rows[0].wire["wire_flag"] == "ok"
    assert rows[0].wire["wire_client"] == rows[0].wire["wire_client_near"] == f"{PRIVATE}:50000"
    assert rows[1].wire["wire_flag"] == "wire-only"
    (only,) = [f for f in view["flags"] if f["kind"] == "wire-only"]
    assert only["network"] == "internet"
    owned = [(f["network"], f["owner"]["client"]) for f in view["flows"] if f["owner"]]
    assert sorted(owned) == [("home", "client1"), ("internet", "client1")]


def test_each_network_capture_has_its_own_counters_and_a_missing_one_is_named(tmp_path):
    (tmp_path / "capture").mkdir()
    write_pcap(tmp_path / "capture" / "internet.pcap", tcp_exchange((ROUTER_OUT, 50000), (SERVER, 19200)))
    events = [{"v": 1, "ts": iso(T0 + 9), "host": "capture", "role": "capture", "service": "capture",
               "proto": None, "event": "summary", "interface": f"lab-1a2b3c-{i}", "file": f"/capture/{net}.pcap",
               "captured": 5, "kernel_dropped": dropped, "interface_dropped": 0}
              for i, (net, dropped) in enumerate((("home", 0), ("internet", 3)))]
    view = build_wire_view(tmp_path, events, [], capture_on=True, networks=["home", "internet"],
                           server_networks=["internet"])
    capture = view["capture"]
    assert capture["status"] == "missing" and "capture/home.pcap" in capture["reason"]
    assert [(p["network"], p["interface"], p["kernel_dropped"]) for p in capture["points"]] == [
        ("home", "lab-1a2b3c-0", 0), ("internet", "lab-1a2b3c-1", 3)]
    assert capture["kernel_dropped"] == 3 and capture["interface"] == "lab-1a2b3c-1"
    assert len(view["flows"]) == 1  # what the other capture holds still counts


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_a_capture_cut_before_its_file_header_is_not_readable_and_the_view_says_so(tmp_path, content):
    """tcpdump stopped before its first write (a run interrupted while starting) leaves an empty
    or cut file: the view says so, the run goes on."""
    (tmp_path / "capture").mkdir()
    (tmp_path / "capture" / "lab.pcap").write_bytes(content)
    with pytest.raises(ValueError, match="no whole capture file header"):
        read_capture(tmp_path / "capture" / "lab.pcap")
    view = build_wire_view(tmp_path, [], [], capture_on=True)
    assert view["capture"]["status"] == "missing" and "not a readable capture" in view["capture"]["reason"]


def test_a_run_without_a_capture_holds_no_message_however_many(tmp_path, monkeypatch):
    """Without a flow to match them with, the sends are not kept: wire.json's messages are derived
    again from the records as they are written, holding at most OPEN sends per socket (those waiting
    for their reply), the same for 10x the messages."""
    import weakref

    from flood import Flood

    import lab.wire.join as join

    alive: weakref.WeakSet = weakref.WeakSet()
    most = 0

    class Counted(join.SendMatch):
        __hash__ = object.__hash__

        def __init__(self, *args, **kwargs):  # a dataclass's __init__ calls no __post_init__ added later
            nonlocal most
            super().__init__(*args, **kwargs)
            alive.add(self)
            most = max(most, len(alive))

    monkeypatch.setattr(join, "SendMatch", Counted)
    held = {}
    for n in (2000, 20_000):
        most = 0
        records = Flood(n)
        view = build_wire_view(tmp_path, records, join_views(records), capture_on=False)
        write_wire_view(tmp_path, view)
        messages = read_wire_view(tmp_path)["messages"]
        held[n] = most
        # A lost UDP message waits for OPEN later sends before it is settled (unfollowed_sends).
        assert len(messages) == 2 * n and most <= join.OPEN + 3 and records.most_alive <= 3
        where = [m["where"] for m in messages if m["proto"] == "udp"]
        assert where.count("ok") == n - n // 7
        assert [m["seq"] for m in messages if m["proto"] == "tcp"] == list(range(1, n + 1))
        # Nor are they listed for the expectations: without a capture they have nothing to measure.
        assert [r["event"] for r in check_records(view)] == ["capture"]
    assert held[20_000] == held[2000]


def test_a_run_with_a_capture_holds_a_bounded_window_however_many(tmp_path, monkeypatch):
    """With a capture, the packets and the messages are matched as one stream: what is held (sends
    not settled, packets not written, packets handed on by the reader at a time) is bounded by
    the windows, the same for 10x the packets and messages. Counted, never timed."""
    import weakref

    from flood import Flood, flood_capture

    import lab.wire.flows as flows
    import lab.wire.join as join
    import lab.wire.match as match
    import lab.wire.pcap as pcap
    from lab.html.ladder import MAX_ROWS
    from lab.html.wire import read_wire

    sends: weakref.WeakSet = weakref.WeakSet()
    packets: weakref.WeakSet = weakref.WeakSet()
    most = {"sends": 0, "packets": 0}

    class CountedSend(join.SendMatch):
        __hash__ = object.__hash__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sends.add(self)
            most["sends"] = max(most["sends"], len(sends))

    class CountedPacket(flows.WirePacket):
        __slots__ = ("__weakref__",)
        __hash__ = object.__hash__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            packets.add(self)
            most["packets"] = max(most["packets"], len(packets))

    monkeypatch.setattr(match, "SendMatch", CountedSend)
    monkeypatch.setattr(flows, "WirePacket", CountedPacket)
    monkeypatch.setattr(match, "WINDOW", 50)
    monkeypatch.setattr(match, "HOLD", 200)
    monkeypatch.setattr(pcap, "BATCH", 64)
    (tmp_path / "capture").mkdir()
    held = {}
    for n in (2000, 20_000):
        most.update(sends=0, packets=0)
        records = Flood(n)
        on_wire = flood_capture(tmp_path / "capture" / "lab.pcap", records)
        rows = join_views(records)
        view = build_wire_view(tmp_path, records, rows, capture_on=True)
        write_wire_view(tmp_path, view)
        held[n] = dict(most)
        assert view["capture"]["packets"] == on_wire and records.most_alive <= 3
        where = {"tcp": [], "udp": []}
        for message in view["messages"]:
            where[message["proto"]].append(message["where"])
        assert where["tcp"] == ["ok"] * n
        assert where["udp"].count("ok") == n - n // 7 and where["udp"].count("no-echo-on-wire") == n // 7
        tcp, udp = sorted(rows, key=lambda r: r.proto)
        assert (tcp.wire["wire_packets_out"], tcp.wire["wire_packets_in"]) == (n + 2, n + 1)
        assert udp.wire["lost_where"] == f"no-echo-on-wire:{n // 7}" and tcp.wire["wire_flag"] == "ok"
        # The report reads wire.json as a stream: the ladder's packets of each flow, the rest counted.
        wire, _note = read_wire(tmp_path)
        assert [len(f["packets_list"]) for f in wire["flows"]] == [MAX_ROWS, MAX_ROWS]
        assert sum(f["timed"] for f in wire["flows"]) == on_wire
        assert len(wire["messages"]) == n // 7  # only the lost round trips
        # `lab logs` reads it as a stream too, every flow side by side, in time order.
        stamps = [r["ts"] for r in wire_timeline(tmp_path)]
        assert len(stamps) == on_wire + n // 7 and stamps == sorted(stamps)
    # The window, and the settled TCP sends a stream lets go of a few at a time (lab.wire.match).
    assert held[20_000]["sends"] <= 50 + 32 + 1 and held[20_000]["packets"] <= 200 + 2 * 50 + 64
    assert held[20_000] == held[2000], held


@pytest.mark.parametrize("nat", [False, True])
def test_a_udp_socket_logged_bound_after_its_first_round_trip_crossed_the_wire_still_has_it(tmp_path, nat):
    """A UDP client knows its port only once it has sent: its `bound` (and `sent`, `reply`) records
    come after its first datagram and echo crossed the wire, as in real runs (nat, udp-loss). The
    stream matching must not take those packets as carrying no message (request-not-on-wire, or
    reply-not-on-wire on the row)."""
    local = (PRIVATE if nat else CLIENT, 40000)
    outside = (ROUTER_OUT, 40000) if nat else local
    s = (SERVER, 19200)
    (tmp_path / "capture").mkdir()
    server_frames = [(T0 + 1.000, frame(*outside, *s, b"alpha")), (T0 + 1.0002, frame(*s, *outside, b"alpha")),
                     (T0 + 2.000, frame(*outside, *s, b"bravo")), (T0 + 2.0002, frame(*s, *outside, b"bravo"))]
    if nat:
        write_pcap(tmp_path / "capture" / "home.pcap",
                   [(T0 + 0.9999, frame(*local, *s, b"alpha")), (T0 + 1.0003, frame(*s, *local, b"alpha")),
                    (T0 + 1.9999, frame(*local, *s, b"bravo")), (T0 + 2.0003, frame(*s, *local, b"bravo"))])
        write_pcap(tmp_path / "capture" / "internet.pcap", server_frames)
    else:
        write_pcap(tmp_path / "capture" / "lab.pcap", server_frames)
    address = f"{local[0]}:{local[1]}"
    events = [rec(1.0004, "client1", "udp", "bound", local="0.0.0.0:40000", local_route=address,
                  peer=f"{SERVER}:19200", session=0),
              rec(1.0005, "client1", "udp", "sent", seq=1, bytes=5, text="alpha", session=0),
              rec(1.0006, "client1", "udp", "reply", seq=1, bytes=5, intact=True, session=0),
              rec(2.0001, "client1", "udp", "sent", seq=2, bytes=5, text="bravo", session=0),
              rec(2.0004, "client1", "udp", "reply", seq=2, bytes=5, intact=True, session=0),
              rec(1.0001, "server", "udp", "received", local=f"{SERVER}:19200", peer=f"{outside[0]}:{outside[1]}",
                  bytes=5, text="alpha")]
    if nat:
        events.append({"v": 2, "ts": iso(T0 + 0.5), "host": "nat", "role": "netns", "proto": None,
                       "event": "applied", "nat": ["masquerade"], "addresses": ["10.0.1.2", ROUTER_OUT]})
    events.sort(key=lambda r: r["ts"])
    rows = join_views(events)
    networks = {"networks": ["home", "internet"], "server_networks": ["internet"]} if nat else {}
    view = build_wire_view(tmp_path, events, rows, capture_on=True, **networks)
    messages = list(view["messages"])
    assert [(m["seq"], m["where"], len(m["request_ts"]), len(m["echo_ts"])) for m in messages] == [
        (1, "ok", 1, 1), (2, "ok", 1, 1)]
    (row,) = [r for r in rows if r.client == "client1"]
    assert row.wire["wire_flag"] == "ok" and row.wire["lost_where"] == "", row.wire
    assert view["flags"] == []
    server_flow = next(f for f in view["flows"] if f["side"] == "server")
    assert [p["msg"] for p in server_flow["packets_list"]] == [1, 1, 2, 2]
