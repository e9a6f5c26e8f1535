"""The server's spare descriptor: at the fd limit it refuses one waiting client and says whether
accepting may go on (a client taken off the backlog) or must pause (nobody taken)."""

from __future__ import annotations

import io
import json
import socket

import pytest

from lab.echo.server_core import ServerContext, Settings
from lab.records.schema import format_addr
from lab.records.writer import RecordWriter


@pytest.fixture
def ctx():
    out = io.StringIO()
    context = ServerContext(Settings(), RecordWriter(role="server", host="t", stream=out))
    context.out = out
    yield context
    context.close()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def records(ctx) -> list[dict]:
    return [json.loads(line) for line in ctx.out.getvalue().splitlines()]


class AbortedListener:
    """A listener whose waiting client gave up before accept() (ECONNABORTED)."""

    def accept(self):
        raise ConnectionAbortedError(103, "Software caused connection abort")


def test_a_waiting_client_is_refused_by_name_and_accepting_goes_on(ctx, listener):
    with socket.create_connection(listener.getsockname()) as client:
        assert ctx.refuse_waiting_client(listener, "EMFILE") is True
        assert client.recv(1) == b""  # closed by the server, not left hanging
        (refused,) = records(ctx)
        assert refused["event"] == "refused" and refused["peer"] == format_addr(client.getsockname())
    assert ctx.fd_reserve.fd is not None  # the spare is held again


def test_nobody_waiting_means_back_off_and_no_record(ctx, listener):
    assert ctx.refuse_waiting_client(listener, "EMFILE") is False
    assert records(ctx) == [] and ctx.fd_reserve.fd is not None


def test_a_client_that_aborted_was_taken_off_the_backlog_so_accepting_goes_on(ctx):
    assert ctx.refuse_waiting_client(AbortedListener(), "EMFILE") is True
    (refused,) = records(ctx)
    assert refused["reason"] == "fd-limit" and "peer" not in refused
    assert ctx.fd_reserve.fd is not None


def test_without_a_spare_nothing_is_taken(ctx, listener):
    ctx.fd_reserve.close()
    with socket.create_connection(listener.getsockname()):
        assert ctx.refuse_waiting_client(listener, "EMFILE") is False
    assert records(ctx) == []
