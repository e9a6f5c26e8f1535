"""The HTML report and the run comparison, on run directories recorded from real runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lab.cli import main
from lab.html import write_report
from lab.html.compare import compare
from lab.html.ladder import MAX_ROWS, ladder
from lab.html.page import load_with_wire, render_report
from lab.html.rundata import AT_SERVER, TO_CLIENT, TO_SERVER, build_run, load_run, loss_by_direction
from lab.logs import read_events

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"


def socket(run, client, proto, index=0):
    return [s for s in run.sockets if s.conversation.client == client and s.conversation.proto == proto][index]


def test_every_message_is_followed_through_the_server_and_lost_ones_say_which_leg():
    run = load_run(RUNS / "udp-loss")
    udp = [s for s in run.sockets if s.conversation.proto == "udp"]
    lost = [j for s in udp for j in s.lost]
    # The run's own loss expectation measured 17 of 80: the journeys count the same messages.
    assert "17/80 lost" in run.manifest["expectations"][0]["measured"]
    assert len(lost) == 17 and sum(len(s.journeys) for s in udp) == 80
    for journey in lost:
        if journey.lost_where == TO_SERVER:
            assert journey.received is None
        else:
            assert journey.lost_where == TO_CLIENT and journey.echoed is not None and journey.reply is None
    assert {j.lost_where for j in lost} == {TO_SERVER, TO_CLIENT}
    tcp = [j for s in run.sockets if s.conversation.proto == "tcp" for j in s.journeys]
    assert len(tcp) == 80 and all(j.received is not None and j.echoed is not None and j.reply for j in tcp)


def test_tcp_reads_are_placed_by_byte_offset():
    """One 3000-byte message read in three chunks and echoed in two; then a small one."""
    ts = iter(f"2026-11-25T10:00:00.{n:06d}Z" for n in range(100, 10000, 100))
    client = {"role": "client", "service": "c1", "proto": "tcp", "session": 0, "ip": "10.0.0.5"}
    server = {"role": "server", "service": "server", "proto": "tcp", "peer": "10.0.0.5:4000", "ip": "10.0.0.2"}
    events = [
        {**client, "event": "connected", "local": "10.0.0.5:4000", "peer": "10.0.0.2:19200"},
        {**server, "event": "accepted", "conn": 1},
        {**client, "event": "sent", "seq": 1, "bytes": 3000, "text": "x" * 1024},
        {**server, "event": "received", "bytes": 1024}, {**server, "event": "received", "bytes": 1024},
        {**server, "event": "echoed", "bytes": 2048}, {**server, "event": "received", "bytes": 952},
        {**server, "event": "echoed", "bytes": 952},
        {**client, "event": "reply", "seq": 1, "bytes": 3000, "rtt_ms": 1.0, "intact": True},
        {**client, "event": "sent", "seq": 2, "bytes": 5, "text": "hello"},
        {**server, "event": "received", "bytes": 5},
    ]
    for record in events:
        record["ts"] = next(ts)
    run = build_run(Path("."), {}, events)
    big, small = run.sockets[0].journeys
    assert big.received == pytest.approx(0.0003)  # its first read
    assert big.echoed == pytest.approx(0.0007)  # the echo that completed its last byte
    assert small.received == pytest.approx(0.001) and small.echoed is None
    assert small.lost_where == AT_SERVER


def test_ladder_follows_cause_and_effect_and_draws_lost_arrows_halfway():
    basic = load_run(RUNS / "basic")
    steps = ladder(socket(basic, "client1", "tcp"))
    kinds = [a.kind for a in steps.arrows]
    assert kinds[0] == "handshake" and kinds[-1] == "close"
    # Each message is followed by its own echo, even where the server stamped its read first.
    assert kinds[1:-1] == ["message", "echo"] * 4
    assert [a.y for a in steps.arrows] == sorted(a.y for a in steps.arrows)
    lossy = ladder(socket(load_run(RUNS / "udp-loss"), "client1", "udp"))
    lost = [a for a in lossy.arrows if a.lost]
    assert len(lost) == 9
    assert all(lossy.end_x(a) == (lossy.client_x + lossy.server_x) / 2 for a in lost)
    assert any(not a.rightward for a in lost) and any(a.rightward for a in lost)


def test_a_long_conversation_is_cut_with_a_note():
    run = load_run(RUNS / "udp-loss")
    sock = socket(run, "client3", "tcp")
    sock.journeys = sock.journeys * 3
    steps = ladder(sock)
    assert len(steps.arrows) == MAX_ROWS and steps.cut > 0


def test_server_restart_marks_the_fault_and_the_lost_send_of_the_dead_connection():
    run = load_run(RUNS / "server-restart")
    assert [(f.action, f.target) for f in run.faults] == [("restart", "server")]
    first, second = socket(run, "client1", "tcp", 0), socket(run, "client1", "tcp", 1)
    assert [j.lost_where for j in first.lost] == [TO_SERVER]
    assert first.lost[0].seq == second.journeys[0].seq and first.lost[0].resent  # sent again on the new connection
    assert any("sent again after reconnecting" in a.label for a in ladder(first).arrows if a.lost)
    assert "restart server" in render_report(run)


def test_report_is_one_offline_file_with_every_part(tmp_path):
    run_dir = shutil.copytree(RUNS / "udp-loss", tmp_path / "run")
    path = write_report(run_dir)
    page = path.read_text(encoding="utf-8")
    assert path == run_dir / "report.html"
    # Nothing is fetched: no external URL in any attribute, and the page forbids it anyway.
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "default-src 'none'" in page
    assert page.count('class="ladder"') == 4 and page.count("<tr class=") >= 4
    for part in ('class="topology"', 'aria-label="round-trip time over the run"', "Loss per direction",
                 "udp loss between 5% and 40%", "shaper", "loss 10% · both"):
        assert part in page, part
    assert "no packet capture" not in page  # this fixture is older than capture: it says so differently
    assert "wire.json" in page


def test_a_run_that_stopped_before_any_client_still_gets_a_report(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "x", "scenario": "basic", "verdict": "interrupted"}))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "no client socket was recorded" in page and "no expectations were judged" in page


def test_the_wire_view_lights_up_from_wire_json(tmp_path):
    """A wire.json in the documented format (docs/wire.md): the flow's packets become the ladder,
    the table gets the wire column and the wire's verdict on where a message was lost."""
    run_dir = shutil.copytree(RUNS / "udp-loss", tmp_path / "run")
    run = load_run(run_dir)
    tcp, udp = socket(run, "client3", "tcp"), socket(run, "client2", "udp")
    events = read_events(run_dir / "events.jsonl")
    ts = [e["ts"] for e in events if e.get("service") == "client3" and e.get("event") in ("connected", "sent", "reply")]
    lost_to_server = next(j for j in udp.lost if j.lost_where == TO_SERVER)
    packets = [
        {"ts": ts[0], "dir": "c2s", "flags": "S", "seq": 0, "ack": 0, "len": 0, "retrans": False, "msg": None},
        {"ts": ts[0], "dir": "s2c", "flags": "SA", "seq": 0, "ack": 1, "len": 0, "retrans": False, "msg": None},
        {"ts": ts[0], "dir": "c2s", "flags": "A", "seq": 1, "ack": 1, "len": 0, "retrans": False, "msg": None},
        {"ts": ts[1], "dir": "c2s", "flags": "PA", "seq": 1, "ack": 1, "len": 24, "retrans": False, "msg": 1},
        {"ts": ts[1], "dir": "c2s", "flags": "PA", "seq": 1, "ack": 1, "len": 24, "retrans": True, "msg": 1},
        {"ts": ts[2], "dir": "s2c", "flags": "PA", "seq": 1, "ack": 25, "len": 24, "retrans": False, "msg": 1},
    ]
    wire = {
        "v": 1,
        "capture": {"status": "ok", "reason": None, "file": "capture/lab.pcap", "interface": "lab-df587b",
                    "point": "bridge", "packets": 6, "kernel_dropped": 0, "interface_dropped": 0},
        "flows": [{"id": "tcp x", "proto": "tcp", "client": tcp.address, "server": "192.168.144.2:19200",
                   "packets": {"c2s": 4, "s2c": 2}, "bytes": {"c2s": 48, "s2c": 24},
                   "tcp": {"handshake_ms": 0.12, "retransmissions": {"c2s": 1, "s2c": 0},
                           "fin": {"c2s": None, "s2c": None}, "rst": {"c2s": None, "s2c": None}},
                   "packets_list": packets}],
        "messages": [{"client": "client2", "proto": "udp", "session": 0, "seq": lost_to_server.seq,
                      "where": "no-echo-on-wire"}],
        "flags": [{"kind": "wire-only", "flow": "udp 192.168.144.9:5 192.168.144.2:19200", "detail": "nobody claims it"}],
    }
    (run_dir / "wire.json").write_text(json.dumps(wire))
    run = load_with_wire(run_dir)
    assert run.has_wire
    tcp, udp = socket(run, "client3", "tcp"), socket(run, "client2", "udp")
    steps = ladder(tcp)
    assert steps.source == "wire"
    labels = [a.label for a in steps.arrows]
    assert labels[:3] == ["SYN", "SYN-ACK", "ACK"]
    assert any("retransmitted" in label for label in labels)
    assert "handshake 0.12 ms" in tcp.wire["summary"] and "1↑ 0↓ retransmitted" in tcp.wire["summary"]
    journey = next(j for j in udp.journeys if j.seq == lost_to_server.seq)
    assert journey.lost_where == TO_SERVER and journey.lost_place == "on the wire but never read by the server"
    assert socket(run, "client1", "udp").wire["summary"] == "not on the wire"
    page = render_report(run)
    assert "on the wire but never read by the server" in page and "wire-only" in page and "capture point" in page


@pytest.mark.parametrize("capture, says", [
    ({"status": "off", "reason": "capture: false in the scenario"}, "capture off: capture: false in the scenario"),
    ({"status": "missing", "reason": "no pcap"}, "capture missing: no pcap"),
])
def test_a_run_without_a_capture_says_why(tmp_path, capture, says):
    run_dir = shutil.copytree(RUNS / "basic", tmp_path / "run")
    (run_dir / "wire.json").write_text(json.dumps({"v": 1, "capture": capture, "flows": [], "messages": []}))
    run = load_with_wire(run_dir)
    assert not run.has_wire and run.wire_note == says
    assert says in render_report(run)


def test_compare_names_what_changed():
    basic, lossy = load_run(RUNS / "basic"), load_run(RUNS / "udp-loss")
    result = compare(basic, lossy)
    metrics = {m.name: m for m in result.metrics}
    assert metrics["udp lost"].a == 0 and metrics["udp lost"].b == 17 and metrics["udp lost"].trend == "worse"
    assert metrics[f"udp lost {TO_CLIENT}"].b + metrics[f"udp lost {TO_SERVER}"].b == 17
    assert ("server.impair", None, lossy.manifest["scenario_model"]["server"]["impair"]) in result.settings
    changes = {e.name: e.change for e in result.expectations}
    assert changes["udp loss between 5% and 40%"] == "only in B" and changes["every client finished ok"] == "same"
    assert {(s.client, s.proto, s.b) for s in result.sockets} >= {("client1", "udp", "ok, 9 lost"), ("client4", "tcp", "ok")}


def test_compare_counts_retransmissions_when_captured():
    run = load_with_wire(RUNS / "basic-wire")
    metrics = {m.name: m for m in compare(load_run(RUNS / "basic"), run).metrics}
    assert metrics["tcp retransmitted segments"].a is None and metrics["tcp retransmitted segments"].b == 0


def test_compare_a_run_with_itself_finds_no_change():
    run = load_run(RUNS / "server-restart")
    result = compare(run, run)
    assert result.settings == [] and result.sockets == []
    assert all(m.delta in (0, None) for m in result.metrics)
    assert {e.change for e in result.expectations} == {"same"}


def test_compare_a_failed_expectation():
    a, b = load_run(RUNS / "basic"), load_run(RUNS / "basic")
    b.manifest = {**b.manifest, "expectations": [{**e, "passed": False} if i == 0 else e
                                                 for i, e in enumerate(b.manifest["expectations"])]}
    assert compare(a, b).expectations[0].change == "now FAILS"


@pytest.fixture
def runs_dir(tmp_path):
    for name in ("basic", "udp-loss"):
        shutil.copytree(RUNS / name, tmp_path / json.loads((RUNS / name / "manifest.json").read_text())["run_id"])
    return tmp_path


def test_cli_report_and_diff(runs_dir, capsys):
    assert main(["report", "--out", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    latest = next(runs_dir.glob("*udp-loss*"))
    assert f"report: {latest / 'report.html'}" in out.replace("\n", "")
    assert main(["diff", "20261125-144906", "20261125-144915", "--out", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "udp lost" in out and "only in B" in out
    assert (latest / "diff-20261125-144906-basic-6d40d2.html").exists()


def test_cli_bad_run_is_a_one_line_error(runs_dir, capsys):
    assert main(["diff", "nope", "20261125-144915", "--out", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err and "Traceback" not in err


def test_a_captured_run_draws_its_ladders_from_the_wire():
    run = load_with_wire(RUNS / "basic-wire")
    assert run.has_wire and run.wire_summary["point"] == "bridge"
    tcp = ladder(socket(run, "client1", "tcp"))
    assert tcp.source == "wire"
    labels = [a.label for a in tcp.arrows]
    assert labels[:3] == ["SYN", "SYN-ACK", "ACK"] and labels.count("FIN") == 2
    assert labels[3].startswith("#1 24 B") and "echo #1 24 B" in labels
    udp = ladder(socket(run, "client1", "udp"))
    assert [a.kind for a in udp.arrows] == ["message", "echo"] * 4
    for sock in run.sockets:
        assert sock.wire["flag"] == "ok" and sock.wire["summary"].startswith(sock.address + " → ")


def test_records_without_a_time_do_not_move_the_origin():
    """Output printed before a program's first record gets a placeholder time (lab/logs.py)."""
    events = read_events(RUNS / "basic" / "events.jsonl")
    events.insert(0, {"ts": "0000-00-00T00:00:00.000000Z", "role": "capture", "event": "output", "text": "Traceback"})
    run = build_run(Path("."), {}, events)
    assert run.origin == next(e["ts"] for e in events if e.get("role") == "client")
    assert run.sockets[0].journeys[0].sent >= 0


def test_the_lab_s_diagnoses_of_a_learner_s_program_head_the_report(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(RUNS / "basic", run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["diagnoses"] = [{"kind": "loopback-listener", "host": "server", "socket": "127.0.0.1:19200",
                              "text": "server: its TCP socket listens on 127.0.0.1:19200 only; bind to '' instead"}]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    page = write_report(run_dir).read_text()
    why = page[page.index('<section id="why">'):page.index('<section id="topology">')]
    assert "loopback-listener" in why and "127.0.0.1:19200 only; bind to &#39;&#39; instead" in why
    assert '<a href="#why">' in page
    # A run without diagnoses has no such section.
    assert '<section id="why">' not in write_report(shutil.copytree(RUNS / "basic", tmp_path / "plain")).read_text()


def test_a_socket_captured_on_both_sides_of_a_router_shows_both_and_the_capture_points(tmp_path):
    run_dir = shutil.copytree(RUNS / "udp-loss", tmp_path / "run")
    tcp = socket(load_run(run_dir), "client3", "tcp")
    events = read_events(run_dir / "events.jsonl")
    ts = next(e["ts"] for e in events if e.get("service") == "client3" and e.get("event") == "connected")
    syn = {"ts": ts, "dir": "c2s", "flags": "S", "seq": 0, "ack": 0, "len": 0, "retrans": False, "msg": None}

    def flow(network, side, client, server):
        return {"id": f"tcp {client} {server}", "proto": "tcp", "client": client, "server": server,
                "network": network, "side": side, "owner": {"client": "client3", "session": 0, "local": tcp.address},
                "packets": {"c2s": 1, "s2c": 0}, "bytes": {"c2s": 0, "s2c": 0}, "tcp": None, "packets_list": [syn]}

    points = [{"network": "home", "side": "client", "packets": 1}, {"network": "internet", "side": "server", "packets": 1}]
    wire = {"v": 1, "capture": {"status": "ok", "file": "capture/internet.pcap", "interface": "lab-df587b-1",
                                "point": "bridge", "packets": 2, "points": points},
            "flows": [flow("home", "client", tcp.address, "10.0.0.2:19200"),
                      flow("internet", "server", "10.0.0.5:40000", "10.0.0.2:19200")],
            "messages": [], "flags": []}
    (run_dir / "wire.json").write_text(json.dumps(wire))
    run = load_with_wire(run_dir)
    summary = socket(run, "client3", "tcp").wire["summary"]
    assert summary.startswith(f"home: {tcp.address} → 10.0.0.2:19200 · internet: 10.0.0.5:40000 → 10.0.0.2:19200")
    page = render_report(run)
    assert "captured on every network: home (client side, 1 packets), internet (server side, 1 packets)" in page
    assert "tcpdump on 2 bridges: home, internet" in page


# --- a long run: every message counted, a bounded number kept, the page says what it left out --------

def _followed(records):
    """The report's pass over `records` by hand, noting the most it held at once."""
    from lab.html.journeys import Follower
    from lab.html.rundata import Clock, Socket
    from lab.logs import join_views

    clock = Clock(records)
    sockets = [Socket(conversation=c, address=c.own_address) for c in join_views(records)]
    follower = Follower(sockets, clock)
    most = 0
    for record in records:
        follower.add(record)
        most = max(most, sum(t.held() for t in follower.tracks) + follower.samples.held())
    follower.finish()
    return sockets, most


def test_a_long_run_is_counted_whole_and_drawn_in_part():
    from flood import Flood

    from lab.html.journeys import HEAD, NOTABLE, TAIL

    run = build_run(Path("."), {"run_id": "long"}, Flood(3000))
    tcp, udp = socket(run, "client1", "tcp"), socket(run, "client1", "udp")
    # Every message is counted...
    assert (tcp.sent_count, tcp.lost_count) == (3000, 0)
    assert (udp.sent_count, udp.lost_count, udp.lost_by_where) == (3000, 428, {TO_SERVER: 428})
    assert [(r["proto"], r["sent"], r["lost"]) for r in loss_by_direction(run.sockets)] == [
        ("tcp", 3000, 0), ("udp", 3000, 428)]
    metrics = {m.name: m.a for m in compare(run, run).metrics}
    assert (metrics["tcp messages sent"], metrics["udp lost"], metrics["tcp rtt max"]) == (3000, 428, 0.4)
    # ...a few are kept: the first, the last and the first lost ones, each followed through the server
    # (the reads the server logged before the client's send included).
    assert [j.index for j in tcp.journeys] == [*range(HEAD), *range(3000 - TAIL, 3000)]
    assert all(j.received is not None and j.echoed is not None and j.reply is not None for j in tcp.journeys)
    assert len(udp.journeys) == HEAD + NOTABLE + TAIL and udp.notable_left_out == 428 - 5 - NOTABLE - 1
    assert tcp.left_out == 3000 - HEAD - TAIL
    steps = ladder(tcp)
    notes = [a.label for a in steps.arrows if a.note]
    assert notes == [f"… {3000 - HEAD - TAIL:,} messages not drawn"] and len(steps.arrows) <= MAX_ROWS
    page = render_report(run)
    assert f"{run.left_out:,} messages of this run are counted" in page and "lab logs long --client NAME" in page
    assert "6,000 messages, 5,875 not drawn" in page
    assert "too many to draw one by one" in page and 'class="slice tcp"' in page


def test_the_report_holds_as_much_for_ten_times_the_messages():
    from flood import Flood

    small, large = Flood(2000), Flood(20_000)
    (tcp_small, udp_small), held_small = _followed(small)
    (tcp_large, udp_large), held_large = _followed(large)
    assert (tcp_large.sent_count, udp_large.lost_count) == (20_000, 2857)
    # The same messages kept, the same most held at once, and no record kept at all.
    assert [len(s.journeys) for s in (tcp_small, udp_small)] == [len(s.journeys) for s in (tcp_large, udp_large)]
    assert held_large == held_small
    assert small.most_alive <= 2 and large.most_alive <= 2


def test_the_round_trip_chart_is_bounded_by_slices_of_time():
    from lab.html.charts import rtt_chart
    from lab.html.samples import POINTS, SLICES, RttSamples

    samples = RttSamples()
    for i in range(50 * POINTS):  # a long run: 100 s, every 1 ms
        samples.add((0, i), i / 1000, None if i % 100 == 0 else 1.0 + i % 7, "udp", f"c udp #{i}",
                    TO_SERVER if i % 100 == 0 else None)
        assert samples.held() <= POINTS + 1 + SLICES
    assert samples.exact() is None and samples.messages == 50 * POINTS
    assert sum(s.echoed + s.lost for s in samples.slices["udp"].values()) == 50 * POINTS
    assert sum(s.lost for s in samples.slices["udp"].values()) == POINTS // 2
    chart = rtt_chart(samples, [])
    assert chart.sliced and len(chart.bars) <= SLICES and len(chart.points) <= SLICES
    assert chart.bars[0].title.startswith("udp 0.000-") and "mean" in chart.bars[0].title


def test_rtt_percentiles_are_exact_then_bucketed_within_a_twentieth_of_a_percent():
    import random

    from lab.html.samples import STEP, Percentiles
    from lab.records.stats import percentile

    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1.5) for _ in range(3000)]
    few, many = Percentiles(exact=5000), Percentiles(exact=1000)
    for value in values:
        few.add(value)
        many.add(value)
        assert many.held() <= 1000 + 1 + 12_000  # the buckets span the values' range, not their count
    for p in (50, 95, 99):
        assert few.percentile(p) == percentile(values, p)
        assert abs(many.percentile(p) / percentile(values, p) - 1) <= STEP ** 0.5 - 1
    assert many.values is None and many.high == max(values)
