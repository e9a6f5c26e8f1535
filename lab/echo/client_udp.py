"""One UDP session of the echo client: sendto without connect, wait for each datagram's echo.

The socket stays unconnected, as in the tutorial, so the kernel picks the ephemeral port at
the first sendto. Replies are matched by content, which is sound because the client's messages
are unique (a cycled repeat is sent as `#SEQ text`): a late echo of an earlier message (after
its timeout, or a second copy after a retry) is logged as `duplicate`, never counted for the
message being waited on. Datagrams from any other address are logged as stray.

The sessions of one client close their sockets together, once the last one is over (`Leaving`):
a socket closed early frees its port, and the kernel may give that port to a session that
starts later, so two sessions meant to run side by side would share one port (seen under load
with 20 sessions). Closing a UDP socket puts nothing on the wire, so holding it changes nothing
the server or the capture sees.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from lab.echo.client_core import (
    ClientPlan,
    Interrupted,
    Session,
    SessionFailed,
    SessionTally,
    StopFlag,
    backoff_delays,
    bind_source_port,
    emit_error,
    resolve,
    route_source,
    wait_ready,
)
from lab.records.schema import format_addr, text_fields
from lab.records.writer import RecordWriter

DATAGRAM_MAX = 65535


class Leaving:
    """Holds each of `sessions` sessions at its end until the last one is over."""

    def __init__(self, sessions: int) -> None:
        self._running = sessions
        self._changed = threading.Condition()

    def over_and_wait(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._running <= 0)


class UdpSession(Session):
    """Runs one session's messages from one unconnected UDP socket."""

    proto = "udp"

    def __init__(self, plan: ClientPlan, session: int, writer: RecordWriter, stop: StopFlag,
                 leaving: Leaving | None = None) -> None:
        super().__init__(plan, session, writer, stop)
        # payload -> (seq, echoed?) for every message already given up on or answered
        self.earlier: dict[bytes, tuple[int, bool]] = {}
        self.leaving = leaving

    def run(self) -> SessionTally:
        try:
            self._open()
            for seq, payload in enumerate(self.plan.messages, 1):
                if seq > 1:
                    self.stop.sleep(self.plan.interval)
                self._exchange(seq, payload)
        except Interrupted:
            self.tally.interrupted = True
        except SessionFailed as exc:
            self.record_failure(exc)
        finally:
            if self.leaving is not None:
                self.leaving.over_and_wait()  # the port stays this session's until every session is over
            if self.sock is not None:
                self.sock.close()
                if self.local is not None:
                    self.writer.emit("udp", "closed", **self.fields())
        return self.tally

    def _open(self) -> None:
        """Resolve the server (retrying while --connect-timeout lasts) and make the socket."""
        family, addr = self.retry_while_starting(
            lambda _attempt: resolve(self.plan.server, self.plan.port, socket.SOCK_DGRAM)[0])
        self.peer = addr
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        bind_source_port(self.sock, family, self.plan.source_port)
        self.sock.setblocking(False)

    def _send(self, seq: int, payload: bytes, attempt: int) -> float:
        """sendto once; logs `bound` after the first one. Returns the send time."""
        assert self.sock is not None and self.peer is not None
        started = time.monotonic()
        try:
            self.sock.sendto(payload, self.peer)
        except OSError as exc:
            # e.g. network unreachable while the lab network is being set up: counts as a timeout
            emit_error(self.writer, "udp", self.session, "send", str(exc), seq=seq, attempt=attempt)
            return started
        if self.local is None:
            self.local = self.sock.getsockname()
            self.tally.add_port(self.local[1])
            extra = {}
            if self.local[0] in ("0.0.0.0", "::"):
                source = route_source(self.sock.family, self.peer)
                if source:
                    extra["local_route"] = format_addr((source, self.local[1]))
            self.writer.emit("udp", "bound", **self.fields(), **extra)
        self.writer.emit("udp", "sent", seq=seq, bytes=len(payload), attempt=attempt if attempt > 1 else None,
                         **self.fields(), **text_fields(payload))
        return started

    def _attempts(self, seq: int):
        """(attempt, wait) for one message: 1 + --retries attempts waiting --timeout each. The
        first message gets more while --connect-timeout lasts (the server may still be starting),
        with waits growing by backoff from 0.1 s up to --timeout so a late server is found soon."""
        deadline = time.monotonic() + self.plan.connect_timeout
        delays = backoff_delays()
        attempt = 1
        while True:
            starting = seq == 1 and time.monotonic() < deadline
            if not starting and attempt > 1 + self.plan.retries:
                return
            yield attempt, min(self.plan.timeout, next(delays)) if starting else self.plan.timeout
            attempt += 1

    def _exchange(self, seq: int, payload: bytes) -> None:
        for attempt, wait in self._attempts(seq):
            started = self._send(seq, payload, attempt)
            if attempt == 1:
                self.tally.sent += 1
            reply = self._await_reply(seq, payload, wait)
            if reply is not None:
                echo, arrived = reply
                self.record_reply(seq, payload, echo, (arrived - started) * 1000)
                self.earlier[payload] = (seq, True)
                return
            self.writer.emit("udp", "timeout", session=self.session, seq=seq, attempt=attempt)
        self.earlier[payload] = (seq, False)

    def _await_reply(self, seq: int, payload: bytes, wait: float) -> tuple[bytes, float] | None:
        """The echo for this message (data, arrival time), or None after `wait` seconds."""
        assert self.sock is not None and self.peer is not None
        deadline = time.monotonic() + wait
        while wait_ready(self.sock, select.POLLIN, deadline, self.stop):
            try:
                data, source = self.sock.recvfrom(DATAGRAM_MAX)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                # ICMP errors only reach connected sockets on Linux, but be safe elsewhere
                emit_error(self.writer, "udp", self.session, "recv", str(exc), seq=seq)
                continue
            arrived = time.monotonic()
            if source[:2] != self.peer[:2]:
                emit_error(self.writer, "udp", self.session, "stray", f"{len(data)} bytes from another address",
                           peer=format_addr(source), bytes=len(data))
                continue
            if data != payload and data in self.earlier:
                earlier_seq, was_echoed = self.earlier[data]
                self.writer.emit("udp", "duplicate", session=self.session, seq=earlier_seq, bytes=len(data),
                                 reason="duplicate" if was_echoed else "late", local=format_addr(self.local),
                                 peer=format_addr(source))
                continue
            return data, arrived
        return None


def run_udp_session(plan: ClientPlan, session: int, writer: RecordWriter, stop: StopFlag,
                    leaving: Leaving | None = None) -> SessionTally:
    return UdpSession(plan, session, writer, stop, leaving).run()
