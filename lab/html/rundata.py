"""A run directory read back for the report: the manifest, the conversation rows, and each
message's journey (client -> server -> client) with where a lost one got lost.

Read as streams, never whole: `events.jsonl` is read once to place the clock's origin (up to
the first client record), once to join the conversation rows (lab.logs.join_views) and once
to follow the messages (lab.html.journeys), so what is held grows with the client sockets, not
with the messages: each socket keeps its counts and a bounded number of messages to draw. The
wire view is added by `lab.html.wire` when the run has a capture.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.expect.query import Record, parse_ts, select
from lab.html.samples import RttSamples
from lab.logs import Conversation, EventFile, join_views

# Where a message that got no echo was lost, as the two programs' own records tell it.
TO_SERVER = "client→server"  # the server never logged it
AT_SERVER = "at the server"  # received, never echoed (the server stopped, was killed...)
TO_CLIENT = "server→client"  # echoed, the client never got it

# The wire's word for a lost round trip (docs/wire.md), said for people, by the leg it lost.
WIRE_PLACES = {
    ("request-not-on-wire", TO_SERVER): "never on the wire",
    ("no-echo-on-wire", TO_SERVER): "on the wire but never read by the server",
    ("no-echo-on-wire", AT_SERVER): "read but never echoed",
    ("no-echo-on-wire", TO_CLIENT): "echoed but never on the wire",
    ("echo-not-received", TO_CLIENT): "echo on the wire but never received",
}


@dataclass
class Journey:
    """One message: when the client sent it, when the server read and echoed it, when the echo
    came back. Times are seconds since the run's origin; None where it never happened."""

    seq: int
    proto: str
    bytes: int
    text: str
    sent: float
    received: float | None = None
    echoed: float | None = None
    reply: float | None = None
    rtt_ms: float | None = None
    intact: bool | None = None
    retry: bool = False
    resent: bool = False  # lost here, sent again on the client's next connection
    wire_where: str | None = None  # the capture's verdict (docs/wire.md `where`), when captured
    index: int = 0  # the how-manieth message of its socket (from 0), resends included

    @property
    def lost_where(self) -> str | None:
        """None when the echo arrived; otherwise the leg that lost it. The wire settles the ends
        (never on the wire / on the wire but not received); the server's records the middle."""
        if self.reply is not None:
            return None
        if self.wire_where == "request-not-on-wire":
            return TO_SERVER
        if self.wire_where == "echo-not-received":
            return TO_CLIENT
        if self.received is None:
            return TO_SERVER
        return AT_SERVER if self.echoed is None else TO_CLIENT

    @property
    def lost_place(self) -> str:
        """Where on that leg, when the capture can tell; empty otherwise."""
        where = self.lost_where
        return WIRE_PLACES.get((self.wire_where or "", where or ""), "") if where else ""


@dataclass
class Mark:
    """Something on a conversation's timeline that is not a message: connect, close, timeout."""

    t: float
    side: str  # client | server
    what: str  # connected, accepted, closed, timeout, reconnect, error
    detail: str = ""


@dataclass
class Socket:
    """One row of the conversation table with its counts, and the messages and marks kept to
    draw its ladder (every one of a short conversation; lab.html.journeys says which of a long one)."""

    conversation: Conversation
    address: str | None  # the client's own address as the server would see it
    journeys: list[Journey] = field(default_factory=list)  # kept, in the order they were sent
    marks: list[Mark] = field(default_factory=list)  # kept: the client's, then the server's
    wire: dict[str, Any] | None = None  # the wire's view of this socket, when captured
    messages: int | None = None  # every message it sent (resends included); None: count `journeys`
    lost_by_where: dict[str, int] = field(default_factory=dict)  # every lost message, by leg
    lost_by_place: dict[str, int] = field(default_factory=dict)  # and by the wire's place, when captured
    notable_left_out: int = 0  # lost, garbled or resent messages not kept
    mark_counts: dict[str, int] | None = None  # every mark by what it is; None: count `marks`
    marks_left_out: int = 0

    @property
    def lost(self) -> list[Journey]:
        """The lost messages kept (all of them unless `notable_left_out`)."""
        return [j for j in self.journeys if j.lost_where]

    @property
    def sent_count(self) -> int:
        return len(self.journeys) if self.messages is None else self.messages

    @property
    def lost_count(self) -> int:
        return sum(self.lost_by_where.values()) if self.messages is not None else len(self.lost)

    @property
    def left_out(self) -> int:
        """Messages sent and not kept to draw."""
        return self.sent_count - len(self.journeys)

    @property
    def row_id(self) -> str:
        c = self.conversation
        return f"{c.client}-{c.proto}-{c.session or 0}-{c.client_port or c.server_saw or ''}".replace(":", "_")


@dataclass
class Fault:
    """A fault on the run's timeline; `until` when it was undone."""

    t: float
    action: str
    target: str
    ok: bool
    until: float | None = None

    @property
    def label(self) -> str:
        return f"{self.action} {self.target}" + ("" if self.ok else " (failed)")


@dataclass
class RunData:
    directory: Path
    manifest: dict[str, Any]
    origin: str | None  # ts of t=0: the first client record
    sockets: list[Socket]
    faults: list[Fault]
    applied: list[Record] = field(default_factory=list)  # the shapers' and routers' `applied` records
    samples: RttSamples = field(default_factory=RttSamples)  # what the round-trip chart is drawn from
    rtt: dict[str, dict[str, float | None]] = field(default_factory=dict)  # per protocol: p50, p95, max
    wire_note: str = "this run has no capture"  # why there is no wire view, when there is none
    wire_summary: dict[str, Any] | None = None  # wire.json's `capture`, when there is a wire view
    wire_flags: list[dict[str, Any]] = field(default_factory=list)  # wire.json's disagreements

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.directory.name)

    @property
    def has_wire(self) -> bool:
        return self.wire_summary is not None

    @property
    def left_out(self) -> int:
        """Messages counted but not kept to draw, over every socket."""
        return sum(s.left_out for s in self.sockets)

    def clients(self) -> list[str]:
        """Client names in table order, each once."""
        return list(dict.fromkeys(s.conversation.client for s in self.sockets))


def load_run(directory: Path, places: dict | None = None) -> RunData:
    """Read a run directory; a missing or damaged file is a LabError naming it. `places`: the
    wire's `where` of each lost round trip (lab.html.wire.message_places), when captured."""
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{manifest_path}: missing; is {directory} a run directory?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{manifest_path}: not readable JSON ({exc})") from None
    events_path = directory / "events.jsonl"
    events: Iterable[Record] = EventFile(events_path) if events_path.exists() else []
    return build_run(directory, manifest, events, places)


def build_run(directory: Path, manifest: dict[str, Any], events: Iterable[Record],
              places: dict | None = None) -> RunData:
    """`events` is read three times (a list, or an EventFile that reads its file again)."""
    from lab.html.journeys import Follower  # it follows this module's Journeys and Sockets

    clock = Clock(events)
    sockets = [Socket(conversation=conv, address=conv.own_address) for conv in join_views(events)]
    follower = Follower(sockets, clock, places)
    for record in events:
        follower.add(record)
    rtt = follower.finish()
    return RunData(directory=directory, manifest=manifest, origin=clock.origin_ts, sockets=sockets,
                   faults=faults(follower.fault_records, clock), applied=follower.applied,
                   samples=follower.samples, rtt=rtt)


class Clock:
    """Seconds since the run's origin, the first client record (else the first record), for a
    record timestamp. Every container shares the host's clock, so client and server times compare.
    A record with no real time (output before a program's first record) counts as the origin.
    Reads `events` only up to the origin."""

    def __init__(self, events: Iterable[Record] = (), origin_ts: str | None = None) -> None:
        self.origin_ts: str | None = origin_ts
        self.origin = _parsed(origin_ts)
        if self.origin is not None:
            return
        for wanted in ("client", None):
            for record in events:
                if (wanted is None or record.get("role") == wanted) and _parsed(record.get("ts")):
                    self.origin_ts, self.origin = record["ts"], _parsed(record["ts"])
                    return

    def __call__(self, ts: str | None) -> float:
        moment = _parsed(ts)
        if self.origin is None or moment is None:
            return 0.0
        return (moment - self.origin).total_seconds()


def _parsed(ts: Any):
    try:
        return parse_ts(ts) if isinstance(ts, str) else None
    except ValueError:
        return None


def faults(events: Iterable[Record], clock: Clock) -> list[Fault]:
    """The lab's fault records, each undo folded into the fault it undoes."""
    out: list[Fault] = []
    for r in select(events, "lab", "fault"):
        if r.get("undo"):
            for fault in reversed(out):
                if fault.target == r.get("target") and fault.until is None:
                    fault.until = clock(r["ts"])
                    break
            continue
        out.append(Fault(t=clock(r["ts"]), action=str(r.get("action")), target=str(r.get("target")),
                         ok=r.get("ok") is not False))
    return out


def loss_by_direction(sockets: list[Socket]) -> list[dict[str, Any]]:
    """Per protocol: messages sent, and how many were lost on each leg (every message counted,
    kept to draw or not)."""
    rows: dict[str, dict[str, Any]] = {}
    for sock in sockets:
        proto = sock.conversation.proto
        row = rows.setdefault(proto, {"proto": proto, "sent": 0, "lost": 0, TO_SERVER: 0, AT_SERVER: 0,
                                      TO_CLIENT: 0, "other": 0})
        row["sent"] += sock.sent_count
        for where, count in lost_by_where(sock).items():
            row["lost"] += count
            row[where if where in row else "other"] += count
    return [rows[p] for p in sorted(rows)]


def lost_by_where(sock: Socket) -> dict[str, int]:
    """A socket's lost messages by leg: its counts, or its journeys' for one made by hand."""
    return sock.lost_by_where if sock.messages is not None else _count(j.lost_where for j in sock.lost)


def lost_by_place(sock: Socket) -> dict[str, int]:
    """A socket's lost messages by the wire's place, where the capture tells it."""
    return sock.lost_by_place if sock.messages is not None else _count(j.lost_place for j in sock.lost if j.lost_place)


def marks_of(sock: Socket, what: str) -> int:
    """How many marks of a kind (`reconnect`...) a socket had, kept to draw or not."""
    if sock.mark_counts is not None:
        return sock.mark_counts.get(what, 0)
    return sum(1 for m in sock.marks if m.what == what)


def _count(items: Iterable[Any]) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out
