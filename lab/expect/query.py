"""Questions asked of a run's collected records (events.jsonl as a list of dicts): which records,
whose, which addresses, which messages and connections.

Shared by the expectation kinds, the view joining (lab/logs.py) and the reports. No I/O: every
function takes the time-ordered records, as docs/log-schema.md describes them plus the
orchestrator's `service`, `container` and `ip` fields, and returns records or small plain objects.
"""

from __future__ import annotations

import datetime as _dt
import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.records.schema import parse_addr as split_addr  # the schema's own address format

# Re-exported (reports and checks import it from here): the client's own definition, so the
# lab's p50/p95 and the client summary's agree.
from lab.records.stats import percentile as percentile

Record = dict[str, Any]

# Wildcard addresses a client may see from getsockname() on an unconnected UDP socket.
_WILDCARDS = {"0.0.0.0", "::", ""}


def parse_ts(text: str) -> _dt.datetime:
    """A record's `ts` (`2026-11-25T08:46:00.123456Z`) as an aware datetime."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def ms_between(earlier: str, later: str) -> float:
    """Milliseconds from one record timestamp to another (negative if `later` is earlier)."""
    return (parse_ts(later) - parse_ts(earlier)).total_seconds() * 1000.0


def who(record: Record) -> str:
    """The name of the program a record came from: compose service, else container, else host."""
    return str(record.get("service") or record.get("container") or record.get("host") or "?")


def normal_addr(text: str, own_ip: str | None = None) -> str:
    """An address in the form both views can be compared in.

    A wildcard host (an unconnected UDP socket reports 0.0.0.0) becomes the container's own IP
    when known, and an IPv4-mapped IPv6 peer (`[::ffff:10.77.0.11]:5`) becomes plain IPv4.
    """
    host, port = split_addr(text)
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    if host in _WILDCARDS and own_ip:
        host = own_ip
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family_of(address: str) -> str:
    """`ipv6` or `ipv4` for a normalised address (an IPv4-mapped peer is already plain IPv4)."""
    return "ipv6" if address.startswith("[") else "ipv4"


def port_of(address: str) -> int:
    return split_addr(address)[1]


def select(records: Iterable[Record], role: str, event: str | None = None,
           proto: str | None = None, services: Sequence[str] | None = None) -> Iterator[Record]:
    """Records of one role (and event, proto unless "any"/None, client service names), as they
    come: a run's records are read as a stream, never all held at once."""
    for rec in records:
        if rec.get("role") != role:
            continue
        if event is not None and rec.get("event") != event:
            continue
        if proto not in (None, "any") and rec.get("proto") != proto:
            continue
        if services and who(rec) not in services:
            continue
        yield rec


def reply_rtts(records: Iterable[Record], proto: str | None = None,
               services: Sequence[str] | None = None) -> list[float]:
    """The round-trip times of the clients' `reply` records."""
    return [r["rtt_ms"] for r in select(records, "client", "reply", proto, services)
            if isinstance(r.get("rtt_ms"), (int, float))]


def client_address(record: Record) -> str:
    """The client's own address from a `connected`/`bound` record, as the server would see it.

    An unconnected UDP socket reports the wildcard (`0.0.0.0:41234`); the client then adds
    `local_route`, the routed source address with the same port, else the container's `ip` is used.
    """
    local = record["local"]
    if split_addr(local)[0] in _WILDCARDS and record.get("local_route"):
        local = record["local_route"]
    return normal_addr(local, record.get("ip"))


def client_sockets(records: Iterable[Record], proto: str | None = None,
                   services: Sequence[str] | None = None) -> list[Record]:
    """Every client socket as its `connected` (TCP) or `bound` (UDP) record, in time order."""
    return [r for r in select(records, "client", proto=proto, services=services)
            if r.get("event") in ("connected", "bound") and r.get("local")]


def server_peers(records: Iterable[Record], proto: str | None = None) -> list[tuple[str, str, Record]]:
    """(proto, normalised peer, record) for each server `accepted` (TCP) or `received` (UDP)."""
    out = []
    for rec in select(records, "server", proto=proto):
        kind = rec.get("proto")
        wanted = "accepted" if kind == "tcp" else "received"
        if rec.get("event") == wanted and rec.get("peer"):
            out.append((kind, normal_addr(rec["peer"]), rec))
    return out


@dataclass
class Message:
    """One `sent` record by a client and the `reply` that answered it, if any."""

    client: str
    proto: str
    session: int
    seq: int
    sent: Record
    reply: Record | None = None

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.client, self.proto, self.session, self.seq)

    @property
    def intact(self) -> bool:
        return self.reply is not None and self.reply.get("intact") is True


def client_messages(records: Iterable[Record], proto: str | None = None,
                    services: Sequence[str] | None = None) -> list[Message]:
    """Every client `sent`, each paired with the reply that followed it for the same message.

    A message is (client, proto, session, seq). If a client sends the same message again (a
    retry, a resend after reconnecting), each send is its own entry and a reply answers the
    most recent one, so an unanswered earlier send still counts as lost.
    """
    out: list[Message] = []
    latest: dict[tuple[str, str, int, int], Message] = {}
    for rec in select(records, "client", proto=proto, services=services):
        event = rec.get("event")
        if event not in ("sent", "reply") or rec.get("seq") is None:
            continue
        key = (who(rec), str(rec.get("proto")), int(rec.get("session") or 0), int(rec["seq"]))
        if event == "sent":
            msg = Message(*key, sent=rec)
            out.append(msg)
            latest[key] = msg
        elif key in latest and latest[key].reply is None:
            latest[key].reply = rec
    return out


@dataclass
class MessageTally:
    """What the message checks need of every client send, counted as the records go by."""

    sends: int = 0  # every send, resends included
    unanswered: int = 0  # sends that no reply answered
    messages: int = 0  # distinct messages (client, proto, session, seq), judged by their last send
    intact: int = 0  # messages whose last send came back intact
    not_intact: int = 0
    # The first `kept` messages that did not come back intact, in the order they were first sent:
    # (first send's number, "client proto sS #Q: no reply|mismatched").
    first_not_intact: list[tuple[int, str]] = field(default_factory=list)

    def describe_not_intact(self) -> list[str]:
        return [text for _, text in sorted(self.first_not_intact)]


def message_tally(records: Iterable[Record], proto: str | None = None,
                  services: Sequence[str] | None = None, kept: int = 20) -> MessageTally:
    """`client_messages`, counted instead of listed: holds one message per client session.

    A session sends its messages in order and waits for each (a resend repeats the message in
    flight), so once a session sends its next message the one before is final; a later echo of
    an earlier message is a `duplicate` record, never a `reply`.
    """
    tally = MessageTally()
    current: dict[tuple[str, str, int], list] = {}  # session -> [key, first send number, reply]

    def close_send(reply: Record | None) -> None:
        if reply is None:
            tally.unanswered += 1

    def close_message(key: tuple[str, str, int, int], first: int, reply: Record | None) -> None:
        tally.messages += 1
        if reply is not None and reply.get("intact") is True:
            tally.intact += 1
            return
        tally.not_intact += 1
        client, kind, session, seq = key
        entry = (first, f"{client} {kind} s{session} #{seq}: " + ("no reply" if reply is None else "mismatched"))
        if len(tally.first_not_intact) < kept:
            heapq.heappush(tally.first_not_intact, (-entry[0], entry[1]))
        elif -tally.first_not_intact[0][0] > first:
            heapq.heapreplace(tally.first_not_intact, (-entry[0], entry[1]))

    for rec in select(records, "client", proto=proto, services=services):
        event = rec.get("event")
        if event not in ("sent", "reply") or rec.get("seq") is None:
            continue
        key = (who(rec), str(rec.get("proto")), int(rec.get("session") or 0), int(rec["seq"]))
        session = key[:3]
        open_ = current.get(session)
        if event == "sent":
            tally.sends += 1
            if open_ is not None and open_[0] == key:  # a resend: its last send is this one
                close_send(open_[2])
                open_[2] = None
                continue
            if open_ is not None:
                close_send(open_[2])
                close_message(*open_)
            current[session] = [key, tally.sends, None]
        elif open_ is not None and open_[0] == key and open_[2] is None:
            open_[2] = {"intact": rec.get("intact")}
    for open_ in current.values():
        close_send(open_[2])
        close_message(*open_)
    tally.first_not_intact = [(-first, text) for first, text in tally.first_not_intact]
    return tally


def server_connection_spans(records: Iterable[Record]) -> list[tuple[str, str, str | None]]:
    """(server, accepted ts, closed ts or None) for each TCP connection a server accepted.

    Connection numbers restart when the server restarts, so a new `listening` record from the
    same server ends every connection still open there (at that record's time).
    """
    spans: list[tuple[str, str, str | None]] = []
    open_: dict[tuple[str, Any], int] = {}
    for rec in select(records, "server"):
        server, event = who(rec), rec.get("event")
        if event == "listening" and rec.get("proto") in ("tcp", None):
            for key in [k for k in open_ if k[0] == server]:
                idx = open_.pop(key)
                spans[idx] = (server, spans[idx][1], rec["ts"])
        elif rec.get("proto") != "tcp":
            continue
        elif event == "accepted":
            open_[(server, rec.get("conn"))] = len(spans)
            spans.append((server, rec["ts"], None))
        elif event == "closed" and (server, rec.get("conn")) in open_:
            idx = open_.pop((server, rec.get("conn")))
            spans[idx] = (server, spans[idx][1], rec["ts"])
    return spans


def max_concurrent(spans: Sequence[tuple[str, str, str | None]]) -> int:
    """Most connections open at the same moment on any one server (a close at t ends first)."""
    best = 0
    for server in {s[0] for s in spans}:
        points: list[tuple[_dt.datetime, int]] = []
        for _, start, end in (s for s in spans if s[0] == server):
            points.append((parse_ts(start), 1))
            if end is not None:
                points.append((parse_ts(end), -1))
        level = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            level += step
            best = max(best, level)
    return best
