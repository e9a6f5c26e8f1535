"""Match the clients' messages with the packets that carried them, as one stream in time order.

The capture's packets (in time order) and the clients' records (in time order, events.jsonl)
are fed in turn, whichever is earlier (lab.wire.view merges them). A send is matched with its
packets as they come, whichever comes first: UDP by content (the first datagram with its
content between the client giving up on the attempt before and giving up on this one; its echo,
the first answer with that content after it), TCP by byte range (every segment carrying bytes of
its range, both ways); docs/wire.md says why these rules.

What is held is bounded, whatever the run's length (issue 8):

- sends not settled yet, at most WINDOW of them (all sockets together): past that the oldest
  is settled with what was seen of it so far (its echo or reply would have to come more than
  WINDOW sends later);
- packets not written yet (each is written once it is known which message it carries, or that
  it carries none), at most HOLD of them: past that the oldest is written as carrying none.

A run with fewer sends and packets than that is matched exactly as a whole would be, and its
messages are listed in the same order (by socket, then as sent); a longer one lists those
settled early in the order they were sent.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

from lab.expect.query import Record, who
from lab.wire.flows import WirePacket
from lab.wire.join import SendMatch, Socket, message_bytes, place, record_time

WINDOW = 10_000  # sends not yet settled, at most
HOLD = 50_000  # packets not yet written, at most


class _Entry:
    """A packet waiting to be written: its flow's index and whether it still waits for a match."""

    __slots__ = ("flow", "packet", "waiting", "home")

    def __init__(self, flow: int, packet: WirePacket, waiting: bool) -> None:
        self.flow, self.packet, self.waiting = flow, packet, waiting
        self.home: tuple[Any, Any] | None = None  # (the hold it waits in, its key there)


class _SocketState:
    """One followed socket's matching in progress."""

    def __init__(self, sock: Socket, index: int) -> None:
        self.sock, self.index = sock, index
        self.latest: dict[int, SendMatch] = {}  # seq -> its latest attempt (the one a reply is for)
        # UDP: open sends by content, and packets waiting for a send with their content.
        self.by_content: dict[bytes, list[SendMatch]] = {}
        self.partial: list[SendMatch] = []  # sends known by their first bytes only
        self.early: dict[str, dict[bytes, deque[_Entry]]] = {"out": {}, "back": {}}
        # TCP: open sends in stream order (from `lo`), their first bytes, the bytes known so far,
        # and segments reaching beyond them (their send not logged yet).
        self.stream: list[SendMatch] = []
        self.starts: list[int] = []
        self.lo = 0
        self.total = 0
        self.beyond: list[_Entry] = []


class StreamMatch:
    """Feed `packet` and `record` in time order, then `finish`. `sockets` are the client sockets
    (lab.wire.join.client_sockets, without their sends) in the order their records open them;
    `write_packet(flow index, packet)` gets every packet fed, in the order fed, once its `msg`
    is known; `settled(socket, send)` gets every send of a followed socket, its `where` placed."""

    def __init__(self, sockets: list[Socket], known_until: float | None,
                 write_packet: Callable[[int, WirePacket], None],
                 settled: Callable[[Socket, SendMatch], None]) -> None:
        self.known_until = known_until
        self.write_packet, self.settled = write_packet, settled
        self.opening = iter(sockets)
        self.current: dict[tuple[str, str, int], _SocketState | None] = {}
        # Each followed socket's state, made now and not when its record opens it: a client may
        # log `bound`/`connected` only after its first datagram crossed the wire (the port is
        # known once sent), and those packets are fed first. By id of the socket, and by its
        # flow (by id of the flow: the sockets claiming it, in the order they open).
        self.states: dict[int, _SocketState] = {}
        self.by_flow: dict[int, list[_SocketState]] = {}
        for sock in sockets:
            if sock.follow and sock.flow is not None:
                state = self.states[id(sock)] = _SocketState(sock, len(self.states))
                self.by_flow.setdefault(id(sock.flow), []).append(state)
        self.count = 0  # sends seen, for their order
        self.open: deque[tuple[_SocketState, SendMatch]] = deque()
        self.unwritten: deque[_Entry] = deque()
        self.most_open = self.most_unwritten = 0  # the most held at once (tests count them)

    # -- the clients' records ------------------------------------------------------------------

    def record(self, record: Record) -> None:
        """One client record (role `client`), in time order."""
        event, proto = record.get("event"), str(record.get("proto"))
        key = (who(record), proto, int(record.get("session") or 0))
        if event in ("connected", "bound") and record.get("local"):
            sock = next(self.opening, None)  # the same records open the same sockets in the same order
            self.current[key] = self.states.get(id(sock)) if sock is not None else None
            return
        state = self.current.get(key)
        if state is None or record.get("seq") is None:
            return
        seq = int(record["seq"])
        if event == "sent":
            self._sent(state, record, seq)
        elif event == "timeout":
            send = state.latest.get(seq)
            if send is not None and send.gave_up_ts is None:
                send.gave_up_ts = record_time(record)
        elif event == "reply":
            send = state.latest.get(seq)
            if send is not None and not send.replied and record.get("intact") is True:
                send.replied, send.reply_ts = True, record_time(record)

    def _sent(self, state: _SocketState, record: Record, seq: int) -> None:
        content, partial = message_bytes(record)
        size = int(record.get("bytes") or len(content))
        udp = state.sock.proto == "udp"
        send = SendMatch(seq, int(record.get("attempt") or 1), record_time(record), content, size, partial,
                         0 if udp else state.total)
        before = state.latest.get(seq)
        send.start = before.gave_up_ts if before is not None else None
        send.order = (state.index, self.count)
        self.count += 1
        state.latest[seq] = send
        if udp:
            (state.partial if partial else state.by_content.setdefault(content, [])).append(send)
            self._request_from_early(state, send)
        else:
            state.stream.append(send)
            state.starts.append(send.offset + 1)
            state.total += size
            self._stream_from_beyond(state, send)
        self.open.append((state, send))
        self.most_open = max(self.most_open, len(self.open))
        while len(self.open) > WINDOW:
            self._settle(*self.open.popleft())

    # -- the capture's packets -----------------------------------------------------------------

    def packet(self, flow, index: int, packet: WirePacket) -> None:
        """One packet of the server's side of the run, in time order, with its flow and that
        flow's index in wire.json."""
        entry = _Entry(index, packet, False)
        self.unwritten.append(entry)
        state = _owner(self.by_flow.get(id(flow)), packet.ts)
        if state is not None and (packet.len or state.sock.proto == "udp"):
            if state.sock.proto == "udp":
                self._datagram(state, entry)
            else:
                self._segment(state, entry)
        self.most_unwritten = max(self.most_unwritten, len(self.unwritten))
        self._write_ready()

    def _write_ready(self) -> None:
        unwritten = self.unwritten
        while unwritten and (not unwritten[0].waiting or len(unwritten) > HOLD):
            entry = unwritten.popleft()
            if entry.waiting:  # held too long: it carries none of the messages seen
                self._unhold(entry)
            entry.packet.payload = b""  # its content was only for the matching
            self.write_packet(entry.flow, entry.packet)

    def _hold(self, entry: _Entry, place: Any, key: Any) -> None:
        entry.waiting, entry.home = True, (place, key)

    def _unhold(self, entry: _Entry) -> None:
        entry.waiting = False
        place, key = entry.home
        entry.home = None
        if isinstance(place, dict):  # a UDP hold: content -> its packets
            held = place.get(key)
            if held is not None:
                if held and held[0] is entry:
                    held.popleft()
                elif entry in held:
                    held.remove(entry)
                if not held:
                    del place[key]
        elif entry in place:
            place.remove(entry)

    # -- UDP ----------------------------------------------------------------------------------

    def _datagram(self, state: _SocketState, entry: _Entry) -> None:
        packet = entry.packet
        out = packet.dir == state.sock.out_dir
        for send in self._with_content(state, packet.payload):
            if out and not send.on_wire and _in_attempt(send, packet.ts):
                self._take_request(state, send, packet)
                return
            if not out and not send.echo_on_wire and _after(send) <= packet.ts:
                _take_echo(send, packet)
                return
        hold = state.early["out" if out else "back"]
        hold.setdefault(packet.payload, deque()).append(entry)
        self._hold(entry, hold, packet.payload)

    def _with_content(self, state: _SocketState, payload: bytes) -> list[SendMatch]:
        found = state.by_content.get(payload, [])
        if state.partial:
            found = found + [s for s in state.partial if _same(payload, s)]
        return found

    def _request_from_early(self, state: _SocketState, send: SendMatch) -> None:
        """A send logged after its datagram (or its echo) crossed the wire."""
        for way in ("out", "back"):
            hold = state.early[way]
            keys = [send.content] if not send.partial else [k for k in hold if _same(k, send)]
            for key in keys:
                for entry in list(hold.get(key, ())):
                    ts = entry.packet.ts
                    if way == "out" and not send.on_wire and _in_attempt(send, ts):
                        self._unhold(entry)
                        self._take_request(state, send, entry.packet)
                    elif way == "back" and not send.echo_on_wire and _after(send) <= ts:
                        self._unhold(entry)
                        _take_echo(send, entry.packet)

    def _take_request(self, state: _SocketState, send: SendMatch, packet: WirePacket) -> None:
        packet.msg = send.seq
        send.request.append(packet)
        send.on_wire = True
        # Its echo may be waiting already (stamped at the same time as the request).
        hold = state.early["back"]
        for entry in list(hold.get(packet.payload, ())):
            if not send.echo_on_wire and packet.ts <= entry.packet.ts:
                self._unhold(entry)
                _take_echo(send, entry.packet)

    # -- TCP ----------------------------------------------------------------------------------

    def _segment(self, state: _SocketState, entry: _Entry) -> None:
        packet = entry.packet
        self._overlap(state, packet, state.lo)
        if packet.seq + packet.len - 1 > state.total:  # bytes of a send not logged yet
            state.beyond.append(entry)
            self._hold(entry, state.beyond, None)

    def _overlap(self, state: _SocketState, packet: WirePacket, lo: int) -> None:
        """Give a segment to every open send whose bytes it carries (from the `lo`-th on)."""
        first, end = packet.seq, packet.seq + packet.len
        i = max(lo, bisect_right(state.starts, first) - 1)
        out = packet.dir == state.sock.out_dir
        stream, starts = state.stream, state.starts
        while i < len(stream) and starts[i] < end:
            send = stream[i]
            if send.offset + send.size >= first:
                (send.request if out else send.echo).append(packet)
                if packet.msg is None:
                    packet.msg = send.seq
            i += 1

    def _stream_from_beyond(self, state: _SocketState, send: SendMatch) -> None:
        """A send logged after segments carrying its bytes crossed the wire."""
        if not state.beyond:
            return
        first, last = send.offset + 1, send.offset + send.size
        for entry in list(state.beyond):
            packet = entry.packet
            if packet.seq <= last and packet.seq + packet.len > first:
                (send.request if packet.dir == state.sock.out_dir else send.echo).append(packet)
                if packet.msg is None:
                    packet.msg = send.seq
            if packet.seq + packet.len - 1 <= state.total:
                self._unhold(entry)
        self._write_ready()

    # -- settling -----------------------------------------------------------------------------

    def _settle(self, state: _SocketState, send: SendMatch) -> None:
        if state.sock.proto == "udp":
            group = state.partial if send.partial else state.by_content.get(send.content)
            if group is not None and send in group:
                group.remove(send)
                if not group and not send.partial:
                    del state.by_content[send.content]
        else:
            send.on_wire = _covers(send.request, send.offset + 1, send.offset + send.size)
            send.echo_on_wire = _covers(send.echo, send.offset + 1, send.offset + send.size)
            state.lo += 1
            if state.lo >= 32 and state.lo * 2 >= len(state.stream):  # the settled ones go, a few at a time
                del state.stream[:state.lo]
                del state.starts[:state.lo]
                state.lo = 0
        if state.latest.get(send.seq) is send:
            del state.latest[send.seq]
        place(send, self.known_until)
        state.sock.tally(send)
        self.settled(state.sock, send)

    def finish(self) -> None:
        """Settle what is still open (by socket, then as sent) and write every packet left."""
        for state, send in sorted(self.open, key=lambda item: item[1].order):
            self._settle(state, send)
        self.open.clear()
        for entry in self.unwritten:
            if entry.waiting:
                self._unhold(entry)
        self._write_ready()


def _owner(states: list[_SocketState] | None, ts: float) -> _SocketState | None:
    """Which of the sockets claiming a flow a packet is for: the last one opened by its time
    (with the second of slack lab.wire.join.FlowClaims gives a flow's start), else the first."""
    if not states:
        return None
    found = states[0]
    for state in states[1:]:
        if state.sock.opened <= ts + 1.0:
            found = state
    return found


def _in_attempt(send: SendMatch, ts: float) -> bool:
    return (send.start is None or ts >= send.start) and (send.gave_up_ts is None or ts < send.gave_up_ts)


def _after(send: SendMatch) -> float:
    """An echo comes after its request (or after the attempt began, without one); it may come
    after the client gave up and resent: it still belongs to this attempt."""
    return send.request[0].ts if send.request else (send.start or 0.0)


def _take_echo(send: SendMatch, packet: WirePacket) -> None:
    packet.msg = send.seq
    send.echo.append(packet)
    send.echo_on_wire = True


def _same(payload: bytes, send: SendMatch) -> bool:
    if send.partial:
        return len(payload) == send.size and payload.startswith(send.content)
    return payload == send.content


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
