"""Run tcpdump on one interface, copy its pcap stream into a file, report its counters.

Why a wrapper instead of `tcpdump -w FILE`: Debian's tcpdump gives up root for its own user
right after opening the interface, which a container with only NET_RAW cannot do; run with
`-Z root` it stays root (needing only SETGID for the no-op `initgroups`), and writing to its
stdout means it never has to chown a file. The wrapper writes the file, so the file's group is
the wrapper's (the run directory's owner can delete it), touches the ready file once tcpdump is
listening (the lab starts the clients only after that), forwards SIGTERM so tcpdump ends
its file cleanly, and turns tcpdump's closing counters into a `summary` record: a capture that
lost packets in the kernel says so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
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
    parser = OneLineParser(prog=PROG, description="Record one interface's packets into a pcap file.")
    parser.add_argument("--interface", required=True, help="the lab network's bridge (never `any`)")
    parser.add_argument("--output", required=True, type=Path, help="the pcap file to write")
    parser.add_argument("--ready-file", type=Path, help="touched once tcpdump is listening")
    parser.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the interface to appear")
    parser.add_argument("--buffer-kib", type=int, default=8192, help="kernel capture buffer, KiB")
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


def _wait_for_interface(interface: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not Path("/sys/class/net", interface).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = RecordWriter(role="capture", host=args.name)
    if args.interface in ("any", "all") or "/" in args.interface:
        print(f"{PROG}: error: --interface must name one interface of the lab network, not {args.interface!r}",
              file=sys.stderr)
        return 2
    if not _wait_for_interface(args.interface, args.wait):
        log.emit(None, "error", reason="no-interface", detail=f"{args.interface} did not appear within {args.wait:g} s")
        return 1
    try:
        output = open(args.output, "wb")
    except OSError as exc:
        log.emit(None, "error", reason="output", detail=f"{args.output}: {exc.strerror}")
        return 1
    proc = subprocess.Popen(tcpdump_command(args.interface, args.buffer_kib),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(signum, frame) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # tcpdump then flushes, prints its counters and exits

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=_read_stderr, args=(proc, stderr_lines, args, log), daemon=True)
    reader.start()
    written = 0
    try:
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            output.write(chunk)
            output.flush()
            written += len(chunk)
    finally:
        output.close()
        status = proc.wait()
        reader.join(timeout=5)
    counters = parse_counters(stderr_lines)
    problems = [line for line in stderr_lines if line.startswith("tcpdump:") and "listening on" not in line]
    log.emit(None, "summary", interface=args.interface, file=str(args.output), bytes=written, status=status,
             detail="; ".join(problems) or None, **counters)
    return 0 if counters else 1


def _read_stderr(proc: subprocess.Popen, lines: list[str], args, log: RecordWriter) -> None:
    """tcpdump's messages: "listening on" means packets are being recorded from now on."""
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        lines.append(line)
        if "listening on" in line:
            log.emit(None, "capturing", interface=args.interface, file=str(args.output))
            if args.ready_file:
                args.ready_file.touch()
