"""The echo programs where epoll and pipe2 do not exist (macOS, the BSDs), run here by hiding them.

The async server then polls through `selectors` (lab/echo/poller.py); the records and the
service must be the same as with epoll. The fd-limit and backpressure tests run this way too.
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import sys

import pytest
from conftest import parse_records
from server_harness import REPO, WITHOUT_LINUX_ONLY, EchoServer, python_command, tcp_echo, udp_echo

from lab.echo import poller


def test_the_prelude_really_hides_epoll_and_pipe2():
    probe = "import os, select\nprint(hasattr(select, 'epoll'), hasattr(select, 'EPOLLIN'), hasattr(os, 'pipe2'))"
    result = subprocess.run([sys.executable, "-c", WITHOUT_LINUX_ONLY + probe],
                            capture_output=True, text=True, timeout=10, check=True)
    assert result.stdout.split() == ["False", "False", "False"]


def test_async_server_echoes_and_records_tcp_and_udp_without_epoll():
    with EchoServer("--mode", "async", prelude=WITHOUT_LINUX_ONLY) as server:
        echo, local = tcp_echo(server, b"no epoll here")
        assert echo == b"no epoll here"
        accepted = server.wait_record(lambda r: r["event"] == "accepted" and r["peer"] == local)
        received = server.wait_record(lambda r: r["event"] == "received" and r.get("peer") == local)
        assert received["text"] == "no epoll here" and received["conn"] == accepted["conn"]
        server.wait_record(lambda r: r["event"] == "echoed" and r.get("peer") == local and r["bytes"] == 13)
        closed = server.closed(local)
        assert closed["reason"] == "eof" and closed["bytes_in"] == closed["bytes_out"] == 13

        echo, local = udp_echo(server, b"nor pipe2")
        assert echo == b"nor pipe2"
        server.wait_record(lambda r: r["event"] == "echoed" and r["proto"] == "udp" and r["peer"] == local)

        assert server.stop() == 0  # the stop pipe from os.pipe() ends the loop
        (summary,) = server.events("summary")
        assert summary["connections"] == 1 and summary["datagrams"] == 1 and summary["errors"] == 0


def test_client_talks_to_the_server_with_neither_having_epoll():
    with EchoServer("--mode", "async", "--log", "quiet", prelude=WITHOUT_LINUX_ONLY) as server:
        result = subprocess.run(
            [*python_command(WITHOUT_LINUX_ONLY), "client", "--port", str(server.port), "--count", "2",
             "--interval", "0.01"],
            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, result.stderr
        summaries = {r["proto"]: r for r in parse_records(result.stdout) if r["event"] == "summary"}
        assert {p: (s["echoed"], s["ok"]) for p, s in summaries.items()} == {"tcp": (2, True), "udp": (2, True)}
        assert server.stop() == 0


def test_selector_poll_parks_an_fd_with_no_events_and_wakes_it_again():
    read, write = selectors.EVENT_READ, selectors.EVENT_WRITE  # its events are selectors' own
    ours, theirs = socket.socketpair()
    poll = poller.SelectorPoll()
    try:
        fd = ours.fileno()
        poll.register(fd, read)
        theirs.send(b"x")
        assert poll.poll(1) == [(fd, read)]
        poll.modify(fd, 0)  # as the listener does while out of descriptors
        assert poll.poll(0) == []
        poll.modify(fd, read | write)
        assert poll.poll(1) == [(fd, read | write)]
        poll.unregister(fd)
        assert poll.poll(0) == []
        with pytest.raises(FileNotFoundError):  # as epoll says of an fd it does not hold
            poll.unregister(fd)
    finally:
        poll.close()
        ours.close()
        theirs.close()
