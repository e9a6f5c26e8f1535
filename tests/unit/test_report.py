"""What people read: the timeline lines and the per-client table."""

from rich.console import Console

from lab.logs import Conversation
from lab.report import conversation_table, timeline_lines


def render(table) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_timeline_shows_both_addresses_and_the_message():
    line = next(timeline_lines([{
        "ts": "2026-11-25T08:55:41.782355Z", "service": "client1", "proto": "tcp", "event": "sent",
        "local": "10.77.0.5:48606", "peer": "10.77.0.2:19200", "seq": 1, "bytes": 5, "text": "hello",
    }]))
    assert line.startswith("08:55:41.782355")
    assert "client1" in line and "local=10.77.0.5:48606" in line and "peer=10.77.0.2:19200" in line
    assert "seq=1" in line and "'hello'" in line


def test_timeline_marks_base64_route_and_failed_faults():
    lines = list(timeline_lines([
        {"ts": "2026-11-25T08:00:00.000001Z", "service": "server", "proto": "udp", "event": "received",
         "peer": "10.77.0.5:1", "text": "/w==", "b64": True},
        {"ts": "2026-11-25T08:00:00.000002Z", "service": "client1", "proto": "udp", "event": "bound",
         "local": "0.0.0.0:4000", "local_route": "10.77.0.5:4000"},
        {"ts": "2026-11-25T08:00:00.000003Z", "service": "lab", "event": "fault", "action": "pause",
         "target": "server", "t": 1.5, "ok": False, "detail": "no such container"},
    ]))
    assert "b64:'/w=='" in lines[0]
    assert "route=10.77.0.5:4000" in lines[1]
    assert "pause server at t=1.5s" in lines[2] and "FAILED: no such container" in lines[2]


def test_table_has_a_row_per_socket_with_both_views_and_the_flag():
    rows = [
        Conversation(client="client1", client_ip="10.77.0.5", proto="tcp", session=0, client_port=48606,
                     server_saw="10.77.0.5:48606", sent=4, echoed=4, bytes=148, rtt_p50_ms=0.4, rtt_p95_ms=0.6),
        Conversation(client="?", client_ip="10.77.0.9", proto="udp", session=None, client_port=None,
                     server_saw="10.77.0.9:5000", flag="server-only"),
    ]
    text = render(conversation_table(rows))
    assert "10.77.0.5:48606" in text and text.count("10.77.0.5:48606") == 2
    assert "server-only" in text and "10.77.0.9:5000" in text


def test_a_row_captured_on_both_sides_of_a_router_shows_the_wire_on_each():
    nat = Conversation(client="client1", client_ip="10.0.1.3", proto="tcp", session=0, client_port=50000,
                       server_saw="10.0.0.5:50000", flag="nat")
    nat.wire = {"wire_client_near": "10.0.1.3:50000", "wire_client": "10.0.0.5:50000", "wire_flag": "ok"}
    text = render(conversation_table([nat]))
    assert "client's network" in text and "10.0.1.3:50000 → 10.0.0.5:50000" in text
    flat = Conversation(client="client1", client_ip="10.77.0.5", proto="tcp", session=0, client_port=1,
                        server_saw="10.77.0.5:1")
    flat.wire = {"wire_client": "10.77.0.5:1"}
    assert "client's network" not in render(conversation_table([flat]))  # one network: no such column
