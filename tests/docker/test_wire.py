"""The wire view on the real engine: every run records its bridge, the pcap parses, every client
row gets its wire view, and a lossy run says where each lost round trip was lost.

One `udp-loss` run (about 20 s) serves every check here, plus a short run with --no-capture.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import dpkt
import pytest

from lab.wire.pcap import read_capture

from .conftest import only_run_dir, run_lab

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def lossy_run(node_image, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wire-runs")
    proc = run_lab("run", "udp-loss", "--out", str(out))
    run = only_run_dir(out)
    # The wire is judged here, not the scenario's own expectations (random loss may miss a bound):
    # the run only has to have finished.
    verdict = json.loads((run / "manifest.json").read_text())["verdict"]
    assert verdict in ("passed", "failed"), proc.stdout + proc.stderr
    return run


def test_the_run_records_a_pcap_that_standard_tools_read(lossy_run):
    pcap = lossy_run / "capture" / "lab.pcap"
    with open(pcap, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)  # libpcap format, as Wireshark and tcpdump -r read it
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
    read = read_capture(pcap)
    assert read.damage is None and len(read.packets) > 100
    wire = json.loads((lossy_run / "wire.json").read_text())
    capture = wire["capture"]
    assert capture["status"] == "ok" and capture["interface"].startswith("lab-")
    assert capture["kernel_dropped"] == 0, capture  # a drop would be in the verdict details
    manifest = json.loads((lossy_run / "manifest.json").read_text())
    assert manifest["details"] == []
    capture_log = (lossy_run / "records" / "capture.jsonl").read_text()
    assert '"event":"capturing"' in capture_log and '"event":"summary"' in capture_log


def test_every_client_row_gets_its_wire_view(lossy_run):
    with open(lossy_run / "clients.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["client"], r["proto"]) for r in rows) == [
        ("client1", "udp"), ("client2", "udp"), ("client3", "tcp"), ("client4", "tcp")]
    for row in rows:
        # The third view agrees with the other two on the address.
        assert row["wire_client"] == row["server_saw"] == f"{row['client_ip']}:{row['client_port']}", row
        assert int(row["wire_packets_out"]) >= int(row["sent"]) and int(row["wire_bytes_out"]) > 0, row
        assert "no-flow" not in row["wire_flag"] and "wire-only" not in row["wire_flag"], row
    for row in (r for r in rows if r["proto"] == "tcp"):
        assert float(row["handshake_ms"]) > 0 and (row["fin"] or row["rst"]), row
    # 10% loss both ways at the server: TCP got through by retransmitting.
    assert sum(int(r["retransmissions"]) for r in rows if r["proto"] == "tcp") > 0, rows


def test_each_lost_udp_round_trip_says_where(lossy_run):
    wire = json.loads((lossy_run / "wire.json").read_text())
    udp = [m for m in wire["messages"] if m["proto"] == "udp"]
    lost = [m for m in udp if not m["replied"]]
    # 2 clients x 40 messages (a client's first message may be sent again while the server starts).
    assert len({(m["client"], m["seq"]) for m in udp}) == 80
    assert lost, "10% loss each way loses about one round trip in five"
    # The server's shaper drops requests on its ingress and echoes on its egress, both before the
    # capture point sees an echo; the clients are not impaired, so every request is on the wire
    # and an echo on the wire reaches its client: only late, after the client gave up (a busy
    # host), which the client then logged as a late duplicate.
    events = [json.loads(line) for line in (lossy_run / "events.jsonl").read_text().splitlines()]
    late = {(e["service"], e["seq"]) for e in events if e.get("event") == "duplicate" and e.get("reason") == "late"}
    assert {m["where"] for m in lost} <= {"no-echo-on-wire", "echo-not-received"}
    assert any(m["where"] == "no-echo-on-wire" for m in lost)
    for m in lost:
        assert m["request_ts"], m
        if m["where"] == "no-echo-on-wire":
            assert not m["echo_ts"], m
        else:
            # The client took it as the echo of its resend (same bytes), or logged it as late, or
            # it came after the client's last message, when it no longer read.
            last = max(u["seq"] for u in udp if u["client"] == m["client"])
            resent = any(u["client"] == m["client"] and u["seq"] == m["seq"] and u["attempt"] > m["attempt"]
                         for u in udp)
            assert m["echo_ts"] and ((m["client"], m["seq"]) in late or m["seq"] == last or resent), m
    with open(lossy_run / "clients.csv", newline="") as fh:
        rows = {r["client"]: r for r in csv.DictReader(fh)}
    for name in ("client1", "client2"):
        counts = {where: sum(1 for m in lost if m["client"] == name and m["where"] == where)
                  for where in ("no-echo-on-wire", "echo-not-received")}
        assert rows[name]["lost_where"] == " ".join(f"{w}:{n}" for w, n in counts.items() if n)


def test_lab_logs_shows_the_wire_between_the_records(lossy_run):
    proc = run_lab("logs", lossy_run.name, "--client", "client1", "--out", str(lossy_run.parent))
    assert proc.returncode == 0, proc.stderr
    wire_lines = [line for line in proc.stdout.splitlines() if "  wire  " in line]
    assert any(" datagram " in line and " seq=1 " in line for line in wire_lines)
    assert any(" lost " in line and "reason=no-echo-on-wire" in line for line in wire_lines)


def test_a_run_without_capture_says_why_there_is_no_wire_view(node_image, tmp_path):
    proc = run_lab("run", "udp-only", "--no-capture", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = only_run_dir(tmp_path)
    assert not (run / "capture").exists()
    wire = json.loads((run / "wire.json").read_text())
    assert wire["capture"]["status"] == "off" and "--no-capture" in wire["capture"]["reason"]
    with open(run / "clients.csv", newline="") as fh:
        assert {r["wire_flag"] for r in csv.DictReader(fh)} == {"no-capture"}


def test_a_nat_run_records_each_network_and_its_rows_carry_both_sides(node_image, tmp_path):
    """`nat`: clients on `home` behind a masquerading router, the server on `internet`. One pcap
    per network; each row has the client's private address on home and the router's on internet."""
    proc = run_lab("run", "nat", "--out", str(tmp_path))
    run = only_run_dir(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["verdict"] == "passed", proc.stdout + proc.stderr
    assert sorted(p.name for p in (run / "capture").iterdir()) == ["home.pcap", "internet.pcap"]
    wire = json.loads((run / "wire.json").read_text())
    points = {p["network"]: p for p in wire["capture"]["points"]}
    assert {n: (p["side"], p["status"], p["kernel_dropped"]) for n, p in points.items()} == {
        "home": ("client", "ok", 0), "internet": ("server", "ok", 0)}
    assert points["home"]["interface"] != points["internet"]["interface"]
    with open(run / "clients.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(r["client"] != "?" for r in rows), rows  # 3 clients, TCP and UDP
    for row in rows:
        own = f"{row['client_ip']}:{row['client_port']}"
        assert row["flag"] == "nat" and row["wire_flag"] == "ok", row
        assert row["wire_client_near"] == own and row["wire_network_near"] == "home", row
        assert row["wire_client"] == row["server_saw"] != own, row  # the router's address, on internet
    sides = {(f["network"], f["side"]) for f in wire["flows"] if f["owner"]}
    assert sides == {("home", "client"), ("internet", "server")}
    assert not [f for f in wire["flags"] if f["kind"] in ("wire-only", "untranslated")], wire["flags"]
