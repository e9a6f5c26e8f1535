"""The record format of docs/log-schema.md: the version and how fields are written.

Records are JSON objects, one per line. These functions give each shared field its one text
form, for the programs that write records and for the orchestrator that reads them.
`SCHEMA_VERSION` changes when a field's meaning changes.
"""

from __future__ import annotations

import base64
import datetime as _dt
from typing import Any

SCHEMA_VERSION = 2

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
