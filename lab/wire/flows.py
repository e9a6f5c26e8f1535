"""Group a capture's packets into flows per 5-tuple and measure each: the wire's own view.

A flow holds both directions. Its client is the side that opened it (sent the SYN, or the
first datagram). For TCP each flow gets its handshake time, retransmissions and who sent FIN
or RST; sequence numbers are made relative to each side's first, as Wireshark shows them.
A new SYN on a 5-tuple whose earlier connection ended starts a new flow (a reused port).

A flow keeps its numbers as running totals (packets, bytes, first and last time); its packets
themselves only when asked (`FlowTable(keep=True)`, as `extract_flows` does for a small capture):
the wire view streams them instead (lab.wire.view), so a flow's size does not grow with its packets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dpkt.tcp import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN, TH_URG

from lab.wire.pcap import TCP, Packet, no_collection

C2S, S2C = "c2s", "s2c"
_FLAG_LETTERS = ((TH_SYN, "S"), (TH_FIN, "F"), (TH_RST, "R"), (TH_PUSH, "P"), (TH_ACK, "A"), (TH_URG, "U"))
_SEQ_SPACE = 1 << 32


_LETTERS = ["".join(letter for bit, letter in _FLAG_LETTERS if flags & bit) for flags in range(256)]
# Sequence space a segment takes beyond its bytes: one for SYN and one for FIN.
_SPAN = [(1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0) for flags in range(256)]
_OPENS_OR_CLOSES = TH_SYN | TH_FIN | TH_RST
_SYN_OR_ACK = TH_SYN | TH_ACK


def flag_letters(flags: int) -> str:
    return _LETTERS[flags & 0xFF]


@dataclass(slots=True)
class WirePacket:
    """One packet of a flow, as the ladder shows it."""

    ts: float
    dir: str
    flags: str
    seq: int  # relative to this side's initial sequence number (0 for UDP)
    ack: int
    len: int
    retrans: bool
    payload: bytes = field(repr=False, default=b"")
    msg: int | None = None  # the client's message seq whose bytes it carries (set by the join)


@dataclass
class Flow:
    proto: str
    client: str
    server: str
    packets: list[WirePacket] = field(default_factory=list)  # only when its table keeps them
    index: int = -1  # its place in its table's flows (the order flows began)
    first_ts: float | None = None
    last_ts: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})
    sizes: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})  # payload bytes
    keep: bool = field(default=True, repr=False)
    syn_ts: float | None = None
    synack_ts: float | None = None
    ack_ts: float | None = None
    retransmissions: dict[str, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})
    fin: dict[str, float | None] = field(default_factory=lambda: {C2S: None, S2C: None})
    rst: dict[str, float | None] = field(default_factory=lambda: {C2S: None, S2C: None})
    # TCP bookkeeping per side: [initial sequence number (None until seen), end of what it
    # has sent (-1 before anything)].
    _sides: dict[str, list] = field(default_factory=lambda: {C2S: [None, -1], S2C: [None, -1]}, repr=False)

    @property
    def id(self) -> str:
        return f"{self.proto} {self.client} {self.server}"

    @property
    def ended(self) -> bool:
        return any(self.fin.values()) or any(self.rst.values())

    def count(self, direction: str) -> int:
        return self.counts[direction]

    def payload_bytes(self, direction: str) -> int:
        return self.sizes[direction]

    @property
    def handshake_ms(self) -> float | None:
        if self.syn_ts is None or self.ack_ts is None:
            return None
        return round((self.ack_ts - self.syn_ts) * 1000.0, 3)

    def add(self, packet: Packet) -> WirePacket:
        return self._add(packet, *self._route(packet.src))

    def _route(self, src: str) -> tuple[str, list, list]:
        """The direction of a packet from `src`, and its sender's and receiver's TCP state."""
        direction, other = (C2S, S2C) if src == self.client else (S2C, C2S)
        return direction, self._sides[direction], self._sides[other]

    def _add(self, packet: Packet, direction: str, mine: list, theirs: list) -> WirePacket:
        ts, payload, length = packet.ts, packet.payload, len(packet.payload)
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        self.counts[direction] += 1
        self.sizes[direction] += length
        if packet.proto != TCP:
            wire = WirePacket(ts, direction, "", 0, 0, length, False, payload)
            if self.keep:
                self.packets.append(wire)
            return wire
        flags, seq = packet.flags, packet.seq
        isn = mine[0]
        if isn is None:
            # Without its SYN (capture started late), the first byte seen counts as byte 1.
            isn = mine[0] = seq if flags & TH_SYN else (seq - 1) % _SEQ_SPACE
        seq = (seq - isn) % _SEQ_SPACE
        ack = (packet.ack - theirs[0]) % _SEQ_SPACE if (flags & TH_ACK and theirs[0] is not None) else 0
        end = seq + length + _SPAN[flags & 0xFF]  # the sequence space this segment occupies
        retrans = False
        if end > seq:
            if end <= mine[1]:
                retrans = True
                self.retransmissions[direction] += 1
            else:
                mine[1] = end
        if not flags & _OPENS_OR_CLOSES and (self.ack_ts is not None or self.synack_ts is None):
            # The common case: a segment after the handshake that opens or closes nothing.
            wire = WirePacket(ts, direction, _LETTERS[flags & 0xFF], seq, ack, length, retrans, payload)
            if self.keep:
                self.packets.append(wire)
            return wire
        if flags & TH_SYN and not flags & TH_ACK and self.syn_ts is None:
            self.syn_ts = ts
        elif flags & TH_SYN and flags & TH_ACK and self.synack_ts is None:
            self.synack_ts = ts
        elif (direction == C2S and flags & TH_ACK and self.synack_ts is not None and self.ack_ts is None
              and not flags & TH_SYN):
            self.ack_ts = ts
        if flags & TH_FIN and self.fin[direction] is None:
            self.fin[direction] = ts
        if flags & TH_RST and self.rst[direction] is None:
            self.rst[direction] = ts
        wire = WirePacket(ts, direction, _LETTERS[flags & 0xFF], seq, ack, length, retrans, payload)
        if self.keep:
            self.packets.append(wire)
        return wire


def extract_flows(packets: Iterable[Packet]) -> list[Flow]:
    """Every packet into its flow, the flows keeping their packets; flows in the order they began."""
    table = FlowTable(keep=True)
    add = table.add
    with no_collection():
        for packet in packets:
            add(packet)
    return table.flows


class FlowTable:
    """Packets into flows one at a time (`add`), as a capture is read: each packet's flow and
    its place there (direction, relative sequence numbers) come back at once."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.flows: list[Flow] = []
        self.current: dict[tuple[str, str, str], Flow] = {}  # (proto, lower address, higher) -> its flow now
        # (proto, src, dst) -> (flow, direction, sender's state, receiver's state), for both
        # directions of every current flow: one lookup per packet instead of ordering its addresses.
        self.routes: dict[tuple[str, str, str], tuple] = {}

    def add(self, packet: Packet) -> tuple[Flow, WirePacket]:
        route = self.routes.get((packet.proto, packet.src, packet.dst))
        if route is None or (packet.flags & _SYN_OR_ACK == TH_SYN and packet.proto == TCP and route[0].ended):
            route = self._begin(packet)
        flow, direction, mine, theirs = route
        return flow, flow._add(packet, direction, mine, theirs)

    def _begin(self, packet: Packet) -> tuple:
        """The flow a packet belongs to when it is not routed yet: the one on its 5-tuple, or a new
        one (none yet, or the port was reused for a new connection after the last one ended)."""
        a, b = (packet.src, packet.dst) if packet.src <= packet.dst else (packet.dst, packet.src)
        key = (packet.proto, a, b)
        flow = self.current.get(key)
        opening = packet.proto == TCP and packet.flags & TH_SYN and not packet.flags & TH_ACK
        if flow is not None and opening and flow.ended:
            flow = None  # the port was reused for a new connection
        if flow is None:
            client, server = packet.src, packet.dst
            if packet.proto == TCP and packet.flags & TH_SYN and packet.flags & TH_ACK:
                client, server = packet.dst, packet.src  # its SYN was missed: the SYN-ACK's target opened it
            flow = self.current[key] = Flow(packet.proto, client, server, index=len(self.flows), keep=self.keep)
            self.flows.append(flow)
            # The server's way first: when both ends are one address, every packet is the client's.
            self.routes[(flow.proto, server, client)] = (flow, *flow._route(server))
            self.routes[(flow.proto, client, server)] = (flow, *flow._route(client))
        return self.routes[(packet.proto, packet.src, packet.dst)]


def flow_summary(flow: Flow) -> dict[str, Any]:
    """A flow's numbers (without its packets), in wire.json's form but with float times."""
    tcp = None
    if flow.proto == TCP:
        tcp = {
            "syn_ts": flow.syn_ts, "synack_ts": flow.synack_ts, "ack_ts": flow.ack_ts,
            "handshake_ms": flow.handshake_ms,
            "retransmissions": dict(flow.retransmissions),
            "fin": dict(flow.fin),
            "rst": dict(flow.rst),
        }
    return {
        "id": flow.id, "proto": flow.proto, "client": flow.client, "server": flow.server,
        "first_ts": flow.first_ts,
        "last_ts": flow.last_ts,
        "packets": {C2S: flow.count(C2S), S2C: flow.count(S2C)},
        "bytes": {C2S: flow.payload_bytes(C2S), S2C: flow.payload_bytes(S2C)},
        "tcp": tcp,
    }
