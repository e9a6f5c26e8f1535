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
    head = {key: value for key, value in view.items() if key not in ("flows", "messages")}
    head["v"] = VERSION
    head = {"v": VERSION, **head}
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
    path = directory / WIRE_FILE
    try:
        fh = open(path, encoding="utf-8")
    except OSError:
        return
    with fh:
        head_lines = []
        for line in fh:
            if line == ' "flows": [\n':
                break
            head_lines.append(line)
            if len(head_lines) > 100_000:  # not this layout
                break
        else:
            head_lines = None
        head = None
        if head_lines and line == ' "flows": [\n':
            try:
                head = json.loads("".join(head_lines).rstrip().rstrip(",") + "\n}")
            except json.JSONDecodeError:
                head = None
        if not isinstance(head, dict) or head.get("v", 1) < 2:
            yield from _whole(path)
            return
        yield "head", head
        section = "flows"
        for line in fh:
            text = line.strip()
            if section == "flows":
                if text.endswith(_OPEN_PACKETS.strip()) and text.startswith("{"):
                    yield "flow", json.loads(text[: -len(_OPEN_PACKETS.lstrip(", "))].rstrip().rstrip(",") + "}")
                elif text.startswith("{"):
                    yield "packet", json.loads(text.rstrip(","))
                elif text.startswith('"messages"'):
                    section = "messages"
            elif text.startswith("{"):
                yield "message", json.loads(text.rstrip(","))


def sections(directory: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], int, int]], int] | None:
    """Where each part of a version 2 wire.json lies, for reading its flows' packets side by side:
    its head, each flow's fields with the byte range of its packets' lines, and where its
    messages start. None for a file in any other layout (or none)."""
    path = directory / WIRE_FILE
    try:
        fh = open(path, "rb")
    except OSError:
        return None
    head_lines: list[bytes] = []
    flows: list[tuple[dict[str, Any], int, int]] = []
    with fh:
        at, section, current = 0, "head", None
        for line in fh:
            start, at = at, at + len(line)
            if section == "head":
                if line == b' "flows": [\n':
                    try:
                        head = json.loads(b"".join(head_lines).rstrip().rstrip(b",") + b"\n}")
                    except json.JSONDecodeError:
                        return None
                    if not isinstance(head, dict) or head.get("v", 1) < 2:
                        return None
                    section = "flows"
                else:
                    head_lines.append(line)
                    if len(head_lines) > 100_000:
                        return None
                continue
            text = line.strip()
            if text.startswith(b"{") and text.endswith(b'"packets_list": ['):
                fields = json.loads(text[: -len(b'"packets_list": [')].rstrip().rstrip(b",") + b"}")
                current = [fields, at, at]
            elif text.startswith(b"]}") and current is not None:
                current[2] = start
                flows.append(tuple(current))
                current = None
            elif text.startswith(b'"messages"'):
                return head, flows, at
    return None


def _whole(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    if not isinstance(data, dict):
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
    """wire.json's `capture` alone, read from the head of the file (it is written first): whether
    the run has a wire view, without reading its flows and messages. None without a wire.json."""
    path = directory / WIRE_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(1 << 20)
    except OSError:
        return None
    at = head.find('"capture":')
    try:
        capture, _end = json.JSONDecoder().raw_decode(head, head.index("{", at)) if at >= 0 else (None, 0)
    except ValueError:  # not where it is written: read the whole file
        capture = (read_wire_view(directory) or {}).get("capture")
    return capture if isinstance(capture, dict) else None
