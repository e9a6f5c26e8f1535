"""The echo client over TCP against in-test servers that echo, alter, stall, drop and restart."""

from __future__ import annotations

import select
import socket
import time

from client_fakes import LiveClient, TcpEcho, events, run_client, summary

from lab.echo import client_tcp
from lab.records.schema import format_addr

FAST = ("--interval", "0", "--timeout", "2", "--proto", "tcp")


def test_default_messages_echo_intact_and_local_port_matches_server_view(capsys):
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), *FAST)
    assert code == 0
    (connected,) = events(records, "connected")
    assert connected["local"] == format_addr(server.peers[0])
    assert connected["peer"] == f"127.0.0.1:{server.port}"
    sent = events(records, "sent")
    assert len(sent) == 4
    assert any("你好" in r["text"] for r in sent), "default messages include Chinese text"
    replies = events(records, "reply")
    assert [r["seq"] for r in replies] == [1, 2, 3, 4]
    assert all(r["intact"] and r["reads"] >= 1 and r["rtt_ms"] >= 0 for r in replies)
    assert [r["bytes"] for r in replies] == [r["bytes"] for r in sent]
    total = summary(records, "tcp")
    assert total["ok"] is True and "reason" not in total
    assert (total["sent"], total["echoed"], total["mismatched"], total["lost"]) == (4, 4, 0, 0)
    assert total["local_ports"] == [server.peers[0][1]]
    assert total["rtt_p50_ms"] <= total["rtt_p95_ms"] <= total["rtt_max_ms"]
    assert events(records, "closed")[0]["reason"] == "done"
    assert b"".join(r["text"].encode() for r in sent) == bytes(server.received)


def test_large_message_needs_several_reads_and_comes_back_whole(capsys):
    # 200 000 bytes: more than one recv (the client reads at most 64 KiB at a time) and more
    # than the socket buffers, so sending and reading must interleave.
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--size", "200000", "--count", "2", *FAST)
    assert code == 0
    replies = events(records, "reply")
    assert [r["bytes"] for r in replies] == [200000, 200000]
    assert all(r["intact"] and r["reads"] > 1 for r in replies)
    sent = events(records, "sent")
    assert all(r["truncated"] and len(r["text"]) == 1024 for r in sent)
    assert len(server.received) == 400000


def test_non_utf8_payload_is_logged_as_base64(capsys):
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--size", "300", "--fill", "bytes", *FAST)
    assert code == 0
    (sent,) = events(records, "sent")
    assert sent["b64"] is True
    import base64
    assert base64.b64decode(sent["text"]) == bytes(server.received)


def test_twenty_sessions_use_twenty_ports_the_server_saw(capsys):
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--sessions", "20", "--count", "2", *FAST)
    assert code == 0
    connected = events(records, "connected")
    assert sorted(r["session"] for r in connected) == list(range(20))
    ports = {int(r["local"].rsplit(":", 1)[1]) for r in connected}
    assert len(ports) == 20
    assert {r["local"] for r in connected} == {format_addr(p) for p in server.peers}
    total = summary(records, "tcp")
    assert total["ok"] and total["sent"] == 40 and total["echoed"] == 40
    assert sorted(total["local_ports"]) == sorted(ports)


def test_altered_echo_is_not_intact_and_fails(capsys):
    with TcpEcho(alter=lambda data: data.upper()) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "abc", "--message", "XYZ", *FAST)
    assert code == 1
    first, second = events(records, "reply")
    assert first["intact"] is False and first["text"] == "ABC"
    assert second["intact"] is True
    total = summary(records, "tcp")
    assert total["ok"] is False and total["mismatched"] == 1 and total["echoed"] == 1
    assert "not intact" in total["reason"]


def test_server_that_never_echoes_times_out(capsys):
    with TcpEcho(mute=True) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hi", "--message", "there",
                                   "--interval", "0", "--timeout", "0.2", "--proto", "tcp")
    assert code == 1
    (timeout,) = events(records, "timeout")
    assert timeout["seq"] == 1
    total = summary(records, "tcp")
    assert (total["sent"], total["lost"], total["ok"]) == (1, 1, False)
    assert "timeout" in total["reason"]


def test_dropped_connection_without_reconnect_fails(capsys):
    with TcpEcho(drop_after=3) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "one", "--message", "two", *FAST)
    assert code == 1
    total = summary(records, "tcp")
    assert total["echoed"] == 1 and total["lost"] == 1 and not total["ok"]
    assert any(word in total["reason"] for word in ("eof", "reset"))
    assert not events(records, "reconnect")


def test_reconnect_after_drop_resends_the_message_from_a_new_port(capsys):
    with TcpEcho(drop_after=3) as server:  # closes the first connection after echoing "one"
        code, records = run_client(capsys, "--port", str(server.port), "--message", "one", "--message", "two",
                                   "--message", "three", "--reconnect", "--reconnect-for", "5", *FAST)
    assert code == 0, records
    first, second = events(records, "connected")
    assert first["local"] != second["local"]
    assert [first["local"], second["local"]] == [format_addr(p) for p in server.peers]
    (reconnect,) = events(records, "reconnect")
    assert reconnect["reason"] in ("eof", "reset") and reconnect["attempt"] == 1
    resent = [r for r in events(records, "sent") if r["seq"] == 2]
    assert [r.get("attempt") for r in resent] == [None, 2]
    assert resent[1]["local"] == second["local"]
    total = summary(records, "tcp")
    assert (total["sent"], total["echoed"], total["lost"], total["ok"]) == (3, 3, 0, True)
    assert total["local_ports"] == [p[1] for p in server.peers]


def test_reconnect_survives_a_server_restart_on_the_same_port():
    # The server dies on receiving message 2 and stays down until the client has been
    # refused at least once; then it comes back on the same port.
    server = TcpEcho(die_at=len("onetwo"))
    try:
        with LiveClient("--port", str(server.port), "--message", "one", "--message", "two", "--message", "three",
                        "--reconnect-for", "8", *FAST) as client:
            assert server.died.wait(5)
            client.wait_record(lambda r: r["event"] == "reconnect" and r["attempt"] >= 2)
            server.start()
            code = client.finish()
            records = client.records
    finally:
        server.stop()
    assert code == 0, records
    first, second = events(records, "connected")
    assert [first["local"], second["local"]] == [format_addr(p) for p in server.peers]
    assert first["local"] != second["local"]
    assert second["attempt"] >= 2 and second["peer"] == first["peer"]
    resent = [r for r in events(records, "sent") if r["seq"] == 2]
    assert [r["local"] for r in resent] == [first["local"], second["local"]]
    total = summary(records, "tcp")
    assert (total["sent"], total["echoed"], total["ok"]) == (3, 3, True)
    assert total["local_ports"] == [p[1] for p in server.peers]
    assert bytes(server.received) == b"onetwotwothree"


def test_connect_timeout_waits_for_a_server_that_starts_late():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    port = holder.getsockname()[1]
    server = None
    try:
        with LiveClient("--port", str(port), "--message", "hi", "--connect-timeout", "8", *FAST) as client:
            client.wait_record(lambda r: r["event"] == "retry" and r["attempt"] >= 2)
            holder.close()
            server = TcpEcho(port=port)
            code = client.finish()
    finally:
        holder.close()
        if server is not None:
            server.stop()
    records = client.records
    assert code == 0, records
    retries = events(records, "retry")
    assert all(r["reason"] == "connect" and "refused" in r["detail"].lower() for r in retries)
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert [r["delay_ms"] for r in retries] == [100, 200, 400, 800, 1600, 2000, 2000, 2000][: len(retries)]
    (connected,) = events(records, "connected")
    assert connected["attempt"] == len(retries) + 1
    assert connected["local"] == format_addr(server.peers[0])


def test_no_server_fails_fast_without_connect_timeout(capsys):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = holder.getsockname()[1]
        code, records = run_client(capsys, "--port", str(port), *FAST)
    assert code == 1
    (error,) = events(records, "error")
    assert error["reason"] == "connect" and "refused" in error["detail"].lower()
    total = summary(records, "tcp")
    assert total["sent"] == 0 and not total["ok"] and total["local_ports"] == []


def test_connection_dropped_before_the_first_echo_is_retried_within_connect_timeout(capsys):
    # e.g. a port proxy that accepts before the real server is up: no --reconnect needed
    with TcpEcho(drop_after=0) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hi", "--connect-timeout", "5",
                                   *FAST)
    assert code == 0, records
    assert len(events(records, "connected")) == 2 == len(server.peers)
    assert events(records, "reconnect")[0]["reason"] in ("eof", "reset")
    assert summary(records, "tcp")["echoed"] == 1


def test_connection_dropped_after_an_echo_needs_reconnect_even_with_connect_timeout(capsys):
    with TcpEcho(drop_after=2) as server:
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hi", "--message", "yo",
                                   "--connect-timeout", "5", *FAST)
    assert code == 1
    assert len(server.peers) == 1 and not events(records, "reconnect")


def _connect_then_await_reset(server: TcpEcho, real_connect):
    """connect_stoppable that, for a connection the server is to reset, has it reset once the
    connect succeeded and returns when the RST has arrived: the client meets the reset between
    connect() and getpeername(), a window too short to hit on purpose otherwise."""

    def connect(sock, addr, timeout, stop):
        real_connect(sock, addr, timeout, stop)
        if server.resets >= server.reset_first:
            return
        resets = server.resets
        server.reset_now.set()
        deadline = time.monotonic() + 5
        poller = select.poll()
        poller.register(sock, select.POLLIN)  # a reset makes the socket readable (POLLERR/POLLHUP)
        while server.resets == resets or not poller.poll(20):
            assert time.monotonic() < deadline, "the server's reset never arrived"
            time.sleep(0.01)
    return connect


def test_reset_right_after_connect_is_a_connect_failure_that_is_retried(capsys, monkeypatch):
    with TcpEcho(reset_first=1) as server:
        monkeypatch.setattr(client_tcp, "connect_stoppable",
                            _connect_then_await_reset(server, client_tcp.connect_stoppable))
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hi",
                                   "--connect-timeout", "5", *FAST)
    assert not [r for r in records if r["event"] == "error" and r.get("reason") == "internal"]
    (retry,) = events(records, "retry")
    assert retry["reason"] == "connect" and retry["attempt"] == 1
    assert code == 0 and summary(records, "tcp")["echoed"] == 1
    (connected,) = events(records, "connected")
    assert connected["attempt"] == 2 and connected["local"] == format_addr(server.peers[0])


def test_reset_right_after_connect_without_connect_timeout_is_logged_and_fails(capsys, monkeypatch):
    with TcpEcho(reset_first=1) as server:
        monkeypatch.setattr(client_tcp, "connect_stoppable",
                            _connect_then_await_reset(server, client_tcp.connect_stoppable))
        code, records = run_client(capsys, "--port", str(server.port), "--message", "hi", *FAST)
    (error,) = events(records, "error")
    assert error["reason"] == "connect" and error["detail"]
    total = summary(records, "tcp")
    assert code == 1 and total["reason"].startswith("session 0: connect: ")
