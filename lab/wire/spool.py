"""Lines of JSON kept on disk while the wire view is made, read back as often as needed.

The wire view lists every packet (by flow) and every message: a run's worth of them. They are
written here as they are settled (lab.wire.match) and read back when wire.json is written, when
the expectations count the messages, and when the diagnoses look at a flow's packets, so none of
them is held in memory (issue 8). The files are anonymous temporary files: they go with the view.

`FlowLines` keeps each flow's lines together in blocks (a flow's lines are buffered until a
block is full, or until too many are buffered across flows), so a flow's lines are read back
without reading the others'.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

BLOCK = 256  # lines of one flow written together
BUFFERED = 16_384  # lines buffered across flows, at most
READ = 1 << 16  # bytes read back at a time


class Lines:
    """One sequence of lines, in the order added."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile()
        self.count = 0

    def add(self, item: Any) -> None:
        self._fh.write(_encode(item))
        self.count += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in self.raw())

    def raw(self) -> Iterator[bytes]:
        """Each line as written (without its newline)."""
        self._fh.flush()
        yield from read_lines(self._fh.fileno(), 0, self._fh.tell())


class FlowLines:
    """Lines by flow (its index), each flow's in the order added."""

    def __init__(self) -> None:
        self._fh = tempfile.TemporaryFile()
        self._blocks: dict[int, list[tuple[int, int]]] = {}  # flow -> (offset, length) of its blocks
        self._buffers: dict[int, list[bytes]] = {}
        self._buffered = 0
        self.counts: dict[int, int] = {}

    def add(self, flow: int, item: Any) -> None:
        buffer = self._buffers.setdefault(flow, [])
        buffer.append(_encode(item))
        self.counts[flow] = self.counts.get(flow, 0) + 1
        self._buffered += 1
        if len(buffer) >= BLOCK:
            self._flush(flow)
        elif self._buffered > BUFFERED:
            for other in list(self._buffers):
                self._flush(other)

    def _flush(self, flow: int) -> None:
        buffer = self._buffers.pop(flow, None)
        if not buffer:
            return
        data = b"".join(buffer)
        self._fh.seek(0, os.SEEK_END)
        self._blocks.setdefault(flow, []).append((self._fh.tell(), len(data)))
        self._fh.write(data)
        self._buffered -= len(buffer)

    def raw(self, flow: int) -> Iterator[bytes]:
        """A flow's lines as written (without their newlines)."""
        self._fh.flush()
        for offset, length in self._blocks.get(flow, []):
            yield from read_lines(self._fh.fileno(), offset, offset + length)
        yield from (line[:-1] for line in list(self._buffers.get(flow, [])))

    def items(self, flow: int) -> Iterator[dict[str, Any]]:
        return (json.loads(line) for line in self.raw(flow))


class FlowItems:
    """One flow's lines as a re-readable list-like (wire.json's `packets_list` of a view in memory)."""

    def __init__(self, lines: FlowLines, flow: int) -> None:
        self._lines, self._flow = lines, flow

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._lines.items(self._flow)

    def __len__(self) -> int:
        return self._lines.counts.get(self._flow, 0)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, FlowItems)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _encode(item: Any) -> bytes:
    return (json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8")


def read_lines(fd: int, start: int, end: int) -> Iterator[bytes]:
    """The lines between two offsets of a file, read a piece at a time (without the newlines)."""
    rest = b""
    while start < end:
        piece = os.pread(fd, min(READ, end - start), start)
        if not piece:
            break
        start += len(piece)
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest
