"""One structured record per line: how every program in the lab's containers reports events.

Every record is a single JSON object on one line, flushed as soon as it is written, so it
reads well in `docker compose up` output and the orchestrator can parse it without loss.
A writer builds each record (`build`) and hands the line to its sinks (`sinks`, stdout by
default); both happen under one lock, so a program's records leave in the order they were
stamped, whichever thread wrote them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from typing import IO, Any

from lab.records.schema import SCHEMA_VERSION, utc_timestamp


def default_host_name() -> str:
    """The name a program logs as: LAB_NAME from the environment, else the host name."""
    return os.environ.get("LAB_NAME") or socket.gethostname()


def encode(record: dict[str, Any]) -> str:
    """A record as its line: compact JSON, non-ASCII text kept readable, newline-terminated."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


class RecordWriter:
    """Writes records for one program (host, role); safe to share between threads."""

    def __init__(self, role: str, host: str | None = None, stream: IO[str] | None = None) -> None:
        self.role = role
        self.host = host or default_host_name()
        self.sinks: list[IO[str]] = [stream if stream is not None else sys.stdout]
        self._lock = threading.Lock()

    def build(self, proto: str | None, event: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The record for one event: the header every record carries, then the event's own
        fields (those given as None are left out). Called with the writer's lock held."""
        record: dict[str, Any] = {
            "v": SCHEMA_VERSION,
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
                try:
                    sink.write(line)
                    sink.flush()
                except (BrokenPipeError, ValueError):
                    # The sink is gone (pipe closed, stream closed at exit): the program keeps serving.
                    pass
        return record
