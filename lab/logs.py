"""Parse what containers printed, normalise it into one timeline, join client and server views.

Pure functions over text and records: no Docker here. The orchestrator hands in each
container's raw output with what it knows of the container (name, service, role, IP).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from lab.errors import LabError
from lab.expect import Record, client_address, normal_addr, percentile, port_of, select, server_peers, who
from lab.records.schema import format_addr

CONVERSATION_COLUMNS = [
    "client", "client_ip", "proto", "session", "client_port", "server_saw",
    "sent", "echoed", "bytes", "rtt_p50_ms", "rtt_p95_ms", "server_conn", "flag",
]
# The third view, from the run's capture (lab/wire, docs/wire.md).
WIRE_COLUMNS = [
    "wire_client", "wire_server", "wire_packets_out", "wire_packets_in", "wire_bytes_out", "wire_bytes_in",
    "handshake_ms", "retransmissions", "fin", "rst", "lost_where", "wire_flag",
]


@dataclass
class Origin:
    """Where a container's output came from; added to each of its records."""

    container: str
    service: str
    role: str
    ip: str | None = None


def parse_output(raw: str, origin: Origin) -> list[Record]:
    """Each line a record: JSON records as printed, anything else as an `output` record.

    Nothing is dropped: a traceback or a stray print becomes `{"event": "output", "text": ...}`
    with the time of the record before it, so it sorts where it appeared.
    """
    records: list[Record] = []
    last_ts: str | None = None
    for line in raw.splitlines():
        if not line.strip():
            continue
        record: Record | None = None
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict) and "event" in parsed and "ts" in parsed:
                record = parsed
        if record is None:
            record = {"v": 1, "ts": last_ts, "host": origin.service, "role": origin.role, "proto": None,
                      "event": "output", "text": line}
        last_ts = record.get("ts") or last_ts
        record["container"] = origin.container
        record["service"] = origin.service
        record.setdefault("role", origin.role)
        if origin.ip:
            record["ip"] = origin.ip
        records.append(record)
    # Output before the first record has no time yet: give it the first known one.
    first_ts = next((r["ts"] for r in records if r.get("ts")), None)
    for record in records:
        if record.get("ts") is None:
            record["ts"] = first_ts or "0000-00-00T00:00:00.000000Z"
    return records


def infer_ip(records: list[Record]) -> str | None:
    """A container's IP from its own records, for when Docker no longer reports it (exited)."""
    for record in records:
        if record.get("event") in ("connected", "bound", "listening") and record.get("local"):
            host = normal_addr(record["local"]).rsplit(":", 1)[0].strip("[]")
            if host not in ("0.0.0.0", "::", "127.0.0.1", "::1"):
                return host
    return None


def merge_timeline(groups: Iterable[list[Record]]) -> list[Record]:
    """All records of all containers in time order (stable: a container's own order is kept)."""
    merged = [r for group in groups for r in group]
    merged.sort(key=lambda r: r.get("ts") or "")
    return merged


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
    rtts: list[float] = field(default_factory=list, repr=False)
    wire: dict[str, Any] = field(default_factory=dict, repr=False)  # WIRE_COLUMNS, once the wire view is joined

    @property
    def own_address(self) -> str | None:
        """The client's own view as `ip:port` (`[ip]:port` for IPv6), when its port is known."""
        return format_addr((self.client_ip, self.client_port)) if self.client_port else None

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("rtts")
        wire = data.pop("wire")
        data.update({column: wire.get(column) for column in WIRE_COLUMNS})
        return data


def join_views(events: list[Record]) -> list[Conversation]:
    """Join each client's own view (getsockname after connect / first sendto) with the server's
    view (accept / recvfrom peer) on (proto, address).

    Flags: `ok` (both sides saw the same address), `client-only` (the server never logged that
    address), `server-only` (a peer no client of the run claims), `address-mismatch` (one
    client-only and one server-only view carried the same first message: the same conversation
    seen with different addresses), `nat` (the same, and the address the server saw is a
    masquerading router's, as its `applied` record declares: the translation is explained).
    """
    conversations, client_first = _client_views(events)
    server_only, server_first = _server_views(events, conversations)
    _pair_mismatches(conversations, client_first, server_only, server_first, nat_addresses(events))
    rows = list(conversations.values()) + list(server_only.values())
    for conv in rows:
        if conv.rtts:
            conv.rtt_p50_ms = round(percentile(conv.rtts, 50), 3)
            conv.rtt_p95_ms = round(percentile(conv.rtts, 95), 3)
    rows.sort(key=lambda c: (c.client == "?", _natural(c.client), c.proto, c.session or 0, c.client_port or 0))
    return rows


Key = tuple[str, str]  # (proto, normalised address)


def _client_views(events: list[Record]) -> tuple[dict[Key, Conversation], dict[Key, Any]]:
    """One conversation per client socket, with the messages sent from it (a reconnect starts a
    new socket, so a new row); and each socket's first message text."""
    conversations: dict[Key, Conversation] = {}
    first_text: dict[Key, Any] = {}
    current: dict[tuple[str, str, int], Key] = {}  # (client, proto, session) -> its socket now
    seqs: dict[Key, set[int]] = {}
    for record in select(events, "client"):
        event, proto = record.get("event"), record.get("proto")
        socket_of = (who(record), str(proto), int(record.get("session") or 0))
        if event in ("connected", "bound") and record.get("local"):
            address = client_address(record)
            key = current[socket_of] = (proto, address)
            if key not in conversations:
                conversations[key] = Conversation(
                    client=who(record), client_ip=address.rsplit(":", 1)[0].strip("[]"), proto=proto,
                    session=record.get("session"), client_port=port_of(address), server_saw=None,
                    flag="client-only",
                )
                seqs[key] = set()
            continue
        key = current.get(socket_of)
        if key is None or record.get("seq") is None:
            continue
        conv = conversations[key]
        if event == "sent":
            # A resend (UDP retry, TCP resend after a reconnect) is the same message again.
            if record["seq"] not in seqs[key]:
                seqs[key].add(record["seq"])
                conv.sent += 1
            first_text.setdefault(key, (record.get("text"), record.get("ts")))
        elif event == "reply" and record.get("intact") is True:
            conv.echoed += 1
            conv.bytes += int(record.get("bytes") or 0)
            if record.get("rtt_ms") is not None:
                conv.rtts.append(float(record["rtt_ms"]))
    return conversations, first_text


def _server_views(events: list[Record], conversations: dict[Key, Conversation]
                  ) -> tuple[dict[Key, Conversation], dict[Key, Any]]:
    """Mark the client conversations the server saw; return the peers no client claims, and the
    first text the server received from each peer."""
    first_text: dict[Key, Any] = {}
    for record in select(events, "server", "received"):
        if record.get("peer"):
            first_text.setdefault((record.get("proto"), normal_addr(record["peer"])), (record.get("text"), record.get("ts")))
    server_only: dict[Key, Conversation] = {}
    for proto, peer, record in server_peers(events):
        conv = conversations.get((proto, peer))
        if conv is not None:
            if conv.server_saw is None:
                conv.server_saw, conv.server_conn, conv.flag = peer, record.get("conn"), "ok"
        elif (proto, peer) not in server_only:
            server_only[(proto, peer)] = Conversation(
                client="?", client_ip=peer.rsplit(":", 1)[0].strip("[]"), proto=proto, session=None,
                client_port=None, server_saw=peer, server_conn=record.get("conn"), flag="server-only",
            )
    return server_only, first_text


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
        conv.server_saw, conv.server_conn = other.server_saw, other.server_conn
        conv.flag = "nat" if other.client_ip in nat else "address-mismatch"


def _gap(sent: str | None, heard: str | None) -> float:
    """Seconds between a client's send and the server's receipt (infinite when unknown)."""
    try:
        return abs((_dt.datetime.fromisoformat(heard.replace("Z", "+00:00"))
                    - _dt.datetime.fromisoformat(sent.replace("Z", "+00:00"))).total_seconds())
    except (AttributeError, ValueError):
        return float("inf")


def nat_addresses(events: list[Record]) -> set[str]:
    """The addresses of every router whose `applied` record says it masquerades."""
    found: set[str] = set()
    for record in events:
        if record.get("role") == "netns" and record.get("event") == "applied" and "masquerade" in (record.get("nat") or []):
            found.update(str(a) for a in record.get("addresses") or [])
    return found


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    return stem, int(digits) if digits else -1


def conversations_csv(rows: list[Conversation]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CONVERSATION_COLUMNS + WIRE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for conv in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in conv.row().items()})
    return buffer.getvalue()


def read_events(path) -> list[Record]:
    """A run's events.jsonl; a damaged line is an error naming the file and line, not a traceback."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LabError(f"{path}:{number}: not a JSON record ({exc.msg}); the raw output is in logs/") from None
    return records


def filter_events(events: list[Record], client: str | None = None, proto: str | None = None) -> list[Record]:
    """Records of one client (and the server's records about that client's addresses), one proto."""
    selected = events
    if proto:
        selected = [r for r in selected if r.get("proto") in (proto, None)]
    if client:
        addresses = {
            client_address(r)
            for r in selected
            if who(r) == client and r.get("event") in ("connected", "bound") and r.get("local")
        }
        selected = [
            r for r in selected
            if who(r) == client or (r.get("role") == "server" and r.get("peer") and normal_addr(r["peer"]) in addresses)
            or (r.get("role") == "lab" and r.get("target") == client)
        ]
    return selected
