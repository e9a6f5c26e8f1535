"""The lab's echo client: sends messages over TCP then UDP, checks every echo, logs both ends.

`python3 -m lab.echo client [options]`. Each protocol runs --sessions concurrent sessions
(threads, each with its own socket and ephemeral port) and ends with one `summary` record.
`--server A,B` talks to each address in turn (a dual-stack client: the server's IPv4 and IPv6
address), every protocol to each, so one summary per address and protocol.
Exit 0 only if every summary is ok; 1 when a conversation failed; 2 for bad options.

Longer than most modules: the option parser and the plan built from it stay beside the
sessions that follow the plan, so one file says everything the client can be asked to do.
"""

from __future__ import annotations

import argparse
import functools
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable

from lab.echo.barrier import POLL_SECONDS, BarrierTimeout, mark_done, mark_ready, wait_for_start
from lab.echo.client_core import ClientPlan, SessionTally, StopFlag, family_of, prime_resolution
from lab.echo.client_tcp import run_tcp_session
from lab.echo.client_udp import Leaving, run_udp_session
from lab.records.options import DEFAULT_PORT, UDP_PAYLOAD_MAX, OneLineParser, exit_status
from lab.records.stats import percentile
from lab.records.writer import RecordWriter

FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789"
RUNNERS: dict[str, Callable[..., SessionTally]] = {"tcp": run_tcp_session, "udp": run_udp_session}


class OptionError(Exception):
    """A bad combination of option values: one line on stderr, exit 2."""


def default_messages() -> list[bytes]:
    """The tutorial-style default: the time, plain ASCII, and two lines of UTF-8 Chinese."""
    return [
        time.asctime().encode(),
        b"hello from the socket lab",
        "你好，服务器！这是来自客户端的问候。".encode(),
        "网络实验：一条消息，一次回声。".encode(),
    ]


def generated_message(seq: int, size: int, fill: str) -> bytes:
    """Message seq of exactly size bytes: a numbered ASCII pattern, or seeded random bytes."""
    if fill == "bytes":
        return random.Random(seq).randbytes(size)
    head = f"{seq:06d} ".encode()
    body = head + FILLER * (size // len(FILLER) + 1)
    return body[:size]


def cycled_messages(base: list[bytes], count: int) -> list[bytes]:
    """count messages taken from base in turn. A payload that would repeat an earlier one gets a
    `#SEQ ` prefix (`#5 hello`), so every message is unique and a late UDP echo of one is never
    taken for another's; with count <= len(base) and distinct messages nothing changes."""
    messages: list[bytes] = []
    seen: set[bytes] = set()
    for seq in range(1, count + 1):
        payload = base[(seq - 1) % len(base)]
        while payload in seen:  # (the loop only matters if a given message itself starts with #SEQ)
            payload = f"#{seq} ".encode() + payload
        seen.add(payload)
        messages.append(payload)
    return messages


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python3 -m lab.echo client", add_help=True,
                description="Send messages to the echo server, wait for each echo, check it, log it all as "
                            "JSON lines (docs/log-schema.md). Exit 0 ok, 1 conversation failed, 2 bad options.")
    p.add_argument("--server", default="127.0.0.1",
                   help="server name or IPv4/IPv6 address; several, comma-separated, are talked to in turn "
                        "(default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    p.add_argument("--proto", default="tcp,udp", help="tcp, udp or tcp,udp (default: TCP then UDP)")
    p.add_argument("--message", action="append", default=[], metavar="TEXT",
                   help="a message to send (repeatable, sent in order)")
    p.add_argument("--messages", metavar="LIST", help="several messages in one value, split on --separator")
    p.add_argument("--separator", default="|", help="separator for --messages (default '|')")
    p.add_argument("--count", type=int, help="send N messages: cycles the given/default messages (a repeat "
                                             "is sent as '#SEQ text', so every message is unique), "
                                             "or generates N messages of --size bytes")
    p.add_argument("--size", type=int, help="generate messages of exactly BYTES bytes (default count 1)")
    p.add_argument("--fill", choices=("text", "bytes"), default="text",
                   help="generated content: numbered ASCII text, or random bytes (not UTF-8)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between messages (default 0.5)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="seconds to wait for an echo (TCP: without progress) (default 2)")
    p.add_argument("--retries", type=int, default=2, help="UDP: resends of a datagram after a timeout (default 2)")
    p.add_argument("--max-loss", type=float, default=0.0,
                   help="UDP: fraction of messages that may be lost with exit 0 (default 0)")
    p.add_argument("--sessions", type=int, default=1,
                   help="concurrent sessions per protocol, each its own socket and port (default 1)")
    p.add_argument("--connect-timeout", type=float, default=0.0,
                   help="keep retrying the first connect/exchange with backoff for this many seconds "
                        "while the server starts (default 0: one try)")
    p.add_argument("--reconnect", action="store_true",
                   help="TCP: reconnect with backoff when the connection drops and resend the lost message")
    p.add_argument("--reconnect-for", type=float, metavar="SECONDS",
                   help="budget for each reconnect (default 30; implies --reconnect)")
    p.add_argument("--source-port", type=int, default=0, metavar="PORT",
                   help="bind each socket to this source port instead of an ephemeral one (one session only)")
    p.add_argument("--start-file", metavar="PATH",
                   help="wait until PATH exists before the first message (the lab's start barrier)")
    p.add_argument("--ready-file", metavar="PATH",
                   help="with --start-file: write PATH once waiting for it (the lab counts who is ready)")
    p.add_argument("--start-poll", type=float, default=POLL_SECONDS, metavar="SECONDS",
                   help=f"how often to look for --start-file and --leave-file (default {POLL_SECONDS:g}; the lab "
                        "sets it for the size of the run)")
    p.add_argument("--start-deadline", type=float, default=600.0, metavar="SECONDS",
                   help="give up (exit 1) when --start-file has not appeared after this long (default 600)")
    p.add_argument("--leave-file", metavar="PATH",
                   help="with --ready-file: once the conversation is over, write its exit status there and stay "
                        "until PATH exists or a SIGTERM comes, at most --start-deadline (the lab then decides "
                        "when the containers leave the network)")
    p.add_argument("--start-delay", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long before the first message (after --start-file, if given)")
    p.add_argument("--name", help="host name in the records (default $LAB_NAME or the host name)")
    return p


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise OptionError(message)


def plan_from_args(args: argparse.Namespace) -> ClientPlan:
    """Validate the options and turn them into the plan the sessions follow."""
    protos = tuple(dict.fromkeys(part.strip().lower() for part in args.proto.split(",") if part.strip()))
    _check(bool(protos) and all(proto in RUNNERS for proto in protos),
           f"--proto: expected tcp, udp or tcp,udp, got {args.proto!r}")
    servers = tuple(part.strip() for part in args.server.split(","))
    _check(all(servers), f"--server: an empty host in {args.server!r}")
    _check(len(set(servers)) == len(servers), f"--server: each address once, got {args.server!r}")
    _check(1 <= args.port <= 65535, f"--port: {args.port} is not in 1..65535")
    texts = list(args.message)
    if args.messages is not None:
        _check(args.separator != "", "--separator: must not be empty")
        texts += args.messages.split(args.separator)
    base = [text.encode("utf-8", "surrogateescape") for text in texts]
    _check(all(base), "--message/--messages: a message must not be empty (TCP cannot echo zero bytes)")
    _check(args.count is None or args.count >= 1, f"--count: {args.count} must be at least 1")
    if args.size is not None:
        _check(not base, "--size generates messages: do not combine it with --message/--messages")
        _check(args.size >= 1, f"--size: {args.size} must be at least 1 byte")
        messages = [generated_message(seq, args.size, args.fill) for seq in range(1, (args.count or 1) + 1)]
    else:
        base = base or default_messages()
        count = args.count or len(base)
        messages = cycled_messages(base, count)
    if "udp" in protos:
        biggest = max(len(m) for m in messages)
        _check(biggest <= UDP_PAYLOAD_MAX, f"a {biggest}-byte message does not fit in one UDP datagram "
                                           f"(max {UDP_PAYLOAD_MAX}); use --proto tcp")
    _check(args.interval >= 0, f"--interval: {args.interval} must be >= 0")
    _check(args.timeout > 0, f"--timeout: {args.timeout} must be > 0")
    _check(args.retries >= 0, f"--retries: {args.retries} must be >= 0")
    _check(0 <= args.max_loss <= 1, f"--max-loss: {args.max_loss} must be a fraction in 0..1")
    _check(1 <= args.sessions <= 1000, f"--sessions: {args.sessions} must be in 1..1000")
    _check(args.connect_timeout >= 0, f"--connect-timeout: {args.connect_timeout} must be >= 0")
    _check(args.reconnect_for is None or args.reconnect_for > 0, f"--reconnect-for: {args.reconnect_for} must be > 0")
    _check(0 <= args.source_port <= 65535, f"--source-port: {args.source_port} is not in 1..65535")
    _check(not args.source_port or args.sessions == 1, "--source-port: one port can serve only one session")
    _check(args.start_deadline > 0, f"--start-deadline: {args.start_deadline} must be > 0")
    _check(args.start_delay >= 0, f"--start-delay: {args.start_delay} must be >= 0")
    for value, name in ((args.interval, "--interval"), (args.timeout, "--timeout"), (args.max_loss, "--max-loss"),
                        (args.connect_timeout, "--connect-timeout"), (args.reconnect_for or 0, "--reconnect-for"),
                        (args.start_deadline, "--start-deadline"), (args.start_delay, "--start-delay")):
        _check(value == value and value != float("inf"), f"{name}: must be a finite number")
    return ClientPlan(
        server=servers[0], servers=servers, port=args.port, protos=protos, messages=tuple(messages),
        interval=args.interval, timeout=args.timeout, retries=args.retries, max_loss=args.max_loss,
        sessions=args.sessions, connect_timeout=args.connect_timeout,
        reconnect=args.reconnect or args.reconnect_for is not None,
        reconnect_for=args.reconnect_for if args.reconnect_for is not None else 30.0,
        source_port=args.source_port,
    )


def summarize(plan: ClientPlan, proto: str, tallies: list[SessionTally], interrupted: bool) -> dict:
    """The fields of one protocol's `summary` record, with ok and the reason when not ok."""
    planned = len(plan.messages) * plan.sessions
    rtts = [rtt for t in tallies for rtt in t.rtts]
    fields = {
        "planned": planned, "sent": sum(t.sent for t in tallies), "echoed": sum(t.echoed for t in tallies),
        "mismatched": sum(t.mismatched for t in tallies), "lost": sum(t.lost for t in tallies),
        "rtt_p50_ms": _ms(percentile(rtts, 50) if rtts else None),
        "rtt_p95_ms": _ms(percentile(rtts, 95) if rtts else None),
        "rtt_max_ms": _ms(max(rtts) if rtts else None),
        "local_ports": [port for t in tallies for port in t.local_ports], "sessions": plan.sessions,
    }
    if interrupted or any(t.interrupted for t in tallies):
        # the messages in flight were abandoned, not lost: the one reason is the interruption
        reasons = ["interrupted"]
    else:
        reasons = _failure_reasons(plan, proto, tallies, fields)
    fields["ok"] = not reasons
    if reasons:
        fields["reason"] = "; ".join(reasons)
    return fields


def _failure_reasons(plan: ClientPlan, proto: str, tallies: list[SessionTally], fields: dict) -> list[str]:
    failures = [f"session {t.session}: {t.failure}" for t in tallies if t.failure]
    reasons = failures[:3] + ([f"... {len(failures) - 3} more sessions failed"] if len(failures) > 3 else [])
    sent, lost, planned = fields["sent"], fields["lost"], fields["planned"]
    if fields["mismatched"]:
        reasons.append(f"{fields['mismatched']} of {sent} echoes were not intact")
    allowed = int(plan.max_loss * planned + 1e-9) if proto == "udp" else 0
    if lost > allowed:
        reasons.append(f"{lost} of {sent} messages lost" + (f" (allowed {allowed})" if proto == "udp" else ""))
    if sent < planned and not reasons:
        reasons.append(f"only {sent} of {planned} messages sent")
    return reasons


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_proto(plan: ClientPlan, proto: str, writer: RecordWriter, stop: StopFlag) -> list[SessionTally]:
    """Run the sessions of one protocol concurrently, one thread each, and collect their tallies."""
    tallies: list[SessionTally | None] = [None] * plan.sessions
    runner = RUNNERS[proto]
    if proto == "udp" and plan.sessions > 1:
        runner = functools.partial(run_udp_session, leaving=Leaving(plan.sessions))  # one port each

    def session_main(index: int) -> None:
        try:
            tallies[index] = runner(plan, index, writer, stop)
        except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback, still summarise the others
            traceback.print_exc()
            writer.emit(proto, "error", session=index, reason="internal", detail=repr(exc))
            tallies[index] = SessionTally(index, len(plan.messages), failure=f"internal error: {exc!r}")

    threads = [threading.Thread(target=session_main, args=(i,), name=f"{proto}-{i}", daemon=True)
               for i in range(plan.sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.1)  # short joins keep the main thread free to run signal handlers
    return [t if t is not None else SessionTally(i, len(plan.messages), failure="no result")
            for i, t in enumerate(tallies)]


def run(plan: ClientPlan, writer: RecordWriter, stop: StopFlag) -> int:
    """Each server address in turn, TCP then UDP (as asked) to each; one summary per address and
    protocol, including ones never started. A summary names its `server` (and its `family`
    for an address literal), so two families' conversations never read as one."""
    all_ok = True
    for target in plan.targets():
        for proto in plan.protos:
            if stop.is_set():
                tallies: list[SessionTally] = []
            else:
                tallies = run_proto(target, proto, writer, stop)
            fields = summarize(target, proto, tallies, stop.is_set())
            writer.emit(proto, "summary", server=target.server, family=family_of(target.server), **fields)
            all_ok = all_ok and fields["ok"]
    return 0 if all_ok else 1


def _started(args: argparse.Namespace, plan: ClientPlan, writer: RecordWriter, stop: StopFlag) -> bool:
    """Hold the first message for the start barrier and --start-delay; False if the barrier never
    opened (a stop meanwhile is True: the sessions then report the interruption themselves)."""
    if args.start_file:
        kinds = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
        for target in plan.targets():
            prime_resolution(target.server, plan.port, [kinds[proto] for proto in plan.protos])
        try:
            if args.ready_file:
                mark_ready(args.ready_file)
            wait_for_start(args.start_file, args.start_deadline, stop.is_set, poll=args.start_poll, sleep=stop.pause)
        except (BarrierTimeout, OSError) as exc:
            writer.emit(None, "error", reason="start", detail=str(exc))
            return False
    give_up = time.monotonic() + args.start_delay
    while not stop.is_set() and time.monotonic() < give_up:
        time.sleep(max(0.0, min(0.1, give_up - time.monotonic())))
    return True


def _stay(args: argparse.Namespace, status: int, stop: StopFlag) -> None:
    """With --leave-file: say the conversation is over (and how) and stay until let go."""
    if not (args.leave_file and args.ready_file):
        return
    try:
        mark_done(args.ready_file, status)
        # A SIGTERM ends the pause at once: the teardown's stop waits for no poll.
        wait_for_start(args.leave_file, args.start_deadline, stop.is_set, poll=args.start_poll, sleep=stop.pause)
    except (BarrierTimeout, OSError):
        pass  # an orchestrator that never lets go (killed): leave anyway, the records are complete


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        try:
            plan = plan_from_args(args)
        except OptionError as exc:
            parser.error(str(exc))
    except SystemExit as exc:  # --help, or a bad option value (reported on one line)
        return exit_status(exc)
    writer = RecordWriter(role="client", host=args.name)
    stop = StopFlag()
    previous = {}

    def on_signal(signum, frame):
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread (embedded use): no signal handling
            pass
    try:
        if not _started(args, plan, writer, stop):
            return 1
        status = run(plan, writer, stop)
        _stay(args, status, stop)
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
