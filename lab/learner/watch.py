"""Watch a network namespace's socket table and record every change, until stopped.

Runs as a sidecar that shares a host's network namespace (no capability: the tables under
`/proc/net` show the sockets of the reader's namespace). Each sample is compared with the
previous one and only changes are recorded:

- `listen` / `bound`: a TCP socket starts listening, a UDP socket is bound;
- `open`: a TCP connection appears (`local`, `peer`, `state`);
- `owned`: a connection the kernel completed is taken by the program (its inode appears):
  for a server, the moment `accept` returned;
- `queued`: the number of completed connections waiting on a listening socket changed;
- `state`: a TCP connection changed state (`fin-wait1`, `time-wait`, ...);
- `closed`: a socket is gone.

The default 10 ms between samples catches a conversation of a second many times over; a
connection that opens and closes between two samples is missed, which `summary` makes
visible by saying how often it looked (`samples`, the longest gap between two).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from lab.learner.procnet import SocketRow, read_tables
from lab.records.options import OneLineParser
from lab.records.writer import RecordWriter


def _key(row: SocketRow) -> tuple[str, str, str]:
    # Not the inode: a connection keeps its addresses while the program accepts it (inode
    # 0 -> n) and after it closes (time-wait, inode 0 again).
    return (row.proto, row.local, row.remote)


class Watcher:
    """Turns successive samples of the socket table into change records."""

    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer
        self.known: dict[tuple[str, str, str], SocketRow] = {}

    def sample(self, rows: list[SocketRow]) -> None:
        current = {_key(r): r for r in rows}
        for key, row in current.items():
            before = self.known.get(key)
            if before is None:
                self._appeared(row)
                continue
            if row.state != before.state:
                self.writer.emit(row.proto, "state", local=row.local, peer=row.remote, state=row.state, was=before.state)
            if row.state == "listen" and row.rx_queue != before.rx_queue:
                self.writer.emit(row.proto, "queued", local=row.local, queued=row.rx_queue)
            if row.inode and not before.inode and row.state != "listen":
                self.writer.emit(row.proto, "owned", local=row.local, peer=row.remote)
        for key, row in self.known.items():
            if key not in current:
                self.writer.emit(row.proto, "closed", local=row.local, peer=row.remote, state=row.state)
        self.known = current

    def _appeared(self, row: SocketRow) -> None:
        if row.state == "listen":
            self.writer.emit(row.proto, "listen", local=row.local, queued=row.rx_queue)
        elif row.proto == "udp" and row.state == "bound":
            self.writer.emit(row.proto, "bound", local=row.local)
        else:
            self.writer.emit(row.proto, "open", local=row.local, peer=row.remote, state=row.state,
                             owned=bool(row.inode))


def watch(writer: RecordWriter, interval: float, stop: threading.Event, proc_net: Path = Path("/proc/net"),
          ready_file: str | None = None) -> dict:
    """Sample until `stop` is set; return the summary's fields. The ready file is made after
    the first sample, so whatever starts after it is watched from its first socket."""
    watcher = Watcher(writer)
    samples, longest, last = 0, 0.0, None
    while not stop.is_set():
        watcher.sample(read_tables(proc_net))
        now = time.monotonic()
        if last is not None:
            longest = max(longest, now - last)
        last, samples = now, samples + 1
        if samples == 1 and ready_file:
            Path(ready_file).touch()
        stop.wait(interval)
    return {"samples": samples, "longest_gap_ms": round(longest * 1000, 1), "interval_ms": interval * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="lab.learner watch", description="Record this network namespace's socket table.")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between samples (default 0.01)")
    parser.add_argument("--ready-file", help="create this file once the first sample is taken")
    options = parser.parse_args(argv)
    writer = RecordWriter("sockets")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    summary = watch(writer, max(options.interval, 0.001), stop, ready_file=options.ready_file)
    writer.emit(None, "summary", **summary)
    return 0
