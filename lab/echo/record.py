"""One structured record per line on stdout: the contract between the echo programs and the lab.

Every record is a single JSON object on one line, flushed as soon as it is written, so it
reads well in `docker compose up` output and the orchestrator can parse it without loss.
The schema is documented in docs/log-schema.md; `SCHEMA_VERSION` changes when a field's
meaning changes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import socket
import sys
import threading
from typing import IO, Any

SCHEMA_VERSION = 1

# A message's text is logged whole up to this many bytes; beyond it the record carries the
# first TEXT_LIMIT bytes and `truncated: true` (the byte count is always exact).
TEXT_LIMIT = 1024


def utc_timestamp() -> str:
    """UTC time with microseconds, ISO 8601 with a trailing Z."""
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_addr(addr: Any) -> str | None:
    """`ip:port` for IPv4, `[ip]:port` for IPv6, from a socket address tuple."""
    if addr is None:
        return None
    if isinstance(addr, str):
        return addr
    host, port = addr[0], addr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def parse_addr(text: str) -> tuple[str, int]:
    """Inverse of format_addr: `1.2.3.4:5` or `[::1]:5` -> (host, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def text_fields(data: bytes, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    """The message body as record fields: UTF-8 text where it decodes, else base64 with b64."""
    fields: dict[str, Any] = {}
    body = data
    if len(body) > limit:
        body = body[:limit]
        fields["truncated"] = True
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut may split a multi-byte character: keep the whole characters before it.
        if fields.get("truncated") and exc.start >= len(body) - 3 and exc.reason == "unexpected end of data":
            fields["text"] = body[: exc.start].decode("utf-8")
            return fields
        fields["text"] = base64.b64encode(body).decode("ascii")
        fields["b64"] = True
        return fields
    fields["text"] = text
    return fields


def default_host_name() -> str:
    """The name a program logs as: LAB_NAME from the environment, else the host name."""
    return os.environ.get("LAB_NAME") or socket.gethostname()


class RecordWriter:
    """Writes records for one program (host, role); safe to share between threads."""

    def __init__(self, role: str, host: str | None = None, stream: IO[str] | None = None) -> None:
        self.role = role
        self.host = host or default_host_name()
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def emit(self, proto: str | None, event: str, **fields: Any) -> dict[str, Any]:
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
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                # stdout gone (pipe closed, stream closed at exit): the program keeps serving.
                pass
        return record
