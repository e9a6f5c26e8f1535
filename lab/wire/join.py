"""Join the wire's flows with the two socket views: whose flow is it, and where did each message go.

Each client socket (its `connected`/`bound` address) claims the flow with that address on the
wire. Each `sent` record is then matched with the packets that carried it: UDP by content (a
client's messages are unique within a socket), TCP by byte range (the n-th message is the bytes
after the first n-1, and the echo server sends the same bytes back). A send with no intact
reply gets a place where its round trip was lost. Disagreements are flagged, never dropped.

Only a socket with a flow on the wire has its sends kept (to be matched with the flow's packets,
which are held anyway): the sends of a socket the capture never saw, or of every socket when
there is no capture, are derived again from the records whenever they are listed
(`unfollowed_sends`), so what is held does not grow with the messages of such a run.
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
    sends: list[SendMatch] = field(default_factory=list)
    seen_as: str | None = None  # the address a masquerading router gave it, when its flow carries that
    follow: bool = True  # its sends are kept (it has a flow to match them with)

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
    """Every client socket with its sends and replies, from the client records in time order.

    `claim`, when given, is called with each socket as it opens (to give it its flow): the sends
    of a socket still without a flow are then not kept (`follow` is False)."""
    sockets: list[Socket] = []
    current: dict[tuple[str, str, int], Socket] = {}
    latest: dict[tuple[str, str, int, int], SendMatch] = {}
    for record in select(events, "client"):
        event, proto = record.get("event"), str(record.get("proto"))
        key = (who(record), proto, int(record.get("session") or 0))
        if event in ("connected", "bound") and record.get("local"):
            sock = current[key] = Socket(*key, address=client_address(record), opened=record_time(record))
            if claim is not None:
                claim(sock)
                sock.follow = sock.flow is not None
            sockets.append(sock)
            continue
        sock = current.get(key)
        if sock is None or not sock.follow or record.get("seq") is None:
            continue
        if event == "sent":
            content, partial = message_bytes(record)
            size = int(record.get("bytes") or len(content))
            offset = sum(s.size for s in sock.sends) if proto == "tcp" else 0
            send = SendMatch(int(record["seq"]), int(record.get("attempt") or 1), record_time(record), content,
                             size, partial, offset)
            sock.sends.append(send)
            latest[(*key, send.seq)] = send
        elif event == "timeout":
            send = latest.get((*key, int(record["seq"])))
            if send is not None and send.gave_up_ts is None:
                send.gave_up_ts = record_time(record)
        elif event == "reply":
            send = latest.get((*key, int(record["seq"])))
            if send is not None and not send.replied and record.get("intact") is True:
                send.replied, send.reply_ts = True, record_time(record)
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
            _place(send, known_until)
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
        started = [f for f in candidates if f.packets and f.packets[0].ts <= sock.opened + 1.0]
        sock.flow = (started or candidates)[-1]


def match_messages(sock: Socket, known_until: float | None = None) -> None:
    """Find each send's request and echo packets, then say where an unanswered one was lost.

    `known_until`: the time of the last packet read from a damaged capture; a send after it
    has no known place."""
    if sock.flow is not None:
        if sock.proto == "udp":
            _match_datagrams(sock)
        else:
            _match_stream(sock)
    for send in sock.sends:
        _place(send, known_until)


def _place(send: SendMatch, known_until: float | None) -> None:
    """Where a send's round trip was lost, from what was matched on the wire."""
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


def _same(payload: bytes, send: SendMatch) -> bool:
    if send.partial:
        return len(payload) == send.size and payload.startswith(send.content)
    return payload == send.content


def _match_datagrams(sock: Socket) -> None:
    """Each attempt's request is the first datagram with its content between the client giving up
    on the attempt before and giving up on this one; its echo, the first answer with that
    content after it."""
    assert sock.flow is not None
    out = [p for p in sock.flow.packets if p.dir == sock.out_dir]
    back = [p for p in sock.flow.packets if p.dir == sock.in_dir]
    attempts: dict[int, list[SendMatch]] = defaultdict(list)
    for send in sock.sends:
        attempts[send.seq].append(send)
    used: set[int] = set()
    for sends in attempts.values():
        for i, send in enumerate(sends):
            # The record comes after sendto() (on a busy host, long after), so the send time is no
            # bound; the client's `timeout` for the attempt before is: it resends only after that.
            start = sends[i - 1].gave_up_ts if i else None
            end = send.gave_up_ts
            request = next((p for p in out if (start is None or p.ts >= start) and (end is None or p.ts < end)
                            and id(p) not in used and _same(p.payload, send)), None)
            if request is not None:
                used.add(id(request))
                request.msg = send.seq
                send.request.append(request)
                send.on_wire = True
            # An echo may come after the client gave up and resent: it still belongs to this attempt.
            after = request.ts if request is not None else (start or 0.0)
            echo = next((p for p in back if after <= p.ts and id(p) not in used and _same(p.payload, send)), None)
            if echo is not None:
                used.add(id(echo))
                echo.msg = send.seq
                send.echo.append(echo)
                send.echo_on_wire = True


def _match_stream(sock: Socket) -> None:
    """TCP: a message's request is every segment carrying bytes of its range; its echo, every
    segment back carrying the same range. Byte 1 of a stream is the first after the SYN."""
    assert sock.flow is not None
    for send in sock.sends:
        first, last = send.offset + 1, send.offset + send.size  # relative sequence numbers
        for packet in sock.flow.packets:
            if not packet.len or packet.seq > last or packet.seq + packet.len <= first:
                continue
            (send.request if packet.dir == sock.out_dir else send.echo).append(packet)
            if packet.msg is None:
                packet.msg = send.seq
        send.on_wire = _covers(send.request, first, last)
        send.echo_on_wire = _covers(send.echo, first, last)


def _covers(packets: list[WirePacket], first: int, last: int) -> bool:
    """Do these segments together carry every byte from `first` to `last`?"""
    reach = first
    for start, end in sorted((p.seq, p.seq + p.len) for p in packets):
        if start > reach:
            return False
        reach = max(reach, end)
        if reach > last:
            return True
    return reach > last


def lost_where(sends: list[SendMatch]) -> dict[str, int]:
    """How many of a socket's round trips were lost, by place."""
    counts = {place: 0 for place in LOST_PLACES}
    for send in sends:
        if send.where in counts:
            counts[send.where] += 1
    return {place: n for place, n in counts.items() if n}


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
        lost = lost_where(sock.sends)
        row["lost_where"] = " ".join(f"{place}:{n}" for place, n in lost.items())
        if any(s.where == NOT_ON_WIRE for s in sock.sends):
            flags.append("sent-not-on-wire")
        if any(s.replied and not s.echo_on_wire and not s.after_damage for s in sock.sends):
            flags.append("reply-not-on-wire")
    else:
        flags.append("wire-only")
    row["wire_flag"] = "+".join(dict.fromkeys(flags)) or "ok"
    return row
