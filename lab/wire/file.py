"""wire.json on disk: written as a stream, and read as one by what draws only part of it.

Version 2 (docs/wire.md) has version 1's structure, laid out so that it can be read a line at a
time: the head (`v`, `capture`, `flags`) first, then each flow on a line of its own opening its
`packets_list`, each packet on a line, then each message on a line. `iter_wire` reads it so,
holding one line at a time; a version 1 file (or any other layout) is read whole, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

VERSION = 2
WIRE_FILE = "wire.json"
_OPEN_PACKETS = ', "packets_list": ['


def write_wire_view(directory: Path, view: dict[str, Any]) -> Path:
    """wire.json, whole or not at all; its packets and messages written one at a time as they are listed."""
    path = directory / WIRE_FILE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        _write(fh, view)
    tmp.replace(path)
    return path


def _write(fh, view: dict[str, Any]) -> None:
    head = {"v": VERSION, **{key: value for key, value in view.items() if key not in ("v", "flows", "messages")}}
    fh.write(json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "flows": [\n')
    flows = view.get("flows") or []
    for n, flow in enumerate(flows):
        fields = {key: value for key, value in flow.items() if key != "packets_list"}
        fh.write("  " + json.dumps(fields, ensure_ascii=False)[:-1] + _OPEN_PACKETS)
        first = True
        for line in _lines(flow.get("packets_list") or []):
            fh.write(("\n   " if first else ",\n   ") + line)
            first = False
        fh.write("\n  ]}" + (",\n" if n + 1 < len(flows) else "\n"))
    fh.write(' ],\n "messages": [')
    first = True
    for message in view.get("messages") or []:
        fh.write(("\n  " if first else ",\n  ") + json.dumps(message, ensure_ascii=False))
        first = False
    fh.write("\n ]\n}\n")


def _lines(packets: Iterable[Any]) -> Iterator[str]:
    """Each packet as one line of JSON (as the view's spool wrote it, when it was)."""
    raw = getattr(packets, "raw", None)
    if raw is not None:
        return (line.decode("utf-8") for line in raw())
    return (json.dumps(p, ensure_ascii=False) for p in packets)


def iter_wire(directory: Path) -> Iterator[tuple[str, Any]]:
    """wire.json as a stream of (kind, item): ("head", {v, capture, flags, ...}) first, then
    ("flow", its fields without its packets) followed by a ("packet", packet) for each of its
    packets, then ("message", message) for each message. Nothing for a run without a readable
    wire.json. A version 2 file is read a line at a time; any other, whole."""
    try:
        fh = open(directory / WIRE_FILE, "rb")
    except OSError:
        return
    with fh:
        head = _head(fh)
        if head is None:
            yield from _whole(directory)
            return
        yield "head", head
        in_flows = True
        for line in fh:
            text = line.strip()
            if in_flows:
                if text.startswith(b"{") and text.endswith(_PACKETS_OPENED):
                    yield "flow", _flow_fields(text)
                elif text.startswith(b"{"):
                    yield "packet", json.loads(text.rstrip(b","))
                elif text.startswith(b'"messages"'):
                    in_flows = False
            elif text.startswith(b"{"):
                yield "message", json.loads(text.rstrip(b","))


def sections(directory: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], int, int]], int] | None:
    """Where each part of a version 2 wire.json lies, for reading its flows' packets side by side:
    its head, each flow's fields with the byte range of its packets' lines, and where its
    messages start. None for a file in any other layout (or none)."""
    try:
        fh = open(directory / WIRE_FILE, "rb")
    except OSError:
        return None
    flows: list[tuple[dict[str, Any], int, int]] = []
    with fh:
        head = _head(fh)
        if head is None:
            return None
        at, current = fh.tell(), None
        for line in iter(fh.readline, b""):  # readline, not iteration: tell() stays exact
            start, at = at, at + len(line)
            text = line.strip()
            if text.startswith(b"{") and text.endswith(_PACKETS_OPENED):
                current = [_flow_fields(text), at, at]
            elif text.startswith(b"]}") and current is not None:
                current[2] = start
                flows.append(tuple(current))
                current = None
            elif text.startswith(b'"messages"'):
                return head, flows, at
    return None


_FLOWS_OPENED = b' "flows": [\n'
_PACKETS_OPENED = _OPEN_PACKETS.strip(", ").encode()


def _head(fh) -> dict[str, Any] | None:
    """The head of a version 2 file open in binary, read up to its flows (the file is then just
    past that line); None for any other layout."""
    lines = []
    for line in iter(fh.readline, b""):
        if line == _FLOWS_OPENED:
            try:
                head = json.loads(b"".join(lines).rstrip().rstrip(b",") + b"\n}")
            except json.JSONDecodeError:
                return None
            return head if isinstance(head, dict) and head.get("v", 1) >= 2 else None
        lines.append(line)
        if len(lines) > 100_000:  # not this layout
            return None
    return None


def _flow_fields(text: bytes) -> dict[str, Any]:
    """A flow's line, which opens its packets_list, as the flow's other fields."""
    return json.loads(text[: -len(_PACKETS_OPENED)].rstrip().rstrip(b",") + b"}")


def _whole(directory: Path) -> Iterator[tuple[str, Any]]:
    data = read_wire_view(directory)
    if data is None:
        return
    yield "head", {key: value for key, value in data.items() if key not in ("flows", "messages")}
    for flow in data.get("flows") or []:
        yield "flow", {key: value for key, value in flow.items() if key != "packets_list"}
        for packet in flow.get("packets_list") or []:
            yield "packet", packet
    for message in data.get("messages") or []:
        yield "message", message


def read_wire_view(directory: Path) -> dict[str, Any] | None:
    """A run's wire.json whole, or None when the run has none (older runs, or it was never
    written). For a small run or a quick look: what draws part of a long run reads `iter_wire`."""
    path = directory / WIRE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_wire_capture(directory: Path) -> dict[str, Any] | None:
    """wire.json's `capture` alone, from the head of a version 2 file (it is written first):
    whether the run has a wire view, without reading its flows and messages; an older file is
    read whole. None without a wire.json."""
    try:
        fh = open(directory / WIRE_FILE, "rb")
    except OSError:
        return None
    with fh:
        head = _head(fh)
    capture = (head if head is not None else read_wire_view(directory) or {}).get("capture")
    return capture if isinstance(capture, dict) else None
