"""Our client against echo servers we did not write: socat and ncat (nmap) on loopback.

The servers start in the background and the client's --connect-timeout waits for them, the way
containers that start in any order do.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from client_fakes import events, free_port, run_client, summary

WAIT = ("--connect-timeout", "5", "--interval", "0", "--timeout", "2")


@pytest.fixture
def background():
    """Start a server command; every one started is terminated (then killed) at teardown."""
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        if shutil.which(argv[0]) is None:
            pytest.fail(f"{argv[0]} is not installed (apt-get install {argv[0]})")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_all_echoed(records: list[dict], proto: str, expected: int) -> None:
    total = summary(records, proto)
    assert total["ok"], total
    assert (total["sent"], total["echoed"], total["mismatched"]) == (expected, expected, 0)
    replies = events(records, "reply", proto)
    assert len(replies) == expected and all(r["intact"] for r in replies)


def test_socat_tcp_echo_sessions_and_large_messages(capsys, background):
    port = free_port()
    background("socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "PIPE")
    code, records = run_client(capsys, "--port", str(port), "--proto", "tcp", "--sessions", "4",
                               "--size", "100000", "--count", "2", *WAIT)
    assert code == 0
    check_all_echoed(records, "tcp", 8)
    assert all(r["reads"] > 1 for r in events(records, "reply"))
    assert len({r["local"] for r in events(records, "connected")}) == 4


def test_socat_udp_echo_default_messages(capsys, background):
    port = free_port()
    background("socat", f"UDP-RECVFROM:{port},bind=127.0.0.1,fork", "PIPE")
    code, records = run_client(capsys, "--port", str(port), "--proto", "udp", "--sessions", "3", *WAIT)
    assert code == 0
    check_all_echoed(records, "udp", 12)
    assert any("你好" in r["text"] for r in events(records, "sent"))


def test_ncat_tcp_echo(capsys, background):
    port = free_port()
    background("ncat", "-l", "-k", "127.0.0.1", str(port), "--exec", "/bin/cat")
    code, records = run_client(capsys, "--port", str(port), "--proto", "tcp", "--sessions", "2",
                               "--size", "3000", "--count", "3", "--fill", "bytes", *WAIT)
    assert code == 0
    check_all_echoed(records, "tcp", 6)
    assert all(r["b64"] for r in events(records, "sent"))


def test_ncat_udp_echo(capsys, background):
    # ncat -u -e pipes datagrams through cat as a stream: fine for one sender, one message at a time
    port = free_port()
    background("ncat", "-u", "-l", "-k", "127.0.0.1", str(port), "--exec", "/bin/cat")
    code, records = run_client(capsys, "--port", str(port), "--proto", "udp", "--count", "6", *WAIT)
    assert code == 0
    check_all_echoed(records, "udp", 6)
