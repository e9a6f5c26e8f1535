"""A run directory read back for the report: the manifest, the events, the joined conversations,
each message's journey (client -> server -> client) and where a lost one got lost.

Pure once loaded: everything here is computed from `manifest.json` and `events.jsonl` (the
conversation table is joined again from the events, so it has the round-trip times the CSV
leaves out). The wire view is added by `lab.html.wire` when the run has a capture.

Over 300 lines: a message's journey is followed through three views in one pass, and the
clock, the sockets and the journeys share that pass's state.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.expect.query import Record, client_address, normal_addr, parse_ts, select, who
from lab.logs import Conversation, join_views, read_events

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
    """One row of the conversation table with its messages and marks."""

    conversation: Conversation
    address: str | None  # the client's own address as the server would see it
    journeys: list[Journey] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    wire: dict[str, Any] | None = None  # the wire's view of this socket, when captured

    @property
    def lost(self) -> list[Journey]:
        return [j for j in self.journeys if j.lost_where]

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
    events: list[Record]
    origin: str | None  # ts of t=0: the first client record
    sockets: list[Socket]
    faults: list[Fault]
    wire_note: str = "this run has no capture"  # why there is no wire view, when there is none
    wire_summary: dict[str, Any] | None = None  # wire.json's `capture`, when there is a wire view
    wire_flags: list[dict[str, Any]] = field(default_factory=list)  # wire.json's disagreements

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.directory.name)

    @property
    def has_wire(self) -> bool:
        return self.wire_summary is not None

    def clients(self) -> list[str]:
        """Client names in table order, each once."""
        return list(dict.fromkeys(s.conversation.client for s in self.sockets))


def load_run(directory: Path) -> RunData:
    """Read a run directory; a missing or damaged file is a LabError naming it."""
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{manifest_path}: missing; is {directory} a run directory?") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{manifest_path}: not readable JSON ({exc})") from None
    events_path = directory / "events.jsonl"
    events = read_events(events_path) if events_path.exists() else []
    return build_run(directory, manifest, events)


def build_run(directory: Path, manifest: dict[str, Any], events: list[Record]) -> RunData:
    clock = Clock(events)
    sockets = journeys(events, join_views(events), clock)
    return RunData(directory=directory, manifest=manifest, events=events, origin=clock.origin_ts, sockets=sockets,
                   faults=faults(events, clock))


class Clock:
    """Seconds since the run's origin, the first client record (else the first record), for a
    record timestamp. Every container shares the host's clock, so client and server times compare.
    A record with no real time (output before a program's first record) counts as the origin."""

    def __init__(self, events: list[Record]) -> None:
        self.origin_ts: str | None = None
        self.origin = None
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


def faults(events: list[Record], clock: Clock) -> list[Fault]:
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


def journeys(events: list[Record], conversations: list[Conversation], clock: Clock) -> list[Socket]:
    """Each conversation row with its messages followed through the server's records."""
    sockets: dict[tuple[str, str], Socket] = {}
    by_row: list[Socket] = []
    for conv in conversations:
        address = conv.own_address
        sock = Socket(conversation=conv, address=address)
        by_row.append(sock)
        if address:
            sockets[(conv.proto, normal_addr(address))] = sock
        if conv.server_saw:
            sockets.setdefault((conv.proto, normal_addr(conv.server_saw)), sock)
    _client_side(events, sockets, clock)
    _server_side(events, sockets, clock)
    _mark_resent(by_row)
    return by_row


def _mark_resent(rows: list[Socket]) -> None:
    """A TCP message lost with its connection and sent again on the client's next one."""
    later: dict[tuple[str, str, int], set[int]] = {}
    for sock in sorted(rows, key=lambda s: min((j.sent for j in s.journeys), default=0.0), reverse=True):
        c = sock.conversation
        key = (c.client, c.proto, int(c.session or 0))
        for journey in sock.journeys:
            if journey.lost_where and journey.seq in later.get(key, set()):
                journey.resent = True
        later.setdefault(key, set()).update(j.seq for j in sock.journeys)


def _client_side(events: list[Record], sockets: dict[tuple[str, str], Socket], clock: Clock) -> None:
    current: dict[tuple[str, str, int], Socket] = {}
    latest: dict[tuple[int, int], Journey] = {}
    for r in select(events, "client"):
        event, proto = r.get("event"), str(r.get("proto"))
        owner = (who(r), proto, int(r.get("session") or 0))
        if event in ("connected", "bound") and r.get("local"):
            sock = current[owner] = sockets.get((proto, client_address(r)))
            if sock is not None:
                sock.marks.append(Mark(clock(r["ts"]), "client", event, f"attempt {r['attempt']}"
                                       if r.get("attempt", 1) != 1 else ""))
            continue
        sock = current.get(owner)
        if sock is None:
            continue
        t = clock(r["ts"])
        if event == "sent" and r.get("seq") is not None:
            retry = any(j.seq == r["seq"] for j in sock.journeys)
            journey = Journey(seq=int(r["seq"]), proto=proto, bytes=int(r.get("bytes") or 0),
                              text=_text(r), sent=t, retry=retry)
            sock.journeys.append(journey)
            latest[(id(sock), journey.seq)] = journey
        elif event == "reply" and r.get("seq") is not None:
            journey = latest.get((id(sock), int(r["seq"])))
            if journey is not None and journey.reply is None:
                journey.reply, journey.rtt_ms, journey.intact = t, r.get("rtt_ms"), r.get("intact")
        elif event in ("timeout", "closed", "reconnect", "error", "duplicate"):
            detail = str(r.get("reason") or r.get("detail") or "")
            if event in ("timeout", "duplicate") and r.get("seq") is not None:
                detail = f"seq {r['seq']}" + (f" {detail}" if detail else "")
            sock.marks.append(Mark(t, "client", event, detail))


def _server_side(events: list[Record], sockets: dict[tuple[str, str], Socket], clock: Clock) -> None:
    """Match the server's reads and echoes to the client's messages.

    UDP: a datagram is one message, matched by its text (cycled messages are made unique).
    TCP: a byte stream, so reads and echoes are placed by byte offset (`_Stream`).
    """
    unread: dict[int, dict[str, deque[Journey]]] = {}  # UDP: per socket, by text
    unechoed: dict[int, deque[Journey]] = defaultdict(deque)  # UDP: read, not yet echoed
    streams: dict[int, _Stream] = {}  # TCP
    for r in select(events, "server"):
        if not r.get("peer"):
            continue
        proto = str(r.get("proto"))
        sock = sockets.get((proto, normal_addr(r["peer"])))
        if sock is None:
            continue
        event, t, key = r.get("event"), clock(r["ts"]), id(sock)
        if event in ("accepted", "closed"):
            sock.marks.append(Mark(t, "server", event, str(r.get("reason") or "")))
        elif proto == "udp" and event == "received":
            if key not in unread:
                unread[key] = defaultdict(deque)
                for journey in sock.journeys:
                    unread[key][journey.text].append(journey)
            waiting = unread[key].get(_text(r))
            if waiting:
                journey = waiting.popleft()
                journey.received = t
                unechoed[key].append(journey)
        elif proto == "udp" and event == "echoed" and unechoed[key]:
            unechoed[key].popleft().echoed = t
        elif proto == "tcp" and event in ("received", "echoed"):
            stream = streams.setdefault(key, _Stream(sock.journeys))
            stream.advance(event, int(r.get("bytes") or 0), t)


class _Stream:
    """A TCP socket's messages laid end to end, with how far the server's reads and echoes got."""

    def __init__(self, journeys: list[Journey]) -> None:
        self.journeys = journeys
        self.starts, self.ends, total = [], [], 0
        for journey in journeys:
            self.starts.append(total)
            total += journey.bytes
            self.ends.append(total)
        self.read = self.echoed = 0  # bytes so far
        self.next_read = self.next_echo = 0  # message index

    def advance(self, event: str, size: int, t: float) -> None:
        n = len(self.journeys)
        if event == "received":
            self.read += size
            # Every message whose first byte came in with this read was received now.
            while self.next_read < n and self.starts[self.next_read] < self.read:
                self.journeys[self.next_read].received = t
                self.next_read += 1
        else:
            self.echoed += size
            # Every message whose last byte went out with this echo was echoed now.
            while self.next_echo < n and self.ends[self.next_echo] <= self.echoed:
                self.journeys[self.next_echo].echoed = t
                self.next_echo += 1


def _text(record: Record) -> str:
    text = record.get("text")
    return "" if text is None else str(text)


def loss_by_direction(sockets: list[Socket]) -> list[dict[str, Any]]:
    """Per protocol: messages sent, and how many were lost on each leg."""
    rows: dict[str, dict[str, Any]] = {}
    for sock in sockets:
        proto = sock.conversation.proto
        row = rows.setdefault(proto, {"proto": proto, "sent": 0, "lost": 0, TO_SERVER: 0, AT_SERVER: 0,
                                      TO_CLIENT: 0, "other": 0})
        for journey in sock.journeys:
            row["sent"] += 1
            where = journey.lost_where
            if where:
                row["lost"] += 1
                row[where if where in row else "other"] += 1
    return [rows[p] for p in sorted(rows)]
