"""Join the wire's flows with the two socket views: whose flow is it, and where did each message go.

Each client socket (its `connected`/`bound` address) claims the flow with that address on the
wire. Each `sent` record is then matched with the packets that carried it: UDP by content (a
client's messages are unique within a socket), TCP by byte range (the n-th message is the bytes
after the first n-1, and the echo server sends the same bytes back). A send with no intact
reply gets a place where its round trip was lost. Disagreements are flagged, never dropped.

The sends of a socket with a flow on the wire are matched with its packets as one stream in time
order (lab.wire.match, holding a bounded window); the sends of a socket the capture never saw,
or of every socket when there is no capture, are derived again from the records whenever they
are listed (`unfollowed_sends`). Neither holds a run's worth of messages: a socket keeps only
the counts its row shows (`Socket.tally`).
"""

from __future__ import annotations

import base64
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lab.expect.query import Record, client_address, normal_addr, select, who
from lab.wire.flows import C2S, S2C, Flow, WirePacket

OK = "ok"
NOT_ON_WIRE = "request-not-on-wire"
NO_ECHO = "no-echo-on-wire"
NOT_RECEIVED = "echo-not-received"
UNKNOWN = "unknown"
LOST_PLACES = (NOT_ON_WIRE, NO_ECHO, NOT_RECEIVED)
OPEN = 256  # sends per socket still waiting for their reply when they are derived again


@dataclass
class Socket:
    """One client socket as its own records describe it."""

    client: str
    proto: str
    session: int
    address: str
    opened: float
    flow: Flow | None = None
    seen_as: str | None = None  # the address a masquerading router gave it, when its flow carries that
    follow: bool = True  # its sends are matched with its flow's packets (it has a flow)
    # What its row says of its sends, counted as each is settled (`tally`): they are not kept.
    lost: dict[str, int] = field(default_factory=dict)
    sent_not_on_wire: bool = False
    reply_not_on_wire: bool = False

    def tally(self, send: SendMatch) -> None:
        if send.where in LOST_PLACES:
            self.lost[send.where] = self.lost.get(send.where, 0) + 1
        self.sent_not_on_wire |= send.where == NOT_ON_WIRE
        self.reply_not_on_wire |= send.replied and not send.echo_on_wire and not send.after_damage

    @property
    def out_dir(self) -> str:
        """The direction of this socket's requests in its flow (a flow seen from its middle may be
        oriented the other way round)."""
        return C2S if self.flow is None or self.flow.client in (self.address, self.seen_as) else S2C

    @property
    def in_dir(self) -> str:
        return S2C if self.out_dir == C2S else C2S


@dataclass
class SendMatch:
    """One `sent` record and the packets that carried its request and its echo."""

    seq: int
    attempt: int
    sent_ts: float
    content: bytes
    size: int
    partial: bool  # only the first bytes are known (the record's text was truncated)
    offset: int = 0  # TCP: where the message starts in the socket's byte stream
    replied: bool = False
    reply_ts: float | None = None
    gave_up_ts: float | None = None  # the client's `timeout` record for this attempt
    request: list[WirePacket] = field(default_factory=list)
    echo: list[WirePacket] = field(default_factory=list)
    on_wire: bool = False  # the whole request crossed the wire
    echo_on_wire: bool = False  # the whole echo crossed the wire
    where: str = UNKNOWN
    after_damage: bool = False  # sent after the last packet a damaged capture holds
    start: float | None = None  # UDP: when the client gave up on the attempt before, if it did
    order: tuple[int, int] = (0, 0)  # (its socket's, its own) place, for listing

    @property
    def retransmissions(self) -> int:
        return sum(1 for p in self.request + self.echo if p.retrans)


def record_time(record: Record) -> float:
    """A record's `ts` as seconds since the epoch, like the capture's timestamps."""
    from lab.expect.query import parse_ts

    return parse_ts(record["ts"]).timestamp()


def message_bytes(record: Record) -> tuple[bytes, bool]:
    """What a `sent` record says was sent: its bytes, and whether they are only the first ones."""
    text = record.get("text") or ""
    data = base64.b64decode(text) if record.get("b64") else text.encode("utf-8")
    return data, bool(record.get("truncated"))


def client_sockets(events: Iterable[Record], claim: Callable[[Socket], object] | None = None) -> list[Socket]:
    """Every client socket, from the client records in time order; without its sends (those are
    matched as a stream: lab.wire.match, or derived again: `unfollowed_sends`).

    `claim`, when given, is called with each socket as it opens (to give it its flow): a socket
    still without a flow is then not followed (`follow` is False)."""
    sockets: list[Socket] = []
    for record in select(events, "client"):
        if record.get("event") in ("connected", "bound") and record.get("local"):
            key = (who(record), str(record.get("proto")), int(record.get("session") or 0))
            sock = Socket(*key, address=client_address(record), opened=record_time(record))
            if claim is not None:
                claim(sock)
                sock.follow = sock.flow is not None
            sockets.append(sock)
    return sockets


def unfollowed_sends(events: Iterable[Record], sockets: list[Socket],
                     known_until: float | None = None) -> Iterator[tuple[Socket, SendMatch]]:
    """The sends of the sockets that were not followed (`client_sockets` with `claim`), derived
    again from the records: each socket's in the order sent, each once its fate is settled (its
    reply, a resend of its seq, OPEN later sends, the socket's next connection or the end of
    the records), with the `where` match_messages gives a send without a flow. `sockets` are
    client_sockets' of the same records. Holds at most OPEN sends per socket."""
    opened = iter(sockets)
    current: dict[tuple[str, str, int], Socket | None] = {}
    waiting: dict[int, tuple[Socket, _Waiting]] = {}  # by id of the socket
    for record in select(events, "client"):
        event = record.get("event")
        key = (who(record), str(record.get("proto")), int(record.get("session") or 0))
        if event in ("connected", "bound") and record.get("local"):
            sock = next(opened, None)  # the same records open the same sockets in the same order
            before = current.get(key)
            if before is not None and id(before) in waiting:  # no reply can reach its sends now
                yield from waiting.pop(id(before))[1].settled(before, known_until, everything=True)
            current[key] = sock if sock is not None and not sock.follow else None
            continue
        sock = current.get(key)
        if sock is None or record.get("seq") is None or event not in ("sent", "reply"):
            continue
        queue = waiting.setdefault(id(sock), (sock, _Waiting()))[1]
        if event == "sent":
            queue.sent(SendMatch(int(record["seq"]), int(record.get("attempt") or 1), record_time(record), b"",
                                 int(record.get("bytes") or 0), False))
        else:
            send = queue.latest.get(int(record["seq"]))
            if send is not None and not send.replied and record.get("intact") is True:
                send.replied, send.reply_ts = True, record_time(record)
        yield from queue.settled(sock, known_until)
    for sock, queue in waiting.values():
        yield from queue.settled(sock, known_until, everything=True)


class _Waiting:
    """One socket's sends not yet given by `unfollowed_sends`, and the latest of each seq (the
    one a reply is for)."""

    def __init__(self) -> None:
        self.sends: deque[SendMatch] = deque()
        self.latest: dict[int, SendMatch] = {}

    def sent(self, send: SendMatch) -> None:
        self.sends.append(send)
        self.latest[send.seq] = send  # an earlier attempt of this seq gets no reply now

    def settled(self, sock: Socket, known_until: float | None,
                everything: bool = False) -> Iterator[tuple[Socket, SendMatch]]:
        sends = self.sends
        while sends and (everything or sends[0].replied or self.latest.get(sends[0].seq) is not sends[0]
                         or len(sends) > OPEN):
            send = sends.popleft()
            if self.latest.get(send.seq) is send:
                del self.latest[send.seq]
            place(send, known_until)
            yield sock, send

    def __len__(self) -> int:
        return len(self.sends)


def claim_flows(sockets: list[Socket], flows: list[Flow],
                translated: dict[tuple[str, str], str] | None = None) -> list[tuple[Socket, Flow]]:
    """Give each socket the flow with its address: the latest one that began by the time it opened
    (a port reused later is another socket's).

    `translated`: a masqueraded socket's address as the server saw it, by (proto, address). Its
    flow on the wire carries that address; a flow that also carries the socket's own address
    beyond the router is packets the router forwarded without NAT. Those are returned, each with
    its socket, so they are shown as such and not as a conversation of their own."""
    claim = FlowClaims(flows, translated)
    for sock in sockets:
        claim(sock)
    return claim.leaks


class FlowClaims:
    """`claim_flows` one socket at a time (as `client_sockets` opens them)."""

    def __init__(self, flows: list[Flow], translated: dict[tuple[str, str], str] | None = None) -> None:
        self.by_address: dict[tuple[str, str], list[Flow]] = defaultdict(list)
        for flow in flows:
            self.by_address[(flow.proto, flow.client)].append(flow)
            self.by_address[(flow.proto, flow.server)].append(flow)
        self.translated = translated or {}
        self.leaks: list[tuple[Socket, Flow]] = []

    def __call__(self, sock: Socket) -> None:
        own = self.by_address.get((sock.proto, sock.address), [])
        seen_as = self.translated.get((sock.proto, sock.address))
        outside = self.by_address.get((sock.proto, seen_as), []) if seen_as else []
        candidates = outside or own
        if outside:
            sock.seen_as = seen_as
            self.leaks += [(sock, flow) for flow in own]
        if not candidates:
            return
        started = [f for f in candidates if f.first_ts is not None and f.first_ts <= sock.opened + 1.0]
        sock.flow = (started or candidates)[-1]


def place(send: SendMatch, known_until: float | None) -> None:
    """Where a send's round trip was lost, from what was matched on the wire.

    `known_until`: the time of the last packet read from a damaged capture; a send after it
    has no known place."""
    send.after_damage = known_until is not None and send.sent_ts > known_until
    if send.replied:
        send.where = OK
    elif send.after_damage:
        send.where = UNKNOWN
    elif not send.on_wire:
        send.where = NOT_ON_WIRE
    elif not send.echo_on_wire:
        send.where = NO_ECHO
    else:
        send.where = NOT_RECEIVED


def row_address(ip: str, port: int | None) -> str | None:
    if port is None or not ip:
        return None
    return normal_addr(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")


def wire_row(flow: Flow | None, sock: Socket | None, notes: list[str]) -> dict[str, Any]:
    """The wire columns of one conversation row (docs/wire.md)."""
    row: dict[str, Any] = {"wire_flag": None}
    flags = list(notes)
    if flow is None:
        if "no-capture" not in flags:
            flags.append("no-flow")
        row["wire_flag"] = "+".join(dict.fromkeys(flags)) or "ok"
        return row
    out_dir = sock.out_dir if sock is not None else C2S
    in_dir = S2C if out_dir == C2S else C2S
    row.update(
        wire_client=flow.client if out_dir == C2S else flow.server,
        wire_server=flow.server if out_dir == C2S else flow.client,
        wire_packets_out=flow.count(out_dir), wire_packets_in=flow.count(in_dir),
        wire_bytes_out=flow.payload_bytes(out_dir), wire_bytes_in=flow.payload_bytes(in_dir),
    )
    if flow.proto == "tcp":
        who_sent = {out_dir: "client", in_dir: "server"}

        def sides(marks: dict[str, float | None]) -> str:
            seen = [who_sent[d] for d in (out_dir, in_dir) if marks.get(d) is not None]
            return "both" if len(seen) == 2 else (seen[0] if seen else "")

        row.update(handshake_ms=flow.handshake_ms, retransmissions=sum(flow.retransmissions.values()),
                   fin=sides(flow.fin), rst=sides(flow.rst))
    if sock is not None:
        lost = {where: sock.lost[where] for where in LOST_PLACES if sock.lost.get(where)}
        row["lost_where"] = " ".join(f"{where}:{n}" for where, n in lost.items())
        if sock.sent_not_on_wire:
            flags.append("sent-not-on-wire")
        if sock.reply_not_on_wire:
            flags.append("reply-not-on-wire")
    else:
        flags.append("wire-only")
    row["wire_flag"] = "+".join(dict.fromkeys(flags)) or "ok"
    return row
