"""One structured record per line: how every program in the lab's containers reports events.

Every record is a single JSON object on one line, flushed as soon as it is written, so it
reads well in `docker compose up` output and the orchestrator can parse it without loss.
A writer builds each record (`build`) and hands the line to its sinks (`sinks`, stdout by
default); both happen under one lock, so a program's records leave in the order they were
stamped and numbered (`n`: 1, 2, 3 ... per program), whichever thread wrote them.

Under `lab run`, `$LAB_RECORDS` names a file on the run's records mount: the writer appends
every record to it as well, and everything the program writes to stderr (a traceback), a
line at a time. The file is complete whatever Docker's log settings keep of stdout and stderr.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import IO, Any

from lab.records.schema import SCHEMA_VERSION, utc_timestamp

RECORDS_VARIABLE = "LAB_RECORDS"


def default_host_name() -> str:
    """The name a program logs as: LAB_NAME from the environment, else the host name."""
    return os.environ.get("LAB_NAME") or socket.gethostname()


def encode(record: dict[str, Any]) -> str:
    """A record as its line: compact JSON, non-ASCII text kept readable, newline-terminated."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class RecordWriter:
    """Writes records for one program (host, role); safe to share between threads.

    With no `stream` given, records go to stdout, and also to the file `$LAB_RECORDS` names.
    """

    def __init__(self, role: str, host: str | None = None, stream: IO[str] | None = None) -> None:
        self.role = role
        self.host = host or default_host_name()
        self.sinks: list[IO[str]] = [stream if stream is not None else sys.stdout]
        self._lock = threading.Lock()
        self._count = 0
        self._file: IO[str] | None = None
        path = os.environ.get(RECORDS_VARIABLE) if stream is None else None
        if path:
            self._open_records_file(path)

    def _open_records_file(self, path: str) -> None:
        try:
            self._file = open(path, "a", encoding="utf-8", errors="replace")  # it lives as long as the program
        except OSError as exc:
            # stdout still has everything; the orchestrator falls back to Docker's copy of it.
            self.emit(None, "error", reason="records-file", detail=f"{path}: {exc.strerror or exc}")
            return
        self.sinks.append(self._file)
        sys.stderr = StderrTee(sys.stderr, self)

    def build(self, proto: str | None, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The record for one event: the header every record carries, then the event's own
        fields (those given as None are left out). Called with the writer's lock held."""
        self._count += 1
        record: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "n": self._count,
            "ts": utc_timestamp(),
            "host": self.host,
            "role": self.role,
            "proto": proto,
            "event": event,
        }
        for key, value in fields.items():
            if value is not None:
                record[key] = value
        return record

    def emit(self, proto: str | None, event: str, **fields: Any) -> dict[str, Any]:
        """Writes one record to every sink and returns it."""
        with self._lock:
            record = self.build(proto, event, fields)
            line = encode(record)
            for sink in self.sinks:
                _write(sink, line)
        return record

    def copy_output(self, line: str) -> None:
        """A line of the program's other output (stderr), into its records file, between records."""
        if self._file is not None:
            with self._lock:
                _write(self._file, line)


def _write(sink: IO[str], line: str) -> None:
    try:
        sink.write(line)
        sink.flush()
    except (BrokenPipeError, ValueError, OSError):
        # The sink is gone (pipe closed, stream closed at exit, disk full): the program keeps
        # serving; a record that did not reach the file shows as a gap in `n`.
        pass


class StderrTee:
    """stderr as it was, and each whole line of it into the records file as well."""

    def __init__(self, stream: IO[str], writer: RecordWriter) -> None:
        self.stream = stream
        self.writer = writer
        self.pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        with self._lock:
            self.pending += text
            *whole, self.pending = self.pending.split("\n")
        for line in whole:
            self.writer.copy_output(line + "\n")
        return written

    def flush(self) -> None:
        self.stream.flush()
        with self._lock:
            rest, self.pending = self.pending, ""
        if rest:
            self.writer.copy_output(rest + "\n")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
