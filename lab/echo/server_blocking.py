"""The `iterative` and `threaded` modes: the tutorial's server, one connection at a time or one
thread per connection, with UDP served by a thread beside the TCP accept loop.

Each wait is a poll() on the socket and the stop pipe, so SIGTERM ends every wait at once and
an idle client is noticed after --idle-timeout. A client that does not read its echo blocks
our send; the kernel's buffers are the cap, and a send stalled for --idle-timeout closes it.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from lab.echo.server_core import FD_LIMIT_ERRNOS, RESET_ERRORS, ServerContext, eof_reason, peer_text

JOIN_DEADLINE_S = 0.8  # shutdown waits this long for connection threads to log their close


def _poller(ctx: ServerContext, sock: socket.socket, events: int) -> select.poll:
    poller = select.poll()
    poller.register(sock, events)
    poller.register(ctx.stop_r, select.POLLIN)
    return poller


def serve_connection(ctx: ServerContext, sock: socket.socket, peer: str | None, num: int) -> None:
    """Echo one client until it closes, resets, idles, stalls, or the server stops; log `closed`."""
    settings = ctx.settings
    wait_ms = int(settings.idle_timeout * 1000) if settings.idle_timeout > 0 else -1
    bytes_in = bytes_out = 0
    reason, detail = "error", None
    try:
        sock.setblocking(False)
        local = peer_text(sock.getsockname())
        readable = _poller(ctx, sock, select.POLLIN)
        writable = _poller(ctx, sock, select.POLLOUT)
        while True:
            ready = readable.poll(wait_ms)
            if ctx.stopping:
                reason = "shutdown"
                break
            if not ready:
                reason = "idle"
                break
            try:
                data = sock.recv(settings.read_size)
            except BlockingIOError:
                continue
            if not data:
                reason = eof_reason(sock, 0)
                break
            bytes_in += len(data)
            if ctx.log_messages:
                ctx.received("tcp", local, peer, num, data)
            view = memoryview(data)
            while view:
                ready = writable.poll(wait_ms)
                if ctx.stopping or not ready:
                    break
                try:
                    sent = sock.send(view)
                except BlockingIOError:
                    continue
                bytes_out += sent
                view = view[sent:]
            if ctx.stopping:
                reason = "shutdown"
                break
            if view:
                reason = "cap"
                detail = f"peer took none of {len(view)} pending echo bytes for {settings.idle_timeout:g}s"
                break
            if ctx.log_messages:
                ctx.writer.emit("tcp", "echoed", peer=peer, conn=num, bytes=len(data))
    except RESET_ERRORS:
        reason = "reset"
    except OSError as exc:
        reason, detail = "error", str(exc)
    finally:
        sock.close()
        ctx.counters.add(bytes_in=bytes_in, bytes_out=bytes_out, errors=1 if reason == "error" else 0)
        ctx.record("tcp", "closed", peer=peer, conn=num, bytes_in=bytes_in, bytes_out=bytes_out,
                   reason=reason, detail=detail)


def udp_loop(ctx: ServerContext, sock: socket.socket) -> None:
    sock.setblocking(False)
    local = peer_text(sock.getsockname())
    poller = _poller(ctx, sock, select.POLLIN)
    while not ctx.stopping:
        poller.poll()
        while not ctx.stopping and ctx.echo_datagram(sock, local):
            pass


class ConnectionThreads:
    """The live per-connection threads of the threaded mode, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.threads: set[threading.Thread] = set()
        self.lock = threading.Lock()

    def start(self, ctx: ServerContext, sock: socket.socket, peer: str | None, num: int) -> None:
        def run() -> None:
            try:
                serve_connection(ctx, sock, peer, num)
            finally:
                with self.lock:
                    self.threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"conn-{num}", daemon=True)
        with self.lock:
            self.threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # no more threads: close this one, keep serving
            with self.lock:
                self.threads.discard(thread)
            sock.close()
            ctx.counters.add(errors=1)
            ctx.record("tcp", "closed", peer=peer, conn=num, bytes_in=0, bytes_out=0, reason="error", detail=str(exc))

    def join(self, deadline: float) -> None:
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def accept_loop(ctx: ServerContext, listener: socket.socket, threads: ConnectionThreads | None) -> None:
    """Accept until stopped; serve each client here (iterative) or on its own thread."""
    listener.setblocking(False)
    poller = _poller(ctx, listener, select.POLLIN)
    backoff_ms = -1
    while not ctx.stopping:
        poller.poll(backoff_ms)
        backoff_ms = -1
        if ctx.stopping:
            break
        try:
            sock, addr = listener.accept()
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno in FD_LIMIT_ERRNOS:
                if not ctx.refuse_waiting_client(listener, str(exc)):
                    ctx.fd_reserve.take()
                    backoff_ms = 100
            else:
                ctx.error("tcp", "accept", str(exc))
            continue
        peer = peer_text(addr)
        num = ctx.new_conn_number()
        try:
            local = peer_text(sock.getsockname())
        except OSError:
            local = None
        ctx.record("tcp", "accepted", local=local, peer=peer, conn=num)
        if threads is None:
            serve_connection(ctx, sock, peer, num)
        else:
            threads.start(ctx, sock, peer, num)


def serve(ctx: ServerContext, listeners: dict[str, socket.socket], threaded: bool) -> None:
    """Serve until ctx.stop(); open connections are closed with reason `shutdown`."""
    udp_thread = None
    if "udp" in listeners:
        udp_thread = threading.Thread(target=udp_loop, args=(ctx, listeners["udp"]), name="udp", daemon=True)
        udp_thread.start()
    threads = ConnectionThreads() if threaded else None
    if "tcp" in listeners:
        accept_loop(ctx, listeners["tcp"], threads)
    else:
        select.select([ctx.stop_r], [], [])
    deadline = time.monotonic() + JOIN_DEADLINE_S
    if threads is not None:
        threads.join(deadline)
    if udp_thread is not None:
        udp_thread.join(max(0.0, deadline - time.monotonic()))
