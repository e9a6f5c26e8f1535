"""The sequence (ladder) diagram of one client socket: two lifelines, client on the left, server on
the right, and an arrow for everything that crossed between them, in time order.

Geometry only: `ladder` turns a `Socket` into rows of arrows and notes with coordinates; the
template draws them as SVG. From the programs' records alone an arrow is a `connect`, a message
or its echo, a close; with a capture the handshake, FIN/RST and retransmitted segments come
from the wire instead. A lost message's arrow stops halfway, with a cross.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.html.rundata import TO_CLIENT, Journey, Socket

WIDTH = 720
CLIENT_X, SERVER_X = 190, 600
TOP, ROW = 46, 30
MAX_ROWS = 160  # a longer conversation is cut (with a note) so a page of ladders stays light
TEXT_CHARS = 28


@dataclass
class Arrow:
    """One row: an arrow between the lifelines (or a note on one of them when `note`)."""

    t: float  # when it left, seconds since the run's origin
    rightward: bool  # client -> server
    label: str
    kind: str  # css class: handshake, message, echo, close, reset, retransmission, lost, note
    lost: bool = False
    note: bool = False
    detail: str = ""  # tooltip
    y: float = 0.0
    order: float | None = None  # where it goes in the diagram, when not at `t`

    @property
    def sort_key(self) -> float:
        return self.t if self.order is None else self.order


@dataclass
class Ladder:
    title: str
    client_label: str
    server_label: str
    arrows: list[Arrow] = field(default_factory=list)
    cut: int = 0  # rows left out
    source: str = "records"  # records | wire
    width: int = WIDTH
    client_x: int = CLIENT_X
    server_x: int = SERVER_X
    row: int = ROW

    @property
    def height(self) -> float:
        return TOP + ROW * (len(self.arrows) + 1) + (ROW if self.cut else 0)

    @property
    def lifeline_end(self) -> float:
        return self.height - ROW / 2

    def end_x(self, arrow: Arrow) -> float:
        start, end = (CLIENT_X, SERVER_X) if arrow.rightward else (SERVER_X, CLIENT_X)
        return (start + end) / 2 if arrow.lost else end

    def start_x(self, arrow: Arrow) -> float:
        return CLIENT_X if arrow.rightward else SERVER_X


def ladder(sock: Socket, server_address: str | None = None) -> Ladder:
    """The diagram of one conversation row, from the wire when it has packets, else the records."""
    conv = sock.conversation
    client_label = f"{conv.client}  {sock.address or conv.server_saw or '?'}"
    diagram = Ladder(title=f"{conv.client} {conv.proto}", client_label=client_label,
                     server_label=f"server  {server_address or ''}".strip())
    packets = (sock.wire or {}).get("packets") or []
    arrows = _from_wire(sock, packets) if packets else _from_records(sock)
    diagram.source = "wire" if packets else "records"
    arrows.sort(key=lambda a: a.sort_key)
    # Packets past the first MAX_ROWS were counted, not kept (lab.html.wire).
    steps = len(arrows) + ((sock.wire or {}).get("packets_left_out") or 0 if packets else 0)
    if steps > MAX_ROWS:
        diagram.cut = steps - MAX_ROWS
        arrows = arrows[:MAX_ROWS]
    for index, arrow in enumerate(arrows):
        arrow.y = TOP + ROW * index
    diagram.arrows = arrows
    return diagram


def _from_records(sock: Socket) -> list[Arrow]:
    arrows: list[Arrow] = []
    marks = {(m.side, m.what): m for m in reversed(sock.marks)}  # the first of each
    connected, accepted = marks.get(("client", "connected")), marks.get(("server", "accepted"))
    # Each program stamps its record after the call returns, so the server may log a read before
    # the client logs the send: the diagram follows cause and effect, the labels keep the stamps.
    first = min([j.sent for j in sock.journeys] + [m.t for m in sock.marks], default=0.0) - 1e-6
    if connected or accepted:
        t = min(m.t for m in (connected, accepted) if m)
        arrows.append(Arrow(t, True, "connect() → accept()", "handshake", order=first,
                            detail="the three-way handshake (capture the run to see SYN, SYN-ACK, ACK)"))
    if ("client", "bound") in marks:
        arrows.append(Arrow(marks[("client", "bound")].t, True, "first sendto() picks the port", "note", note=True,
                            order=first))
    for journey in sock.journeys:
        arrows.extend(_message(journey))
    arrows.extend(_left_out(sock))
    for mark in sock.marks:
        if mark.what in ("timeout", "reconnect", "error", "duplicate"):
            arrows.append(Arrow(mark.t, mark.side == "client", f"{mark.what} {mark.detail}".strip(), "note", note=True))
    client_closed = next((m for m in sock.marks if m.side == "client" and m.what == "closed"), None)
    server_closed = next((m for m in sock.marks if m.side == "server" and m.what == "closed"), None)
    if client_closed and sock.conversation.proto == "tcp":
        first = server_closed if server_closed and server_closed.t < client_closed.t else client_closed
        by_client = first is client_closed
        reason = (client_closed if by_client else server_closed).detail
        arrows.append(Arrow(first.t, by_client, f"close() ({reason})" if reason else "close()", "close",
                            detail="FIN or RST; capture the run to see which"))
    elif server_closed and sock.conversation.proto == "tcp":
        arrows.append(Arrow(server_closed.t, False, f"server closed ({server_closed.detail})", "close"))
    return arrows


def _left_out(sock: Socket) -> list[Arrow]:
    """A note wherever messages were counted but not kept to draw (lab.html.journeys): between
    the kept ones, and for the lost, garbled or resent ones past the cap."""
    where = f"every record is in events.jsonl: lab logs RUN --client {sock.conversation.client}"
    notes, before = [], -1
    for journey in sock.journeys:
        gap = journey.index - before - 1
        if gap > 0:
            notes.append(Arrow(journey.sent, True, f"… {gap:,} message{'s' if gap != 1 else ''} not drawn", "note",
                               note=True, detail=where, order=journey.sent - 1e-7))
        before = journey.index
    after = sock.sent_count - before - 1
    if after > 0 and sock.journeys and sock.messages is not None:
        last = sock.journeys[-1]
        notes.append(Arrow(last.sent, True, f"… {after:,} later message{'s' if after != 1 else ''} not drawn", "note",
                           note=True, detail=where, order=last.sent + 1e-6))
    if sock.notable_left_out:
        end = sock.journeys[-1].sent + 2e-6 if sock.journeys else 0.0
        notes.append(Arrow(end, True, f"{sock.notable_left_out:,} more lost, garbled or resent messages not drawn",
                           "note", note=True, detail=where, order=end))
    return notes


def _message(journey: Journey) -> list[Arrow]:
    text = journey.text if len(journey.text) <= TEXT_CHARS else journey.text[:TEXT_CHARS - 1] + "…"
    name = f"#{journey.seq}" + (" again" if journey.retry else "")
    where = journey.lost_where
    out = [Arrow(journey.sent, True, f"{name} {journey.bytes} B “{text}”", "message",
                 lost=journey.received is None, detail=journey.text)]
    if journey.received is None:
        out[0].kind = "lost"
        out[0].detail = f"lost {where}: {journey.text}"
        if journey.resent:
            out[0].label += " · sent again after reconnecting"
        return out
    after = journey.sent + 1e-9  # right below its message
    if journey.echoed is None:
        out.append(Arrow(journey.received, False, f"{name} never echoed", "note", note=True, order=after))
        return out
    if journey.reply is None:
        label = f"echo {name} lost" + ("" if where == TO_CLIENT else f" ({where})")
        out.append(Arrow(journey.echoed, False, label, "lost", lost=True, detail=f"lost {where}", order=after))
    else:
        rtt = f" · rtt {journey.rtt_ms:.2f} ms" if journey.rtt_ms is not None else ""
        broken = "" if journey.intact is not False else " (garbled)"
        out.append(Arrow(journey.reply, False, f"echo {name}{rtt}{broken}", "echo", order=after))
    return out


FLAG_NAMES = {"S": "SYN", "SA": "SYN-ACK", "A": "ACK", "FA": "FIN", "F": "FIN", "R": "RST", "RA": "RST", "": "datagram"}


def _from_wire(sock: Socket, packets: list[dict]) -> list[Arrow]:
    """Arrows from the captured packets of this socket's flow: every segment or datagram, named by
    its TCP flags or by the message it carries; retransmissions and losses marked."""
    texts = {j.seq: j.text for j in sock.journeys}
    arrows = []
    for packet in packets:
        rightward = packet.get("dir") == "c2s"
        flags = str(packet.get("flags") or "")
        size = int(packet.get("len") or 0)
        msg = packet.get("msg")
        if size:
            text = texts.get(msg, "")
            text = text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"
            name = f"#{msg} " if msg is not None else ""
            label = (f"{name}{size} B “{text}”" if rightward and text else
                     f"echo {name}{size} B" if not rightward else f"{name}{size} B")
            if "F" in flags:
                label += " + FIN"
        else:
            label = FLAG_NAMES.get(flags) or FLAG_NAMES.get(flags.replace("P", "")) or flags or "datagram"
        kind = ("retransmission" if packet.get("retrans") else "reset" if "R" in flags else
                "handshake" if "S" in flags else "message" if size and rightward else "echo" if size else
                "close" if "F" in flags else "ack")
        if packet.get("retrans"):
            label += " (retransmitted)"
        arrows.append(Arrow(float(packet.get("t") or 0.0), rightward, label, kind,
                            detail=f"{flags or 'udp'} seq {packet.get('seq')} ack {packet.get('ack')} len {size}"))
    for journey in sock.journeys:
        if journey.lost_where:
            # Noted on the side where it died: the client's for a request that never left or an echo
            # that arrived on the wire but not in the program, else the server's.
            at_client = journey.wire_where in ("request-not-on-wire", "echo-not-received")
            place = f": {journey.lost_place}" if journey.lost_place else ""
            arrows.append(Arrow(journey.sent + 1e-6, at_client, f"#{journey.seq} lost {journey.lost_where}{place}",
                                "lost", note=True))
    return arrows
