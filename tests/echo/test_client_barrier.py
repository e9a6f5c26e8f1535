"""The client behind the lab's start barrier (--start-file): it holds its first message until the
file appears, gives up at --start-deadline, and stops promptly when told to while it waits."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from client_fakes import LiveProgram, TcpEcho, events
from conftest import wait_for


def test_the_client_says_it_is_ready_then_talks_only_once_the_start_file_appears(tmp_path):
    go, ready = tmp_path / "go", tmp_path / "ready"
    with TcpEcho() as server:
        client = LiveProgram("client", "--port", str(server.port), "--proto", "tcp", "--message", "x",
                             "--interval", "0", "--start-file", str(go), "--ready-file", str(ready))
        try:
            wait_for(ready.exists, timeout=30)
            assert ready.read_text() == "waiting\n"
            time.sleep(0.3)
            assert client.lines.empty() and client.proc.poll() is None  # started, silent, waiting
            go.touch()
            assert client.finish() == 0
        finally:
            client.kill()
    assert [r["event"] for r in client.records if r["proto"] == "tcp"][:2] == ["connected", "sent"]


def test_the_client_gives_up_when_the_start_never_comes(tmp_path):
    client = LiveProgram("client", "--port", "9", "--start-file", str(tmp_path / "never"), "--start-deadline", "0.3")
    assert client.finish() == 1
    (error,) = events(client.records, "error")
    assert error["reason"] == "start" and "did not come within 0.3 s" in error["detail"]
    assert not events(client.records, "connected") and not events(client.records, "sent")


def handles_sigterm(pid: int) -> bool:
    """Has the process installed its SIGTERM handler yet (Linux: the caught-signals mask)?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to know the handler is in place")
def test_a_waiting_client_stops_at_once_on_sigterm(tmp_path):
    client = LiveProgram("client", "--port", "9", "--start-file", str(tmp_path / "never"))
    try:
        wait_for(lambda: handles_sigterm(client.proc.pid), timeout=30)
        time.sleep(0.2)  # well into the wait
        client.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert client.finish(timeout=5) == 1
        assert time.monotonic() - started < 2
    finally:
        client.kill()
    assert {r["proto"]: r["reason"] for r in events(client.records, "summary")} == {
        "tcp": "interrupted", "udp": "interrupted"}
    assert not events(client.records, "sent")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to know the handler is in place")
def test_a_client_that_has_talked_says_so_and_stays_until_stopped_then_exits_with_its_status(tmp_path):
    go, ready, leave = tmp_path / "go", tmp_path / "ready", tmp_path / "leave"
    go.touch()
    with TcpEcho() as server:
        client = LiveProgram("client", "--port", str(server.port), "--proto", "tcp", "--message", "x",
                             "--interval", "0", "--start-file", str(go), "--ready-file", str(ready),
                             "--leave-file", str(leave))
        try:
            wait_for(lambda: ready.exists() and ready.read_text() == "done 0\n", timeout=30)
            time.sleep(0.5)
            assert client.proc.poll() is None  # over, and still there: the lab decides when it leaves
            client.proc.send_signal(signal.SIGTERM)
            assert client.finish(timeout=5) == 0  # the conversation's status, not the signal's
        finally:
            client.kill()
    assert [r["ok"] for r in events(client.records, "summary")] == [True]  # one summary, no second one


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to know the handler is in place")
def test_a_held_client_leaves_on_sigterm_without_finishing_its_look_for_the_leave_file(tmp_path):
    """The teardown stops held clients a few at a time: each must go when told, not at its next
    look for the leave file (here a minute away)."""
    go, ready, leave = tmp_path / "go", tmp_path / "ready", tmp_path / "leave"
    go.touch()
    client = LiveProgram("client", "--port", "9", "--proto", "tcp", "--message", "x", "--timeout", "0.2",
                         "--start-file", str(go), "--ready-file", str(ready), "--leave-file", str(leave),
                         "--start-poll", "60")
    try:
        wait_for(lambda: ready.exists() and ready.read_text().startswith("done"), timeout=30)
        time.sleep(0.3)  # into the minute-long look
        assert client.proc.poll() is None
        client.proc.send_signal(signal.SIGTERM)
        assert client.finish(timeout=10) == 1  # well within the minute
    finally:
        client.kill()


def test_a_client_that_has_talked_leaves_by_itself_once_the_leave_file_appears(tmp_path):
    go, ready, leave = tmp_path / "go", tmp_path / "ready", tmp_path / "leave"
    go.touch()
    client = LiveProgram("client", "--port", "9", "--proto", "tcp", "--message", "x", "--timeout", "0.2",
                         "--start-file", str(go), "--ready-file", str(ready), "--leave-file", str(leave))
    try:
        wait_for(lambda: ready.exists() and ready.read_text().startswith("done"), timeout=30)
        assert ready.read_text() == "done 1\n"  # nobody listens on port 9: the conversation failed
        time.sleep(0.3)
        assert client.proc.poll() is None
        leave.touch()
        assert client.finish(timeout=5) == 1
    finally:
        client.kill()
