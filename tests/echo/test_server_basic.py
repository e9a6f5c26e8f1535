"""The echo server's normal service in every mode: echoes, records, signals, options, IPv6."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from server_harness import REPO, EchoServer, addr_text, recv_exactly, tcp_echo, udp_echo, wait_until

MODES = ["iterative", "threaded", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_tcp_echo_records_the_clients_own_address(mode):
    with EchoServer("--mode", mode) as server:
        echo, local = tcp_echo(server, b"hello lab")
        assert echo == b"hello lab"
        accepted = server.wait_record(lambda r: r["event"] == "accepted" and r["peer"] == local)
        assert accepted["proto"] == "tcp" and accepted["local"] == f"127.0.0.1:{server.port}"
        received = server.wait_record(lambda r: r["event"] == "received" and r.get("peer") == local)
        assert received["text"] == "hello lab" and received["bytes"] == 9 and received["conn"] == accepted["conn"]
        server.wait_record(lambda r: r["event"] == "echoed" and r.get("peer") == local and r["bytes"] == 9)
        closed = server.closed(local)
        assert closed["reason"] == "eof" and closed["bytes_in"] == closed["bytes_out"] == 9
        assert server.stop() == 0


@pytest.mark.parametrize("mode", MODES)
def test_udp_echo_records_the_senders_address(mode):
    with EchoServer("--mode", mode) as server:
        echo, local = udp_echo(server, "grüß dich".encode())
        assert echo == "grüß dich".encode()
        received = server.wait_record(lambda r: r["event"] == "received" and r["proto"] == "udp")
        assert received["peer"] == local and received["text"] == "grüß dich"
        server.wait_record(lambda r: r["event"] == "echoed" and r["proto"] == "udp" and r["peer"] == local)


@pytest.mark.parametrize("mode", MODES)
def test_large_message_is_echoed_whole_in_reads_of_at_most_1024(mode):
    payload = os.urandom(200_000)
    with EchoServer("--mode", mode, "--log", "messages") as server:
        echo, local = tcp_echo(server, payload)
        assert echo == payload
        closed = server.closed(local)
        assert closed["bytes_in"] == closed["bytes_out"] == len(payload)
        reads = [r for r in server.events("received", "tcp") if r["peer"] == local]
        assert sum(r["bytes"] for r in reads) == len(payload)
        assert max(r["bytes"] for r in reads) <= 1024


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_closes_connections_and_summarises(mode, sig):
    with EchoServer("--mode", mode) as server:
        tcp_echo(server, b"one")
        udp_echo(server, b"two")
        with socket.create_connection(server.addr, timeout=5) as idle:
            local = addr_text(idle.getsockname())
            server.wait_record(lambda r: r["event"] == "accepted" and r["peer"] == local)
            assert server.stop(sig) == 0
            assert recv_exactly(idle, 1) == b""  # the server closed it
        assert server.closed(local)["reason"] == "shutdown"
        (summary,) = server.events("summary")
        assert summary["connections"] == 2 and summary["datagrams"] == 1
        assert summary["bytes_in"] == summary["bytes_out"] == 6
        assert summary["errors"] == 0 and summary["uptime_s"] >= 0
        assert server.records[-1]["event"] == "summary"


def test_ready_file_exists_while_serving_and_is_removed_at_exit(tmp_path):
    ready = tmp_path / "ready"
    with EchoServer("--ready-file", str(ready)) as server:
        server.wait_record(lambda r: r["event"] == "listening" and r["proto"] == "udp")
        wait_until(ready.exists)  # written right after the listening records
        assert f"tcp 127.0.0.1:{server.port}" in ready.read_text()
        assert server.stop() == 0
    assert not ready.exists()


def test_connections_level_logs_no_messages():
    with EchoServer("--log", "connections") as server:
        _, local = tcp_echo(server, b"quiet please")
        server.closed(local)
        udp_echo(server, b"x")
        assert server.stop() == 0
        events = {r["event"] for r in server.records}
        assert "received" not in events and "echoed" not in events
        assert {"listening", "accepted", "closed", "summary"} <= events


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ipv6_loopback_bind(proto):
    with EchoServer(protos=(proto,), host="::1") as server:
        echo_fn = tcp_echo if proto == "tcp" else udp_echo
        echo, local = echo_fn(server, b"six")
        assert echo == b"six" and local.startswith("[::1]:")
        event = "accepted" if proto == "tcp" else "received"
        assert server.wait_record(lambda r: r["event"] == event)["peer"] == local


def test_dual_stack_logs_ipv4_clients_as_plain_ipv4():
    with EchoServer(host="::") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            local = addr_text(sock.getsockname())
            sock.sendall(b"v4")
            assert recv_exactly(sock, 2) == b"v4"
        assert server.wait_record(lambda r: r["event"] == "accepted")["peer"] == local == f"127.0.0.1:{local.split(':')[1]}"


def run_server_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "lab.echo", "server", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("args", [
    ["--port", "70000"], ["--port", "x"], ["--mode", "forking"], ["--proto", "sctp"], ["--proto", ""],
    ["--idle-timeout", "-1"], ["--idle-timeout", "nan"], ["--log", "loud"], ["--buffer-cap", "10"],
    ["--read-size", "0"], ["--host", "no-such-host.invalid"], ["--bogus"],
])
def test_bad_option_values_exit_2_with_one_line(args):
    result = run_server_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_port_in_use_is_an_error_record_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_server_cli("--host", "127.0.0.1", "--port", str(port), "--proto", "tcp")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert '"event":"error"' in result.stdout and '"reason":"bind"' in result.stdout
