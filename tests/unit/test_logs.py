"""Parsing container output and joining the client's view with the server's, on recorded events."""

import json
from pathlib import Path

from lab.logs import conversations_csv, filter_events, infer_ip, join_views

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def load(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def rec(**fields):
    base = {"v": 1, "ts": "2026-11-25T08:00:00.000000Z", "host": fields.get("service", "x")}
    base.update(fields)
    return base


def test_infer_ip_from_own_records_skips_wildcards():
    records = [rec(event="listening", local="0.0.0.0:19200"), rec(event="connected", local="10.77.0.5:4000")]
    assert infer_ip(records) == "10.77.0.5"


def test_join_real_threaded_run_every_socket_matches():
    rows = join_views(load("threaded-ok.jsonl"))
    client_rows = [r for r in rows if r.client != "?"]
    assert client_rows and all(r.flag == "ok" for r in client_rows)
    for r in client_rows:
        assert r.server_saw == f"{r.client_ip}:{r.client_port}"
        assert r.sent > 0 and r.echoed == r.sent and r.rtt_p50_ms is not None


def _conversation(client_local, server_peer, text="hello"):
    client = {"service": "client1", "role": "client", "proto": "tcp", "local": client_local, "session": 0}
    server = {"service": "server", "role": "server", "proto": "tcp", "peer": server_peer, "conn": 1}
    return [
        rec(**client, event="connected", peer="10.77.0.2:19200"),
        rec(**client, event="sent", seq=1, bytes=5, text=text),
        rec(**server, event="accepted", local="10.77.0.2:19200"),
        rec(**server, event="received", bytes=5, text=text),
        rec(**client, event="reply", seq=1, bytes=5, rtt_ms=0.4, intact=True),
    ]


def test_join_flags_one_sided_views_instead_of_dropping_them():
    events = _conversation("10.77.0.11:40000", "10.77.0.99:50000", text="one") + [
        rec(service="server", role="server", proto="tcp", event="accepted", peer="10.77.0.50:1234", conn=2),
    ]
    events[3]["text"] = "something else"  # the server saw another conversation there
    rows = {r.flag: r for r in join_views(events)}
    assert set(rows) == {"client-only", "server-only"}
    assert rows["client-only"].client == "client1" and rows["client-only"].server_saw is None
    assert {r.server_saw for r in join_views(events) if r.flag == "server-only"} == {"10.77.0.99:50000", "10.77.0.50:1234"}


def test_join_pairs_the_same_conversation_seen_at_two_addresses():
    rows = join_views(_conversation("10.77.0.11:40000", "192.168.5.1:61000"))
    assert len(rows) == 1
    row = rows[0]
    assert row.flag == "address-mismatch"
    assert (row.client_port, row.server_saw) == (40000, "192.168.5.1:61000")


def test_udp_resends_count_once_and_reconnects_make_new_rows():
    events = _conversation("10.77.0.11:40000", "10.77.0.11:40000") + [
        rec(service="client1", role="client", proto="tcp", event="connected", local="10.77.0.11:40001", session=0),
        rec(service="client1", role="client", proto="tcp", event="sent", local="10.77.0.11:40001", session=0, seq=2, text="b"),
        rec(service="client1", role="client", proto="tcp", event="sent", local="10.77.0.11:40001", session=0, seq=2, text="b"),
        rec(service="server", role="server", proto="tcp", event="accepted", peer="10.77.0.11:40001", conn=2),
    ]
    rows = join_views(events)
    assert [(r.client_port, r.sent, r.echoed, r.flag) for r in rows] == [(40000, 1, 1, "ok"), (40001, 1, 0, "ok")]


def test_csv_has_one_row_per_conversation():
    text = conversations_csv(join_views(load("threaded-ok.jsonl")))
    lines = text.strip().splitlines()
    assert lines[0].startswith("client,client_ip,proto,session,client_port,server_saw")
    assert len(lines) - 1 == len(join_views(load("threaded-ok.jsonl")))


def test_filter_by_client_keeps_the_servers_records_about_it():
    events = _conversation("10.77.0.11:40000", "10.77.0.11:40000") + [
        rec(service="server", role="server", proto="tcp", event="accepted", peer="10.77.0.12:1", conn=2),
    ]
    picked = filter_events(events, client="client1")
    assert len(picked) == 5
    assert all(r.get("peer") != "10.77.0.12:1" for r in picked)


def _dual_stack_client(records_order=lambda v4, v6: v4 + v6):
    """client1 talks TCP session 0 to the server's IPv4 address, then to its IPv6 address; the
    dual-stack server logs the IPv4 peer IPv4-mapped."""
    def one(local, peer, server_peer, text, conn):
        client = {"service": "client1", "role": "client", "proto": "tcp", "local": local, "peer": peer, "session": 0}
        server = {"service": "server", "role": "server", "proto": "tcp", "peer": server_peer, "conn": conn}
        return [
            rec(**client, event="connected"),
            rec(**client, event="sent", seq=1, bytes=len(text), text=text),
            rec(**server, event="accepted"),
            rec(**server, event="received", bytes=len(text), text=text),
            rec(**client, event="reply", seq=1, bytes=len(text), rtt_ms=0.4, intact=True),
        ]
    v4 = one("10.78.1.3:40000", "10.78.2.3:19200", "[::ffff:10.78.1.3]:40000", "four", 1)
    v6 = one("[fd5c:1ab:0:1::3]:40001", "[fd5c:1ab:0:2::3]:19200", "[fd5c:1ab:0:1::3]:40001", "six", 2)
    return records_order(v4, v6)


def test_join_keeps_a_dual_stack_clients_families_apart():
    rows = join_views(_dual_stack_client())
    assert [(r.client, r.own_address, r.server_saw, r.sent, r.echoed, r.flag) for r in rows] == [
        ("client1", "10.78.1.3:40000", "10.78.1.3:40000", 1, 1, "ok"),
        ("client1", "[fd5c:1ab:0:1::3]:40001", "[fd5c:1ab:0:1::3]:40001", 1, 1, "ok"),
    ]


def test_join_keeps_the_families_apart_when_their_records_interleave():
    def interleave(v4, v6):
        return [r for pair in zip(v4, v6, strict=True) for r in pair]
    rows = join_views(_dual_stack_client(interleave))
    assert [(r.own_address, r.sent, r.echoed, r.flag) for r in rows] == [
        ("10.78.1.3:40000", 1, 1, "ok"), ("[fd5c:1ab:0:1::3]:40001", 1, 1, "ok")]


def test_filtering_streams_holding_only_the_clients_addresses():
    """`lab logs` reads a run's records from disk pass by pass: the filter holds the client's
    addresses, never the records, and reads its source twice (addresses, then records)."""
    from lab.logs import iter_filtered

    records = _conversation("10.77.0.11:40000", "10.77.0.11:40000") + [
        rec(service="server", role="server", proto="tcp", event="accepted", peer="10.77.0.12:1", conn=2),
    ]

    class Source:
        passes = 0

        def __iter__(self):
            Source.passes += 1
            yield from records

    picked = iter_filtered(Source(), client="client1")
    assert Source.passes == 1 and not isinstance(picked, list)  # the addresses' pass only, so far
    assert list(picked) == filter_events(records, client="client1") and Source.passes == 2
    Source.passes = 0
    assert len(list(iter_filtered(Source(), proto="tcp"))) == len(records) and Source.passes == 1


def test_lab_logs_prints_a_long_run_holding_no_record(tmp_path, monkeypatch, capsys):
    """`lab logs` reads the run's records from disk on each pass and prints them as they come."""
    import json

    from flood import Flood

    import lab.logs
    from lab.cli import main

    run = tmp_path / "20261125-100000-basic-aaaaaa"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "verdict": "passed"}))
    (run / "events.jsonl").write_text("")
    (run / "wire.json").write_text(json.dumps({"v": 1, "capture": {"status": "off", "reason": "off"},
                                               "flows": [], "messages": [{"where": "request-not-on-wire"}]}))
    records = Flood(5000)
    monkeypatch.setattr(lab.logs, "EventFile", lambda path, **kw: records)
    assert main(["logs", "--out", str(tmp_path), "--client", "client1", "--proto", "udp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f": {len(lines) - 1} records") and len(lines) > 5000 * 2
    assert records.most_alive <= 3
    assert main(["logs", "--out", str(tmp_path), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == sum(1 for _ in records)
    assert records.most_alive <= 3
