"""Each message's journey (client -> server -> client) followed in one pass over a run's
time-ordered records, holding a bounded number of messages however long the run.

A message is followed while it is open: sent, its echo or its loss not settled yet. Once settled
it is counted (its socket's counts and loss by leg, the round-trip chart, the round trips of its
protocol) and kept for its socket's ladder only if it is one of the socket's first `HEAD`, its
last `TAIL`, or one of its first `NOTABLE` lost, garbled or resent ones. A page cannot draw a
million messages anyway; the page says how many it left out, and events.jsonl has them all.

What is held per socket is bounded by those counts and by `OPEN`: a message still without its
echo after `OPEN` later ones is settled as it stands (a reply that late is not waited for).

The server's records are matched as the whole-run reading matched them: UDP by content, TCP by
byte offset. A program stamps its record after the call returns, so the server may log a read
(and its echo) before the client logs the send: such reads wait, at most `EARLY` per socket,
for the send they belong to.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lab.expect.query import Record, client_address, normal_addr, who
from lab.html.rundata import Journey, Mark, Socket
from lab.html.samples import Percentiles, RttSamples

HEAD, TAIL, NOTABLE = 40, 10, 25  # messages kept per socket for its ladder (about 150 rows at most)
OPEN = 256  # messages per socket followed at once
EARLY = 64  # server reads per socket waiting for the client's record of the send
MARKS_HEAD, MARKS_TAIL = 40, 10  # connects, timeouts, closes... kept per socket and side
NOTE_MARKS = ("timeout", "closed", "reconnect", "error", "duplicate")  # the client's, besides connected/bound

Places = dict[tuple[str, str, int, int], str]  # (client, proto, session, seq) -> the wire's `where`


@dataclass
class _Marks:
    """One side's marks of a socket: the first `MARKS_HEAD`, the first of each kind, the last
    `MARKS_TAIL`; how many of each kind there were."""

    head: list[tuple[int, Mark]] = field(default_factory=list)
    firsts: dict[str, tuple[int, Mark]] = field(default_factory=dict)
    tail: deque[tuple[int, Mark]] = field(default_factory=lambda: deque(maxlen=MARKS_TAIL))
    kinds: dict[str, int] = field(default_factory=dict)
    seen: int = 0

    def add(self, mark: Mark) -> None:
        item = (self.seen, mark)
        self.seen += 1
        self.kinds[mark.what] = self.kinds.get(mark.what, 0) + 1
        if len(self.head) < MARKS_HEAD:
            self.head.append(item)
        elif mark.what not in self.firsts and all(m.what != mark.what for _, m in self.head):
            self.firsts[mark.what] = item
        else:
            self.tail.append(item)

    def kept(self) -> list[Mark]:
        items = dict(self.head)
        items.update(self.firsts.values())
        items.update(self.tail)
        return [items[i] for i in sorted(items)]


class _Track:
    """One socket during the pass: its open messages, where the server's reads and echoes have
    got to, and what is kept for the ladder."""

    def __init__(self, sock: Socket, row: int) -> None:
        self.sock, self.row = sock, row
        self.count = 0  # messages sent (each resend counts)
        self.open: deque[Journey] = deque()
        self.latest: dict[int, Journey] = {}  # seq -> its latest open message
        self.first_sent: float | None = None
        self.seqs: tuple[int, int] | None = None  # the lowest and highest seq sent
        # TCP: bytes the client sent, the server read and echoed; messages not read / echoed yet
        # (by where they start / end in the stream); reads and echoes beyond the messages known.
        self.sent_bytes = self.read = self.echoed = 0
        self.unread: deque[tuple[int, Journey]] = deque(maxlen=OPEN)
        self.unechoed: deque[tuple[int, Journey]] = deque(maxlen=OPEN)
        self.early_reads: deque[tuple[int, float]] = deque(maxlen=EARLY)
        self.early_echoes: deque[tuple[int, float]] = deque(maxlen=EARLY)
        # UDP: messages not read yet by content (and in send order, to let go of the oldest),
        # read and not echoed yet, reads of no known message yet [text, read at, echoed at].
        self.by_text: dict[str, deque[Journey]] = {}
        self.text_order: deque[Journey] = deque()
        self.udp_unechoed: deque[Journey] = deque(maxlen=OPEN)
        self.early_texts: deque[list[Any]] = deque(maxlen=EARLY)
        # Kept for the ladder.
        self.head: list[Journey] = []
        self.notable: list[Journey] = []
        self.tail: list[tuple[int, Journey]] = []  # a heap: the TAIL latest sent of the rest
        self.notables = 0
        self.marks = {"client": _Marks(), "server": _Marks()}

    def held(self) -> int:
        """Messages and marks this track holds, for the tests of its bound."""
        return (len(self.open) + len(self.unread) + len(self.unechoed) + len(self.text_order)
                + len(self.udp_unechoed) + len(self.early_reads) + len(self.early_echoes) + len(self.early_texts)
                + len(self.head) + len(self.notable) + len(self.tail)
                + sum(len(m.head) + len(m.firsts) + len(m.tail) for m in self.marks.values()))

    # --- the client's side

    def send(self, journey: Journey) -> None:
        journey.index = self.count
        self.count += 1
        low, high = self.seqs or (journey.seq, journey.seq)
        # A socket sends its messages in order: a seq it already passed is a resend.
        journey.retry = self.seqs is not None and journey.seq <= high
        self.seqs = (min(low, journey.seq), max(high, journey.seq))
        if self.first_sent is None:
            self.first_sent = journey.sent
        self.open.append(journey)
        self.latest[journey.seq] = journey
        if journey.proto == "tcp":
            self._tcp_send(journey)
        else:
            self._udp_send(journey)

    def reply(self, seq: int, t: float, rtt_ms: Any, intact: Any) -> Journey | None:
        """The message this reply answers, now settled; None when none is open."""
        journey = self.latest.pop(seq, None)
        if journey is None:
            return None
        journey.reply, journey.rtt_ms, journey.intact = t, rtt_ms, intact
        return journey

    def overdue(self) -> list[Journey]:
        """Messages to settle as they stand: beyond `OPEN`, the oldest still without a reply."""
        out = []
        while self.open and (self.open[0].reply is not None or len(self.open) > OPEN):
            journey = self.open.popleft()
            if journey.reply is None:
                self._let_go(journey)
                out.append(journey)
        return out

    def remaining(self) -> list[Journey]:
        """At the end of the run: every message still without a reply."""
        out = [j for j in self.open if j.reply is None]
        self.open.clear()
        self.latest.clear()
        return out

    def _let_go(self, journey: Journey) -> None:
        if self.latest.get(journey.seq) is journey:
            del self.latest[journey.seq]

    # --- the server's side: TCP by byte offset

    def _tcp_send(self, journey: Journey) -> None:
        start = self.sent_bytes
        end = self.sent_bytes = start + journey.bytes
        if self.read > start:  # the server logged the read first: the first read past its start
            while self.early_reads and self.early_reads[0][0] <= start:
                self.early_reads.popleft()
            if self.early_reads:
                journey.received = self.early_reads[0][1]
        else:
            self.unread.append((start, journey))
        if self.echoed >= end:  # the first echo that reached its end
            while self.early_echoes and self.early_echoes[0][0] < end:
                self.early_echoes.popleft()
            if self.early_echoes:
                journey.echoed = self.early_echoes[0][1]
        else:
            self.unechoed.append((end, journey))

    def tcp(self, event: str, size: int, t: float) -> None:
        if event == "received":
            self.read += size
            # Every message whose first byte came in with this read was received now.
            while self.unread and self.unread[0][0] < self.read:
                self.unread.popleft()[1].received = t
            if self.read > self.sent_bytes:
                self.early_reads.append((self.read, t))
        else:
            self.echoed += size
            # Every message whose last byte went out with this echo was echoed now.
            while self.unechoed and self.unechoed[0][0] <= self.echoed:
                self.unechoed.popleft()[1].echoed = t
            if self.echoed > self.sent_bytes:
                self.early_echoes.append((self.echoed, t))

    # --- UDP: a datagram is one message, matched by its text

    def _udp_send(self, journey: Journey) -> None:
        for early in self.early_texts:
            if early[0] == journey.text:
                self.early_texts.remove(early)
                journey.received = early[1]
                self._udp_read(journey, early[2])
                return
        self.by_text.setdefault(journey.text, deque()).append(journey)
        self.text_order.append(journey)
        if len(self.text_order) > OPEN:  # never read after OPEN later sends: no longer waited for
            oldest = self.text_order.popleft()
            waiting = self.by_text.get(oldest.text)
            if waiting is not None:
                for i, candidate in enumerate(waiting):
                    if candidate is oldest:
                        del waiting[i]
                        break
                if not waiting:
                    del self.by_text[oldest.text]

    def udp_received(self, text: str, t: float) -> None:
        waiting = self.by_text.get(text)
        if not waiting:
            self.early_texts.append([text, t, None])
            return
        journey = waiting.popleft()
        if not waiting:
            del self.by_text[text]
        journey.received = t
        self._udp_read(journey, None)

    def _udp_read(self, journey: Journey, echoed: float | None) -> None:
        if echoed is not None:
            journey.echoed = echoed
        else:
            self.udp_unechoed.append(journey)

    def udp_echoed(self, t: float) -> None:
        if self.udp_unechoed:
            self.udp_unechoed.popleft().echoed = t
            return
        early = next((e for e in self.early_texts if e[2] is None), None)
        if early is not None:  # the echo of a read whose send is not logged yet
            early[2] = t

    # --- what is kept

    def keep(self, journey: Journey, notable: bool) -> None:
        self.notables += notable
        if journey.index < HEAD:
            self.head.append(journey)
        elif notable and len(self.notable) < NOTABLE:
            self.notable.append(journey)
        else:
            # By when it was sent, not settled: a lost message settles last (nothing answers it).
            heapq.heappush(self.tail, (journey.index, journey))
            if len(self.tail) > TAIL:
                heapq.heappop(self.tail)

    def kept(self) -> list[Journey]:
        return sorted([*self.head, *self.notable, *(j for _, j in self.tail)], key=lambda j: j.index)


class Follower:
    """The pass: `add` each record in time order, then `finish`. `sockets` are the conversation
    rows (lab.logs.join_views) as Sockets, in table order; `clock` turns a record's `ts` into
    seconds since the run's origin; `places` is the wire's `where` of each lost round trip."""

    def __init__(self, sockets: list[Socket], clock, places: Places | None = None) -> None:
        self.clock = clock
        self.places = places or {}
        self.tracks: list[_Track] = []
        self.by_address: dict[tuple[str, str], _Track] = {}
        for row, sock in enumerate(sockets):
            track = _Track(sock, row)
            self.tracks.append(track)
            conv = sock.conversation
            if sock.address:
                self.by_address[(conv.proto, normal_addr(sock.address))] = track
            if conv.server_saw:
                self.by_address.setdefault((conv.proto, normal_addr(conv.server_saw)), track)
        self.current: dict[tuple[str, str, int], _Track | None] = {}  # (client, proto, session) -> its socket now
        self.samples = RttSamples()
        self.rtts: dict[str, Percentiles] = {}  # per protocol
        self.fault_records: list[Record] = []  # the lab's, a few per run
        self.applied: list[Record] = []  # the shapers' and routers' `applied` records, one each

    def add(self, record: Record) -> None:
        role = record.get("role")
        if role == "client":
            self._client(record)
        elif role == "server":
            if record.get("peer"):
                self._server(record)
        elif role == "lab":
            if record.get("event") == "fault":
                self.fault_records.append(record)
        elif role in ("shaper", "netns") and record.get("event") == "applied":
            self.applied.append(record)

    def _client(self, r: Record) -> None:
        event, proto = r.get("event"), str(r.get("proto"))
        owner = (who(r), proto, int(r.get("session") or 0))
        if event in ("connected", "bound") and r.get("local"):
            track = self.current[owner] = self.by_address.get((proto, client_address(r)))
            if track is not None:
                track.marks["client"].add(Mark(self.clock(r["ts"]), "client", event, f"attempt {r['attempt']}"
                                               if r.get("attempt", 1) != 1 else ""))
            return
        track = self.current.get(owner)
        if track is None:
            return
        t = self.clock(r["ts"])
        if event == "sent" and r.get("seq") is not None:
            journey = Journey(seq=int(r["seq"]), proto=proto, bytes=int(r.get("bytes") or 0), text=_text(r), sent=t)
            c = track.sock.conversation
            journey.wire_where = self.places.get((c.client, c.proto, int(c.session or 0), journey.seq))
            track.send(journey)
            for old in track.overdue():
                self._settle(track, old)
        elif event == "reply" and r.get("seq") is not None:
            journey = track.reply(int(r["seq"]), t, r.get("rtt_ms"), r.get("intact"))
            if journey is not None:
                self._settle(track, journey)
        elif event in NOTE_MARKS:
            detail = str(r.get("reason") or r.get("detail") or "")
            if event in ("timeout", "duplicate") and r.get("seq") is not None:
                detail = f"seq {r['seq']}" + (f" {detail}" if detail else "")
            track.marks["client"].add(Mark(t, "client", event, detail))

    def _server(self, r: Record) -> None:
        proto = str(r.get("proto"))
        track = self.by_address.get((proto, normal_addr(r["peer"])))
        if track is None:
            return
        event, t = r.get("event"), self.clock(r["ts"])
        if event in ("accepted", "closed"):
            track.marks["server"].add(Mark(t, "server", event, str(r.get("reason") or "")))
        elif proto == "udp" and event == "received":
            track.udp_received(_text(r), t)
        elif proto == "udp" and event == "echoed":
            track.udp_echoed(t)
        elif proto == "tcp" and event in ("received", "echoed"):
            track.tcp(event, int(r.get("bytes") or 0), t)

    def _settle(self, track: _Track, journey: Journey) -> None:
        """Count a message whose fate is known, and keep it for the ladder if it is one to draw."""
        sock = track.sock
        conv = sock.conversation
        where = journey.lost_where
        if where:
            sock.lost_by_where[where] = sock.lost_by_where.get(where, 0) + 1
            place = journey.lost_place
            if place:
                sock.lost_by_place[place] = sock.lost_by_place.get(place, 0) + 1
        if journey.rtt_ms is not None:
            self.rtts.setdefault(conv.proto, Percentiles()).add(float(journey.rtt_ms))
        self.samples.add((track.row, journey.index), journey.sent, journey.rtt_ms, conv.proto,
                         f"{conv.client} {conv.proto} #{journey.seq}", where)
        track.keep(journey, bool(where) or journey.intact is False or journey.retry)

    def finish(self) -> dict[str, dict[str, float | None]]:
        """Settle what is still open; fill each socket's kept messages, marks and counts. Returns
        the round trips of each protocol (p50, p95, max) and lets go of them."""
        for track in self.tracks:
            for journey in track.remaining():
                self._settle(track, journey)
            sock = track.sock
            sock.journeys = track.kept()
            sock.messages = track.count
            sock.notable_left_out = track.notables - sum(
                1 for j in sock.journeys if j.lost_where or j.intact is False or j.retry)
            sock.marks = track.marks["client"].kept() + track.marks["server"].kept()
            sock.marks_left_out = sum(m.seen for m in track.marks.values()) - len(sock.marks)
            sock.mark_counts = {}
            for side in track.marks.values():
                for what, n in side.kinds.items():
                    sock.mark_counts[what] = sock.mark_counts.get(what, 0) + n
        self._mark_resent()
        stats = {}
        for proto, values in self.rtts.items():
            stats[proto] = {"p50": round(values.percentile(50), 3), "p95": round(values.percentile(95), 3),
                            "max": round(values.high, 3)}
        self.rtts = {}
        return stats

    def _mark_resent(self) -> None:
        """A TCP message lost with its connection and sent again on a later connection of the
        same client session (one whose first message came later, holding that seq)."""
        by_owner: dict[tuple[str, str, int], list[_Track]] = {}
        for track in self.tracks:
            c = track.sock.conversation
            by_owner.setdefault((c.client, c.proto, int(c.session or 0)), []).append(track)
        for tracks in by_owner.values():
            for track in tracks:
                mine = (track.first_sent or 0.0, -track.row)
                later = [t.seqs for t in tracks if t is not track and t.seqs
                         and (t.first_sent or 0.0, -t.row) > mine]
                for journey in track.sock.journeys:
                    if journey.lost_where and any(low <= journey.seq <= high for low, high in later):
                        journey.resent = True

    def held(self) -> int:
        """Messages, marks, chart points and round trips held now, for the tests of the bound."""
        return (sum(t.held() for t in self.tracks) + self.samples.held()
                + sum(r.held() for r in self.rtts.values()))


def _text(record: Record) -> str:
    text = record.get("text")
    return "" if text is None else str(text)
