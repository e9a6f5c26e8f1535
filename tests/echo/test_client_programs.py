"""`python3 -m lab.echo` as a program: help, bad options, signals, and our client against our server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from client_fakes import REPO, LiveClient, LiveProgram, TcpEcho, events, run_client, summary


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.echo", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=10, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_top_level_help_explains_both_programs():
    result = run_module("--help")
    assert result.returncode == 0
    assert "server" in result.stdout and "client" in result.stdout and "exit codes" in result.stdout


def test_client_help_lists_its_options():
    result = run_module("client", "--help")
    assert result.returncode == 0
    for option in ("--server", "--sessions", "--max-loss", "--reconnect-for", "--connect-timeout"):
        assert option in result.stdout


@pytest.mark.parametrize("args", [
    [], ["bogus"], ["client", "--port", "0"], ["client", "--port", "http"], ["client", "--proto", "sctp"],
    ["client", "--count", "0"], ["client", "--size", "-5"], ["client", "--timeout", "0"],
    ["client", "--max-loss", "1.5"], ["client", "--sessions", "0"], ["client", "--retries", "-1"],
    ["client", "--message", ""], ["client", "--size", "70000"], ["client", "--interval", "nan"],
    ["client", "--reconnect-for", "-1"], ["client", "--unknown"], ["client", "--size", "10", "--message", "x"],
    ["client", "--source-port", "40000", "--sessions", "2"], ["client", "--source-port", "70000"],
    ["client", "--server", "10.0.0.1,"], ["client", "--server", "::1,::1"],
])
def test_bad_options_exit_2_with_one_line(args):
    result = run_module(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    if args:  # a bare `python3 -m lab.echo` prints the usage to stderr instead
        assert len(result.stderr.strip().splitlines()) == 1 and "error" in result.stderr
    assert result.stdout == ""


def test_oversized_udp_message_is_fine_over_tcp_only(capsys):
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--size", "70000", "--proto", "tcp",
                                   "--interval", "0")
    assert code == 0 and summary(records, "tcp")["echoed"] == 1


def test_messages_list_with_separator_and_name(capsys):
    with TcpEcho() as server:
        code, records = run_client(capsys, "--port", str(server.port), "--messages", "alpha;beta;伽马",
                                   "--separator", ";", "--name", "client-7", "--proto", "tcp", "--interval", "0")
    assert code == 0
    assert [r["text"] for r in events(records, "sent")] == ["alpha", "beta", "伽马"]
    assert {r["host"] for r in records} == {"client-7"}
    assert {r["role"] for r in records} == {"client"}


def test_lab_name_from_environment():
    with TcpEcho() as server, LiveClient("--port", str(server.port), "--message", "x", "--proto", "tcp",
                                         env={"LAB_NAME": "client-env"}) as client:
        assert client.finish() == 0
    assert {r["host"] for r in client.records} == {"client-env"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_client_with_an_interrupted_summary(sig):
    with TcpEcho(mute=True) as server, LiveClient("--port", str(server.port), "--message", "wait",
                                                  "--timeout", "60") as client:
        client.wait_record(lambda r: r["event"] == "sent")
        client.proc.send_signal(sig)
        code = client.finish(timeout=5)
    assert code == 1
    tcp, udp = summary(client.records, "tcp"), summary(client.records, "udp")
    assert tcp["reason"] == "interrupted" and tcp["sent"] == 1 and tcp["ok"] is False
    assert udp["reason"] == "interrupted" and udp["sent"] == 0, "UDP never started, still summarised"
    assert "Traceback" not in client.stderr


@pytest.mark.parametrize("mode", ["iterative", "threaded", "async"])
def test_client_against_the_real_server(mode):
    with LiveProgram("server", "--port", "0", "--mode", mode, "--log", "messages") as server:
        listening = server.wait_record(lambda r: r["event"] == "listening")
        port = int(listening["local"].rsplit(":", 1)[1])
        with LiveClient("--port", str(port), "--interval", "0", "--count", "5", "--sessions", "3",
                        "--timeout", "5") as client:
            code = client.finish()
        server.proc.send_signal(signal.SIGTERM)
        server.finish()
    assert code == 0, client.records
    server_peers = {(r["proto"], r["peer"]) for r in server.records if r["event"] in ("accepted", "received")}
    client_ends = {("tcp", r["local"]) for r in events(client.records, "connected")}
    client_ends |= {("udp", r["local_route"]) for r in events(client.records, "bound")}
    assert len(client_ends) == 6 and client_ends == server_peers
    assert summary(client.records, "tcp")["echoed"] == 15 and summary(client.records, "udp")["echoed"] == 15


def test_large_message_against_the_real_server_reads_many_times():
    with LiveProgram("server", "--port", "0", "--proto", "tcp", "--log", "connections") as server:
        listening = server.wait_record(lambda r: r["event"] == "listening")
        with LiveClient("--server", "localhost", "--port", listening["local"].rsplit(":", 1)[1], "--proto", "tcp",
                        "--size", str(64 * 1024 + 1), "--count", "2", "--interval", "0") as client:
            code = client.finish()
        server.proc.send_signal(signal.SIGTERM)
        server.finish()
    assert code == 0
    replies = events(client.records, "reply")
    assert len(replies) == 2 and all(r["intact"] and r["reads"] > 1 for r in replies)
    (accepted,) = [r for r in server.records if r["event"] == "accepted"]
    assert accepted["peer"] == events(client.records, "connected")[0]["local"]


def test_source_port_binds_both_protocols_to_the_chosen_port():
    with socket.socket() as probe:  # a port free on loopback right now
        probe.bind(("127.0.0.1", 0))
        chosen = probe.getsockname()[1]
    with LiveProgram("server", "--port", "0", "--mode", "async") as server:
        listening = server.wait_record(lambda r: r["event"] == "listening")
        port = int(listening["local"].rsplit(":", 1)[1])
        with LiveClient("--port", str(port), "--interval", "0", "--count", "2", "--source-port", str(chosen),
                        "--timeout", "5") as client:
            code = client.finish()
        server.proc.send_signal(signal.SIGTERM)
        server.finish()
    assert code == 0, client.records
    peers = {(r["proto"], r["peer"]) for r in server.records if r["event"] in ("accepted", "received")}
    assert peers == {("tcp", f"127.0.0.1:{chosen}"), ("udp", f"127.0.0.1:{chosen}")}

