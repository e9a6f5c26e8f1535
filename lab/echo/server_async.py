"""The `async` mode: one thread, one epoll loop, every TCP client and the UDP socket at once
(without epoll, e.g. on macOS, the same loop over `selectors`: see poller.py).

A hand-written loop rather than asyncio: echo needs only recv/send per wake-up, and skipping
asyncio's scheduling layers is what lets a Python server keep pace with socat on one connection.
Backpressure: while a client's unsent echo is at or above the buffer cap, its socket is not
read, so the kernel's flow control makes that client's sends block instead of our memory grow.
Latency: after a wake-up that had work, the loop polls without sleeping for SPIN_S before it
blocks again. On a virtual machine, being put to sleep in epoll_wait and woken by the next
message costs more than echoing it; a client that sends its next message within that window
(a conversation) finds the server awake. The price is at most SPIN_S of CPU per burst of work.
"""

from __future__ import annotations

import collections
import socket
import time

from lab.echo.poller import HANGUP, IN, OUT, new_poller
from lab.echo.server_core import FD_LIMIT_ERRNOS, RESET_ERRORS, ServerContext, eof_reason, peer_text

SPIN_S = 100e-6  # busy-poll this long after work before sleeping (see the module docstring)
ACCEPT_BATCH = 64  # accepts / datagrams handled per wake-up before other sockets get a turn


class TcpConn:
    """One accepted client: read, echo what was read, remember what the kernel did not take."""

    __slots__ = ("loop", "sock", "fd", "peer", "local", "num", "bytes_in", "bytes_out",
                 "out", "chunks", "head_sent", "last_in", "last_out", "events", "closed", "eof_reason")

    def __init__(self, loop: EchoLoop, sock: socket.socket, peer: str | None, local: str | None, num: int):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.local = local
        self.num = num
        self.bytes_in = 0
        self.bytes_out = 0
        self.out = bytearray()  # echo the kernel has not accepted yet
        self.chunks: collections.deque[int] = collections.deque()  # sizes of reads in `out`
        self.head_sent = 0  # bytes of chunks[0] already sent
        self.last_in = self.last_out = loop.now
        self.events = IN
        self.closed = False
        self.eof_reason: str | None = None  # set once the peer's FIN arrived; close when drained

    def on_event(self, events: int) -> None:
        if events & OUT or (events & HANGUP and self.out):
            self.flush()
        if events & ~OUT and not self.closed and self.events & IN:
            self.read()

    def read(self) -> None:
        loop = self.loop
        try:
            data = self.sock.recv(loop.read_size)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close_on_error(exc)
            return
        if not data:
            self.eof_reason = eof_reason(self.sock, len(self.out))
            if self.out:
                self.update_events()  # stop reading; flush() closes once the echo is out
            else:
                self.close(self.eof_reason)
            return
        n = len(data)
        self.bytes_in += n
        self.last_in = loop.now
        ctx = loop.ctx
        if ctx.log_messages:
            ctx.received("tcp", self.local, self.peer, self.num, data)
        if self.out:
            self.out += data
            self.chunks.append(n)
            self.update_events()
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.close_on_error(exc)
            return
        self.bytes_out += sent
        if sent == n:
            if ctx.log_messages:
                ctx.writer.emit("tcp", "echoed", peer=self.peer, conn=self.num, bytes=n)
            return
        self.last_out = loop.now
        self.out += data[sent:]
        self.chunks.append(n)
        self.head_sent = sent
        self.update_events()

    def flush(self) -> None:
        """Send as much pending echo as the kernel takes; log each read once fully echoed."""
        if not self.out:
            return
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close_on_error(exc)
            return
        del self.out[:sent]
        self.bytes_out += sent
        self.last_out = self.loop.now
        ctx = self.loop.ctx
        sent += self.head_sent
        while self.chunks and sent >= self.chunks[0]:
            size = self.chunks.popleft()
            sent -= size
            if ctx.log_messages:
                ctx.writer.emit("tcp", "echoed", peer=self.peer, conn=self.num, bytes=size)
        self.head_sent = sent
        if self.eof_reason and not self.out:
            self.close(self.eof_reason)
            return
        self.update_events()

    def update_events(self) -> None:
        """Read unless the pending echo reached the cap; watch for writability while any is pending."""
        reading = len(self.out) < self.loop.cap and not self.eof_reason
        wanted = (IN if reading else 0) | (OUT if self.out else 0)
        if wanted != self.events and not self.closed:
            self.events = wanted
            self.loop.ep.modify(self.fd, wanted)

    def check_timeouts(self, now: float, limit: float) -> None:
        if self.out:
            if now - self.last_out >= limit:
                self.close("cap", f"peer took none of {len(self.out)} pending echo bytes for {limit:g}s")
        elif now - self.last_in >= limit:
            self.close("idle")

    def close_on_error(self, exc: OSError) -> None:
        """A recv/send failed: `reset` when the peer reset the connection, else `error`."""
        if isinstance(exc, RESET_ERRORS):
            self.close("reset")
        else:
            self.close("error", str(exc))

    def close(self, reason: str, detail: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        try:
            loop.ep.unregister(self.fd)
        except (OSError, ValueError):
            pass
        del loop.handlers[self.fd]
        loop.conns.discard(self)
        self.sock.close()
        loop.ctx.counters.add(bytes_in=self.bytes_in, bytes_out=self.bytes_out)
        if reason == "error":
            loop.ctx.counters.add(errors=1)
        loop.ctx.record("tcp", "closed", peer=self.peer, conn=self.num, bytes_in=self.bytes_in,
                        bytes_out=self.bytes_out, reason=reason, detail=detail)


class Listener:
    def __init__(self, loop: EchoLoop, sock: socket.socket):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.paused_until = 0.0

    def on_event(self, events: int) -> None:
        loop = self.loop
        ctx = loop.ctx
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in FD_LIMIT_ERRNOS:
                    if not ctx.refuse_waiting_client(self.sock, str(exc)):
                        self.pause()
                        return
                    continue
                ctx.error("tcp", "accept", str(exc))
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                local = peer_text(sock.getsockname())
            except OSError:
                local = None  # peer already gone: the first recv will tell
            conn = TcpConn(loop, sock, peer_text(addr), local, ctx.new_conn_number())
            ctx.record("tcp", "accepted", local=conn.local, peer=conn.peer, conn=conn.num)
            loop.handlers[conn.fd] = conn
            loop.conns.add(conn)
            loop.ep.register(conn.fd, IN)

    def pause(self) -> None:
        """No spare descriptor: stop accepting for a moment rather than spin on the backlog."""
        self.loop.ep.modify(self.fd, 0)
        self.paused_until = self.loop.now + 0.1

    def maybe_resume(self, now: float) -> None:
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
            self.loop.ctx.fd_reserve.take()
            self.loop.ep.modify(self.fd, IN)


class UdpEcho:
    def __init__(self, loop: EchoLoop, sock: socket.socket):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.local = peer_text(sock.getsockname())

    def on_event(self, events: int) -> None:
        echo_datagram = self.loop.ctx.echo_datagram
        for _ in range(ACCEPT_BATCH):
            if not echo_datagram(self.sock, self.local):
                return


class StopPipe:
    def __init__(self, loop: EchoLoop):
        self.loop = loop

    def on_event(self, events: int) -> None:
        self.loop.running = False


class EchoLoop:
    def __init__(self, ctx: ServerContext, listeners: dict[str, socket.socket]):
        self.ctx = ctx
        self.read_size = ctx.settings.read_size
        self.cap = ctx.settings.buffer_cap
        self.ep = new_poller()
        self.now = time.monotonic()
        self.handlers: dict[int, object] = {}
        self.conns: set[TcpConn] = set()
        self.running = True
        self.listener: Listener | None = None
        for proto, sock in listeners.items():
            sock.setblocking(False)
            handler = Listener(self, sock) if proto == "tcp" else UdpEcho(self, sock)
            if proto == "tcp":
                self.listener = handler
            self.handlers[sock.fileno()] = handler
            self.ep.register(sock.fileno(), IN)
        self.handlers[ctx.stop_r] = StopPipe(self)
        self.ep.register(ctx.stop_r, IN)

    def run(self) -> None:
        idle = self.ctx.settings.idle_timeout
        sweep_every = min(1.0, idle / 4) if idle > 0 else 1.0
        next_sweep = self.now + sweep_every
        handlers = self.handlers
        poll = self.ep.poll
        awake_until = 0.0
        while self.running:
            if self.now < awake_until:
                events = poll(0)
            else:
                events = poll(max(0.0, next_sweep - self.now))
            self.now = now = time.monotonic()
            if events:
                awake_until = now + SPIN_S
            for fd, ev in events:
                handler = handlers.get(fd)
                if handler is not None:
                    handler.on_event(ev)
            if now >= next_sweep:
                next_sweep = now + sweep_every
                if idle > 0:
                    for conn in list(self.conns):
                        conn.check_timeouts(now, idle)
                if self.listener is not None:
                    self.listener.maybe_resume(now)
        for conn in list(self.conns):
            conn.flush()
            conn.close("shutdown")
        self.ep.close()


def serve(ctx: ServerContext, listeners: dict[str, socket.socket]) -> None:
    """Serve until ctx.stop(); every open connection is closed with reason `shutdown`."""
    EchoLoop(ctx, listeners).run()
