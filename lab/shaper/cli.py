"""Command line of the impairment helper: `run`, `set`, `probe`.

Bad values end in one line on stderr and exit 2 (no traceback); `set` exits 1 when no shaper
is running; `run` exits 1 when the kernel refuses the impairment.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lab.records.options import OneLineParser
from lab.records.writer import RecordWriter
from lab.shaper import control, kernel
from lab.shaper.impairment import BACKENDS, DIRECTIONS, NUMBERS, Impairment, ImpairmentError, check_field
from lab.shaper.service import RunOptions, Shaper

PROG = "python3 -m lab.shaper"
_NO_RATE = ("none", "off", "0")


def _add_impairment_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("impairment (each applies per packet, in each impaired direction)")
    group.add_argument("--delay-ms", type=float, help="added delay, milliseconds")
    group.add_argument("--jitter-ms", type=float, help="delay varies uniformly by +/- this much")
    group.add_argument("--loss", type=float, metavar="P", help="fraction of packets dropped, 0..1")
    group.add_argument("--duplicate", type=float, metavar="P", help="fraction of packets sent twice")
    group.add_argument("--reorder", type=float, metavar="P", help="fraction sent at once, past delayed ones")
    group.add_argument("--corrupt", type=float, metavar="P", help="fraction with one bit flipped")
    group.add_argument("--rate", metavar="RATE", help="rate limit, tc units (1mbit, 500kbit); none to remove")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Impair the traffic of this network namespace.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="apply an impairment and serve until SIGTERM")
    run.add_argument("--dev", default="eth0")
    _add_impairment_options(run)
    run.add_argument("--direction", choices=DIRECTIONS, default="both")
    run.add_argument("--backend", choices=BACKENDS, default="auto")
    run.add_argument("--ready-file", help="touched once the impairment is in force")
    run.add_argument("--name", help="host name in records (default $LAB_NAME or the host name)")
    run.add_argument("--control", default=control.DEFAULT_PATH, help="control socket path")
    run.add_argument("--queue-num", type=int, default=7, help="NFQUEUE number (userspace backend)")
    run.add_argument("--stats-interval", type=float, default=5.0, help="seconds between stats records")
    run.add_argument("--ipv6", action="store_true", help="impair IPv6 too (its rules go to ip6tables as well)")
    change = sub.add_parser("set", help="change the running shaper's impairment")
    _add_impairment_options(change)
    change.add_argument("--clear", action="store_true", help="start from no impairment, not the current one")
    change.add_argument("--control", default=control.DEFAULT_PATH)
    probe = sub.add_parser("probe", help="print what this kernel supports, as JSON")
    probe.add_argument("--dev", default="lo")
    return parser


def changes_from(args: argparse.Namespace) -> dict[str, Any]:
    """The impairment fields given on the command line, in Impairment.to_dict form, each
    checked on its own (ImpairmentError); `set` merges them with the live values."""
    changes: dict[str, Any] = {}
    for name in NUMBERS:
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.rate is not None:
        changes["rate"] = None if args.rate.strip().lower() in _NO_RATE else args.rate
    for name, value in changes.items():
        check_field(name, value)
    return changes


def requested_impairment(args: argparse.Namespace) -> Impairment:
    """The impairment a `run` (or `set --clear`) command line asks for, on its own."""
    return Impairment().merged(changes_from(args))


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "probe":
        print(json.dumps(kernel.probe(args.dev)), flush=True)
        return 0
    try:
        if args.command == "set":
            return _set(args, changes_from(args))
        impairment = requested_impairment(args)
    except ImpairmentError as exc:
        return _fail(str(exc), 2)
    if args.queue_num < 0 or args.queue_num > 65535:
        return _fail(f"bad --queue-num {args.queue_num}: 0..65535", 2)
    if args.stats_interval <= 0:
        return _fail(f"bad --stats-interval {args.stats_interval}: must be > 0", 2)
    options = RunOptions(impairment, args.dev, args.direction, args.backend, args.ready_file,
                         args.control, args.queue_num, args.stats_interval, args.ipv6)
    return Shaper(options, RecordWriter(role="shaper", host=args.name)).serve()


def _set(args: argparse.Namespace, changes: dict[str, Any]) -> int:
    message: dict[str, Any] = {"op": "set", "changes": changes}
    if args.clear:
        message["clear"] = True
    try:
        reply = control.request(args.control, message)
    except control.NoShaper as exc:
        return _fail(str(exc), 1)
    except (OSError, ValueError) as exc:
        return _fail(f"talking to the shaper on {args.control}: {exc}", 1)
    print(json.dumps(reply), flush=True)
    if reply.get("ok"):
        return 0
    return _fail(str(reply.get("error")), 2 if reply.get("invalid") else 1)
