"""Command line of the namespace helper: apply routes and NAT rules, then hold until SIGTERM.

Bad options end in one line on stderr and exit 2; a command the kernel refuses ends in an
`error` record and exit 1, so the container is unhealthy and the run says why.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from lab.netns.forwarding import enable_ipv4_forwarding, switches
from lab.records.options import OneLineParser
from lab.records.writer import RecordWriter

PROG = "python3 -m lab.netns"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Set up this network namespace's routes and NAT, then hold it.")
    parser.add_argument("--route", action="append", default=[], metavar="VIA",
                        help="default route through this router address (IPv4 or IPv6); repeatable")
    parser.add_argument("--nat", action="append", default=[], metavar="RULE",
                        help="IPv4 NAT rule: `iptables -t nat -A` arguments; repeatable")
    parser.add_argument("--nat6", action="append", default=[], metavar="RULE", help="the same for ip6tables")
    parser.add_argument("--filter", action="append", default=[], metavar="RULE",
                        help="IPv4 filter rule: `iptables -A` arguments; repeatable")
    parser.add_argument("--filter6", action="append", default=[], metavar="RULE", help="the same for ip6tables")
    parser.add_argument("--forward", action="store_true",
                        help="turn IPv4 forwarding on once the rules are in force (a router)")
    parser.add_argument("--ready-file", help="touched once everything is in force")
    parser.add_argument("--name", help="host name in records (default $LAB_NAME or the host name)")
    return parser


def commands(routes: list[str], nat: list[str], nat6: list[str],
             filters: tuple[list[str], list[str]] = ([], [])) -> list[list[str]]:
    """What to run, in order: the routes, the filter rules, then the NAT rules."""
    steps = []
    for via in routes:
        family = "-6" if ":" in via else "-4"
        steps.append(["ip", family, "route", "replace", "default", "via", via])
    steps += [["iptables", "-w", "-A", *shlex.split(rule)] for rule in filters[0]]
    steps += [["ip6tables", "-w", "-A", *shlex.split(rule)] for rule in filters[1]]
    steps += [["iptables", "-w", "-t", "nat", "-A", *shlex.split(rule)] for rule in nat]
    steps += [["ip6tables", "-w", "-t", "nat", "-A", *shlex.split(rule)] for rule in nat6]
    return steps


def addresses() -> list[str]:
    """This namespace's global addresses (`ip -j addr`), the ones peers may see."""
    result = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True)
    try:
        links = json.loads(result.stdout or "[]")
    except ValueError:
        return []
    return [info["local"] for link in links for info in link.get("addr_info", [])
            if info.get("scope") == "global" and info.get("local")]


def nat_kinds(rules: list[str]) -> list[str]:
    """What the NAT rules do, as the log joins need it: `masquerade` (peers see this router's
    address instead of a client's) and `forward` (a port of this router leads to the server)."""
    kinds = []
    if any("MASQUERADE" in rule or "SNAT" in rule for rule in rules):
        kinds.append("masquerade")
    if any("DNAT" in rule for rule in rules):
        kinds.append("forward")
    return kinds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    writer = RecordWriter(role="netns", host=args.name)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    applied = []
    for command in commands(args.route, args.nat, args.nat6, (args.filter, args.filter6)):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            writer.emit(None, "error", command=shlex.join(command), status=result.returncode,
                        error=(result.stderr or result.stdout).strip())
            return 1
        applied.append(shlex.join(command))
    if args.forward:
        # Only now: a packet forwarded before the NAT rules would keep its flow untranslated.
        try:
            enable_ipv4_forwarding()
        except OSError as exc:
            writer.emit(None, "error", command="ipv4 forwarding on", status=exc.errno, error=str(exc))
            return 1
        applied.append("ipv4 forwarding on")
    writer.emit(None, "applied", commands=applied, forwarding=switches(), addresses=addresses(),
                nat=nat_kinds(args.nat + args.nat6) or None)
    if args.ready_file:
        Path(args.ready_file).touch()
    done.wait()
    writer.emit(None, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
