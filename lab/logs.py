"""A run's timeline of records: who printed them, joining client and server views, reading it back.

Pure functions over records: no Docker here. lab/collect.py builds the timeline (events.jsonl)
from each container's output, tagging each record with its container's Origin.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.errors import LabError
from lab.expect import Record, client_address, normal_addr, percentile, port_of, who
from lab.records.schema import format_addr

CONVERSATION_COLUMNS = [
    "client", "client_ip", "proto", "session", "client_port", "server_saw",
    "sent", "echoed", "bytes", "rtt_p50_ms", "rtt_p95_ms", "server_conn", "flag",
]
# The third view, from the run's capture (lab/wire, docs/wire.md).
# Where the run spans nodes (a swarm): the node of each end, next to its address.
NODE_COLUMNS = {"client_node": "client_ip", "server_node": "server_saw"}  # column -> the one it follows
WIRE_COLUMNS = [
    "wire_client", "wire_server", "wire_client_near", "wire_server_near", "wire_network_near",
    "wire_packets_out", "wire_packets_in", "wire_bytes_out", "wire_bytes_in",
    "handshake_ms", "retransmissions", "fin", "rst", "lost_where", "wire_flag",
]


# The events whose `text` is a message's content (docs/log-schema.md).
MESSAGE_EVENTS = frozenset({"sent", "received", "reply"})


@dataclass
class Origin:
    """Where a container's output came from; added to each of its records."""

    container: str
    service: str
    role: str
    ip: str | None = None
    node: str | None = None  # the engine's node it ran on, where there are several (a swarm)


def infer_ip(records: list[Record]) -> str | None:
    """A container's IP from its own records, for when Docker no longer reports it (exited)."""
    for record in records:
        if record.get("event") in ("connected", "bound", "listening") and record.get("local"):
            host = normal_addr(record["local"]).rsplit(":", 1)[0].strip("[]")
            if host not in ("0.0.0.0", "::", "127.0.0.1", "::1"):
                return host
    return None


@dataclass
class Conversation:
    """One client socket's conversation as both sides saw it."""

    client: str
    client_ip: str
    proto: str
    session: int | None
    client_port: int | None
    server_saw: str | None
    sent: int = 0
    echoed: int = 0
    bytes: int = 0
    rtt_p50_ms: float | None = None
    rtt_p95_ms: float | None = None
    server_conn: int | None = None
    flag: str = "ok"
    client_node: str | None = None  # the node each end ran on, where the run spans nodes
    server_node: str | None = None
    rtts: array = field(default_factory=lambda: array("d"), repr=False)
    wire: dict[str, Any] = field(default_factory=dict, repr=False)  # WIRE_COLUMNS, once the wire view is joined

    @property
    def own_address(self) -> str | None:
        """The client's own view as `ip:port` (`[ip]:port` for IPv6), when its port is known."""
        return format_addr((self.client_ip, self.client_port)) if self.client_port else None

    def row(self, nodes: bool = False) -> dict[str, Any]:
        """The row's columns (`conversation_columns(nodes)`): the node columns only with `nodes`."""
        data = asdict(self)
        data.pop("rtts")
        wire = data.pop("wire")
        data.update({column: wire.get(column) for column in WIRE_COLUMNS})
        if not nodes:
            for column in NODE_COLUMNS:
                data.pop(column)
        return data


def has_nodes(rows: Iterable[Conversation]) -> bool:
    """Whether a run's rows name nodes (a multi-node engine); a one-host run's never do."""
    return any(c.client_node or c.server_node for c in rows)


def conversation_columns(nodes: bool = False) -> list[str]:
    """clients.csv's columns; with `nodes`, each end's node follows its address."""
    columns = []
    for column in CONVERSATION_COLUMNS:
        columns.append(column)
        columns += [node for node, after in NODE_COLUMNS.items() if nodes and after == column]
    return columns + WIRE_COLUMNS


def join_views(events: Iterable[Record]) -> list[Conversation]:
    """Join each client's own view (getsockname after connect / first sendto) with the server's
    view (accept / recvfrom peer) on (proto, address), in one pass over the time-ordered records.

    Flags: `ok` (both sides saw the same address), `client-only` (the server never logged that
    address), `server-only` (a peer no client of the run claims), `address-mismatch` (one
    client-only and one server-only view carried the same first message: the same conversation
    seen with different addresses), `nat` (the same, and the address the server saw is a
    masquerading router's, as its `applied` record declares: the translation is explained).

    What it holds grows with the client sockets and peers, not with the messages: a few fields
    per socket, and each echo's round-trip time (8 bytes) for the percentiles.
    """
    joiner = ViewJoiner()
    for record in events:
        joiner.add(record)
    return joiner.rows()


Key = tuple[str, str]  # (proto, normalised address)


class ViewJoiner:
    """The state of `join_views` between records: one entry per client socket and server peer."""

    def __init__(self) -> None:
        self.conversations: dict[Key, Conversation] = {}
        self.client_first: dict[Key, Any] = {}  # each client socket's first message (text, ts)
        self.current: dict[tuple[str, str, int, str], Key] = {}  # (client, proto, session, family) -> its socket now
        self.highest_seq: dict[Key, int] = {}
        self.server_first: dict[Key, Any] = {}  # the first (text, ts) the server received from each peer
        self.server_saw: dict[Key, Any] = {}  # each peer the server accepted / received from: its conn
        self.server_node: dict[Key, str | None] = {}  # the node of the server that first saw each peer
        self.nat: set[str] = set()  # the addresses of masquerading routers (their `applied` records)

    def add(self, record: Record) -> None:
        role = record.get("role")
        if role == "netns" and record.get("event") == "applied" and "masquerade" in (record.get("nat") or []):
            self.nat.update(str(a) for a in record.get("addresses") or [])
        elif role == "client":
            self._client(record)
        elif role == "server" and record.get("peer"):
            proto, event = record.get("proto"), record.get("event")
            key = (proto, normal_addr(record["peer"]))
            if event == "received":
                self.server_first.setdefault(key, (record.get("text"), record.get("ts")))
            if event == ("accepted" if proto == "tcp" else "received") and key not in self.server_saw:
                self.server_saw[key] = record.get("conn")
                self.server_node[key] = record.get("node")

    def _client(self, record: Record) -> None:
        event, proto = record.get("event"), record.get("proto")
        # A dual-stack client runs session 0 once per family: the server address it talks to
        # (`peer`, on every record of a socket) tells the two sockets apart.
        socket_of = (who(record), str(proto), int(record.get("session") or 0), _family(record.get("peer")))
        if event in ("connected", "bound") and record.get("local"):
            address = client_address(record)
            key = self.current[socket_of] = (proto, address)
            if key not in self.conversations:
                self.conversations[key] = Conversation(
                    client=who(record), client_ip=address.rsplit(":", 1)[0].strip("[]"), proto=proto,
                    session=record.get("session"), client_port=port_of(address), server_saw=None,
                    flag="client-only", client_node=record.get("node"),
                )
                self.highest_seq[key] = 0
            return
        key = self.current.get(socket_of)
        if key is None or record.get("seq") is None:
            return
        conv = self.conversations[key]
        if event == "sent":
            # A socket sends its messages in order; a resend (UDP retry, TCP resend after a
            # reconnect) is a message it sent before, so not counted again.
            if record["seq"] > self.highest_seq[key]:
                self.highest_seq[key] = record["seq"]
                conv.sent += 1
            self.client_first.setdefault(key, (record.get("text"), record.get("ts")))
        elif event == "reply" and record.get("intact") is True:
            conv.echoed += 1
            conv.bytes += int(record.get("bytes") or 0)
            if record.get("rtt_ms") is not None:
                conv.rtts.append(float(record["rtt_ms"]))

    def rows(self) -> list[Conversation]:
        server_only: dict[Key, Conversation] = {}
        for (proto, peer), conn in self.server_saw.items():
            conv = self.conversations.get((proto, peer))
            node = self.server_node.get((proto, peer))
            if conv is not None:
                conv.server_saw, conv.server_conn, conv.flag, conv.server_node = peer, conn, "ok", node
            else:
                server_only[(proto, peer)] = Conversation(
                    client="?", client_ip=peer.rsplit(":", 1)[0].strip("[]"), proto=proto, session=None,
                    client_port=None, server_saw=peer, server_conn=conn, flag="server-only", server_node=node,
                )
        _pair_mismatches(self.conversations, self.client_first, server_only, self.server_first, self.nat)
        rows = list(self.conversations.values()) + list(server_only.values())
        for conv in rows:
            if conv.rtts:
                conv.rtt_p50_ms = round(percentile(conv.rtts, 50), 3)
                conv.rtt_p95_ms = round(percentile(conv.rtts, 95), 3)
        rows.sort(key=lambda c: (c.client == "?", _natural(c.client), c.proto, c.session or 0, c.client_port or 0))
        return rows


def _pair_mismatches(conversations: dict[Key, Conversation], client_first: dict[Key, Any],
                     server_only: dict[Key, Conversation], server_first: dict[Key, Any], nat: set[str]) -> None:
    """Same first message on both unmatched sides: one conversation seen at two addresses.

    Clients often send the same first text (the time), so among the server's candidates the
    one with the client's own port wins (a NAT keeps the port where it can), then the one the
    server first heard closest to the client's first send. Conntrack would say it outright, but
    the lab's kernel has no conntrack netlink: content, port and time are what both sides log."""
    for ckey, conv in conversations.items():
        if conv.flag != "client-only" or ckey not in client_first:
            continue
        text, sent = client_first[ckey]
        candidates = [skey for skey in server_only if skey[0] == ckey[0] and (server_first.get(skey) or (None,))[0] == text]
        if not candidates:
            continue
        skey = min(candidates, key=lambda k: (port_of(k[1]) != conv.client_port, _gap(sent, server_first[k][1])))
        other = server_only.pop(skey)
        conv.server_saw, conv.server_conn, conv.server_node = other.server_saw, other.server_conn, other.server_node
        conv.flag = "nat" if other.client_ip in nat else "address-mismatch"


def _family(peer: str | None) -> str:
    """`ipv6` for a bracketed peer (`[fd5c::3]:19200`), else `ipv4` (also when unknown)."""
    return "ipv6" if peer and str(peer).startswith("[") else "ipv4"


def _gap(sent: str | None, heard: str | None) -> float:
    """Seconds between a client's send and the server's receipt (infinite when unknown)."""
    try:
        return abs((_dt.datetime.fromisoformat(heard.replace("Z", "+00:00"))
                    - _dt.datetime.fromisoformat(sent.replace("Z", "+00:00"))).total_seconds())
    except (AttributeError, ValueError):
        return float("inf")


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    return stem, int(digits) if digits else -1


def conversations_csv(rows: list[Conversation]) -> str:
    """clients.csv: one line per row; the node columns only when the run has nodes."""
    nodes = has_nodes(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=conversation_columns(nodes), lineterminator="\n")
    writer.writeheader()
    for conv in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in conv.row(nodes).items()})
    return buffer.getvalue()


class EventFile:
    """A run's events.jsonl, read again from disk each time it is iterated (memory stays flat);
    a damaged line is an error naming the file and line, not a traceback. With `slim`, the
    messages' text is left out (the bulk of a run's records, and no check reads it); the records
    `then` come after the file's."""

    def __init__(self, path, slim: bool = False, then: Iterable[Record] = ()) -> None:
        self.path = path
        self.slim = slim
        self.then = then  # records to give after the file's (made by the lab itself, not collected)

    def __iter__(self) -> Iterator[Record]:
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabError(f"{self.path}:{number}: not a JSON record ({exc.msg}); "
                                   f"the raw output is in records/ and logs/") from None
                if self.slim and record.get("event") in MESSAGE_EVENTS:
                    record.pop("text", None)
                yield record
        yield from self.then


def read_events(path) -> list[Record]:
    """A run's events.jsonl as a list: for small runs and tests; the lab itself reads an
    EventFile, which holds one record at a time."""
    return list(EventFile(path))


def filter_events(events: Iterable[Record], client: str | None = None, proto: str | None = None) -> list[Record]:
    """Records of one client (and the server's records about that client's addresses), one proto,
    as a list (`iter_filtered` gives them as a stream)."""
    return list(iter_filtered(events, client=client, proto=proto))


def iter_filtered(events: Iterable[Record], client: str | None = None, proto: str | None = None) -> Iterator[Record]:
    """`filter_events` as a stream: `events` is read twice when a client is named (its addresses
    first), so pass something that can be iterated again, such as an EventFile; what is held
    is the client's addresses, not the records."""
    def in_proto(r: Record) -> bool:
        return not proto or r.get("proto") in (proto, None)

    addresses = {
        client_address(r)
        for r in events
        if client and in_proto(r) and who(r) == client and r.get("event") in ("connected", "bound") and r.get("local")
    } if client else set()

    def keep(r: Record) -> bool:
        return in_proto(r) and (not client or who(r) == client
                                or bool(r.get("role") == "server" and r.get("peer")
                                        and normal_addr(r["peer"]) in addresses)
                                or (r.get("role") == "lab" and r.get("target") == client))

    return (r for r in events if keep(r))
