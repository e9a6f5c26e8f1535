"""Run tcpdump on each given interface, copy each pcap stream into its own file, report counters.

Why a wrapper instead of `tcpdump -w FILE`: Debian's tcpdump gives up root for its own user
right after opening the interface, which a container with only NET_RAW cannot do; run with
`-Z root` it stays root (needing only SETGID for the no-op `initgroups`), and writing to its
stdout means it never has to chown a file. The wrapper writes the files, so each file's group is
the wrapper's (the run directory's owner can delete it), touches the ready file once every
tcpdump is listening (the lab starts the clients only after that), forwards SIGTERM so each
tcpdump ends its file cleanly, and turns each tcpdump's closing counters into a `summary`
record for its interface: a capture that lost packets in the kernel says so.

One tcpdump per interface, each to its own file, rather than one tcpdump on several: a run
with several networks (a router between them) carries the same packet on each side of the
router, and only separate files keep the sides apart.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.records.options import OneLineParser
from lab.records.writer import RecordWriter

PROG = "python3 -m lab.capture"
# tcpdump's closing lines on stderr, e.g. "12 packets dropped by kernel".
COUNTERS = {
    "captured": re.compile(r"^(\d+) packets? captured"),
    "received": re.compile(r"^(\d+) packets? received by filter"),
    "kernel_dropped": re.compile(r"^(\d+) packets? dropped by kernel"),
    "interface_dropped": re.compile(r"^(\d+) packets? dropped by interface"),
}
CHUNK = 1 << 16


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Record interfaces' packets, each into its own pcap file.")
    parser.add_argument("--interface", required=True, action="append",
                        help="a lab network's bridge (never `any`); repeat for each network")
    parser.add_argument("--output", required=True, action="append", type=Path,
                        help="the pcap file for the --interface in the same position")
    parser.add_argument("--ready-file", type=Path, help="touched once every tcpdump is listening")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the interfaces to appear")
    parser.add_argument("--buffer-kib", type=int, default=8192, help="kernel capture buffer per interface, KiB")
    parser.add_argument("--name", help="host name in records (default $LAB_NAME or the host name)")
    return parser


def tcpdump_command(interface: str, buffer_kib: int) -> list[str]:
    # -n: no name lookups; -U: flush per packet, so a killed run keeps what was seen;
    # --immediate-mode: each packet as it comes, not in the kernel's blocks of up to a second
    # (packets still in an unfinished block when tcpdump stops are never written);
    # -Z root: stay root rather than switch to the tcpdump user (see the module docstring).
    return ["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode", "-Z", "root", "-B", str(buffer_kib),
            "-w", "-"]


def parse_counters(lines: list[str]) -> dict[str, int]:
    """tcpdump's closing counters from its stderr lines (missing ones are left out)."""
    counters: dict[str, int] = {}
    for line in lines:
        for name, pattern in COUNTERS.items():
            match = pattern.match(line.strip())
            if match:
                counters[name] = int(match.group(1))
    return counters


def _wait_for_interface(interface: str, deadline: float) -> bool:
    while not Path("/sys/class/net", interface).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass
class Capture:
    """One interface's tcpdump and the file its stream goes to."""

    interface: str
    output: Path
    proc: subprocess.Popen | None = None
    stderr_lines: list[str] = field(default_factory=list)
    written: int = 0
    listening: bool = False


def _bad_interface(interface: str) -> bool:
    return interface in ("any", "all") or "/" in interface


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = RecordWriter(role="capture", host=args.name)
    for interface in args.interface:
        if _bad_interface(interface):
            print(f"{PROG}: error: --interface must name one interface of a lab network, not {interface!r}",
                  file=sys.stderr)
            return 2
    if len(args.interface) != len(args.output) or len(set(args.output)) != len(args.output):
        print(f"{PROG}: error: give one --output per --interface, each a different file", file=sys.stderr)
        return 2
    captures = [Capture(i, o) for i, o in zip(args.interface, args.output, strict=True)]
    deadline = time.monotonic() + args.wait
    for cap in captures:
        if not _wait_for_interface(cap.interface, deadline):
            log.emit(None, "error", reason="no-interface", interface=cap.interface,
                     detail=f"{cap.interface} did not appear within {args.wait:g} s")
            return 1
    files = []
    for cap in captures:
        try:
            files.append(open(cap.output, "wb"))
        except OSError as exc:
            log.emit(None, "error", reason="output", interface=cap.interface, detail=f"{cap.output}: {exc.strerror}")
            return 1
    for cap in captures:
        cap.proc = subprocess.Popen(tcpdump_command(cap.interface, args.buffer_kib),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(signum, frame) -> None:
        for cap in captures:
            if cap.proc.poll() is None:
                cap.proc.send_signal(signal.SIGTERM)  # tcpdump then flushes, prints its counters and exits

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = threading.Lock()
    threads = []
    for cap, output in zip(captures, files, strict=True):
        threads.append(threading.Thread(target=_read_stderr, args=(cap, captures, ready, args, log), daemon=True))
        threads.append(threading.Thread(target=_copy, args=(cap, output), daemon=True))
    for thread in threads:
        thread.start()
    ok = True
    for output, copier in zip(files, threads[1::2], strict=True):
        copier.join()  # ends when its tcpdump closes the stream
        output.close()
    for cap, reader in zip(captures, threads[0::2], strict=True):
        reader.join(timeout=5)
        status = cap.proc.wait()
        counters = parse_counters(cap.stderr_lines)
        problems = [line for line in cap.stderr_lines if line.startswith("tcpdump:") and "listening on" not in line]
        log.emit(None, "summary", interface=cap.interface, file=str(cap.output), bytes=cap.written, status=status,
                 detail="; ".join(problems) or None, **counters)
        ok = ok and bool(counters)
    return 0 if ok else 1


def _copy(cap: Capture, output) -> None:
    """tcpdump's pcap stream into its file, as it comes."""
    fd = cap.proc.stdout.fileno()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            break
        output.write(chunk)
        output.flush()
        cap.written += len(chunk)


def _read_stderr(cap: Capture, captures: list[Capture], ready: threading.Lock, args, log: RecordWriter) -> None:
    """tcpdump's messages: "listening on" means packets are being recorded from now on; the
    ready file is touched when the last of the tcpdumps says so."""
    for raw in cap.proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        cap.stderr_lines.append(line)
        if "listening on" in line:
            log.emit(None, "capturing", interface=cap.interface, file=str(cap.output))
            with ready:
                cap.listening = True
                if args.ready_file and all(c.listening for c in captures):
                    args.ready_file.touch()
