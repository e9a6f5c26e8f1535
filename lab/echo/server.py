"""The lab's echo server: `python3 -m lab.echo server [options]`.

TCP (listen(100), recv(1024), echo what was read) and UDP (recvfrom, sendto back) on one port,
in the tutorial's iterative style, a thread per connection, or one async loop. Every accept,
read, echo and close is a record on stdout (docs/log-schema.md); SIGTERM/SIGINT end it within a
second with a `summary` record and exit 0. Stdlib only: it runs inside the lab's containers.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import signal
import socket
import sys

from lab.echo.server_core import LEVELS, ServerContext, Settings, peer_text
from lab.records.options import DEFAULT_PORT, OneLineParser, exit_status, int_in

MODES = ("iterative", "threaded", "async")
PORT_TRIES = 20  # with --port 0: how often to look for a port free for both TCP and UDP


def _protos(text: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names or any(p not in ("tcp", "udp") for p in names):
        raise argparse.ArgumentTypeError(f"expected tcp, udp or tcp,udp, got {text!r}")
    return tuple(p for p in ("tcp", "udp") if p in names)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value < 10**6:  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"expected 0 (off) or a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lab.echo server", description="TCP/UDP echo server writing JSON records on stdout.")
    parser.add_argument("--proto", type=_protos, default=("tcp", "udp"), help="tcp, udp or tcp,udp (default both)")
    parser.add_argument("--host", default="0.0.0.0", help="bind address, IPv4 or IPv6 (:: = dual-stack); default 0.0.0.0")
    parser.add_argument("--port", type=int_in(0, 65535), default=DEFAULT_PORT,
                        help=f"TCP and UDP port (default {DEFAULT_PORT}; 0 = any free port, see `listening`)")
    parser.add_argument("--mode", choices=MODES, default="async",
                        help="iterative: one client at a time; threaded: a thread per client; async: one event loop")
    parser.add_argument("--idle-timeout", type=_seconds, default=30.0,
                        help="close a TCP client silent (or not reading its echo) this long; 0 = never (default 30)")
    parser.add_argument("--ready-file", help="create this file once every listener is bound (removed at exit)")
    parser.add_argument("--log", choices=tuple(LEVELS), default="messages",
                        help="messages: every read and echo; connections: accepts/closes only; quiet: start, errors, summary")
    parser.add_argument("--buffer-cap", type=int_in(1024, 1 << 30), default=256 * 1024,
                        help="async: stop reading a client whose unsent echo reaches this many bytes (default 262144)")
    parser.add_argument("--read-size", type=int_in(1, 1 << 24), default=1024,
                        help="bytes per TCP recv (default 1024, as in the tutorial)")
    return parser


def parse_settings(argv: list[str]) -> Settings:
    args = build_parser().parse_args(argv)
    return Settings(protos=args.proto, host=args.host, port=args.port, mode=args.mode,
                    idle_timeout=args.idle_timeout, ready_file=args.ready_file, log=args.log,
                    buffer_cap=args.buffer_cap, read_size=args.read_size)


def resolve_host(host: str) -> tuple[int, tuple]:
    """(family, sockaddr-with-port-0) for a bind address; raises ValueError if it is none."""
    try:
        infos = socket.getaddrinfo(host, 0, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _socket(family: int, kind: int, sockaddr: tuple) -> socket.socket:
    sock = socket.socket(family, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and sockaddr[0] == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # :: also takes IPv4 clients
    return sock


def bind_listeners(settings: Settings) -> dict[str, socket.socket]:
    """Bind every requested protocol on one port (a free one for both if --port 0)."""
    family, sockaddr = resolve_host(settings.host)
    for _ in range(PORT_TRIES if settings.port == 0 else 1):
        socks: dict[str, socket.socket] = {}
        port = settings.port
        try:
            for proto in settings.protos:
                kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                sock = _socket(family, kind, sockaddr)
                socks[proto] = sock
                sock.bind((sockaddr[0], port) + tuple(sockaddr[2:]))
                port = sock.getsockname()[1]
                if proto == "tcp":
                    sock.listen(settings.backlog)
            return socks
        except OSError as exc:
            for sock in socks.values():
                sock.close()
            if not (settings.port == 0 and exc.errno == errno.EADDRINUSE):
                raise
    raise OSError(errno.EADDRINUSE, "no port free for both TCP and UDP")


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, so a thousand clients at once fit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass  # not allowed here: EMFILE handling still keeps the server up


def write_ready_file(path: str, listeners: dict[str, socket.socket]) -> None:
    """Create the file atomically; its content names the bound addresses."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        for proto, sock in listeners.items():
            handle.write(f"{proto} {peer_text(sock.getsockname())}\n")
    os.replace(tmp, path)


def run(settings: Settings, ctx: ServerContext | None = None) -> int:
    ctx = ctx or ServerContext(settings)
    try:
        listeners = bind_listeners(settings)
    except ValueError as exc:
        sys.stderr.write(f"lab.echo server: error: {exc}\n")
        ctx.close()
        return 2
    except OSError as exc:
        detail = f"cannot bind {settings.host} port {settings.port}: {exc.strerror or exc}"
        ctx.error(None, "bind", detail)
        sys.stderr.write(f"lab.echo server: error: {detail}\n")
        ctx.close()
        return 1
    previous = {sig: signal.signal(sig, lambda *_: ctx.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    ready_written = False
    try:
        for proto, sock in listeners.items():
            ctx.record(proto, "listening", local=peer_text(sock.getsockname()), mode=settings.mode,
                       backlog=settings.backlog if proto == "tcp" else None)
        if settings.ready_file:
            try:
                write_ready_file(settings.ready_file, listeners)
                ready_written = True
            except OSError as exc:
                ctx.error(None, "ready-file", f"{settings.ready_file}: {exc.strerror or exc}")
        if settings.mode == "async":
            from lab.echo import server_async
            server_async.serve(ctx, listeners)
        else:
            from lab.echo import server_blocking
            server_blocking.serve(ctx, listeners, threaded=settings.mode == "threaded")
    finally:
        for sock in listeners.values():
            sock.close()
        if ready_written:
            try:
                os.unlink(settings.ready_file)
            except OSError:
                pass
        ctx.summary()
        ctx.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help, or a bad option value (already reported on one line)
        return exit_status(exc)
    raise_fd_limit()
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
