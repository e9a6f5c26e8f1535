"""The wire view as records, beside the programs' own: for the expectations and for `lab logs`.

Records of role `wire` (host `wire`), never written to events.jsonl (wire.json is the wire's
file):

- `capture`: the capture's `status` and `reason` (one per run, also when there is no capture);
- `flow`: one per flow on the server's side of the run (a flow seen again on a client's own
  network beyond a router is not counted twice), with `client` (the owning client, or null),
  `retransmissions`, `handshake_ms`;
- `message`: one per client send, with `client`, `seq`, `attempt` and `where` (only when the
  capture was read: without one the wire expectations have nothing to measure);
- for the timeline only, `packet` records (one per packet, `seq` being the client's message
  number it carries) and nothing else; `wire_timeline` reads them from wire.json as a stream.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lab.expect.query import Record
from lab.wire.file import WIRE_FILE, read_wire_view, sections
from lab.wire.spool import read_lines

ROLE = "wire"


def _record(ts: str | None, proto: str | None, event: str, **fields: Any) -> Record:
    record: Record = {"v": 1, "ts": ts or "0000-00-00T00:00:00.000000Z", "host": ROLE, "role": ROLE,
                      "service": ROLE, "proto": proto, "event": event}
    record.update({k: v for k, v in fields.items() if v is not None})
    return record


def check_records(view: dict[str, Any] | None) -> WireRecords:
    """What the wire expectations read: the capture's status, each flow, each send's fate. Listed
    again each time they are iterated (the view's messages are not held: lab.wire.view)."""
    return WireRecords(view)


class WireRecords:
    """check_records' records, made as they are iterated; `records + these` is a list."""

    def __init__(self, view: dict[str, Any] | None) -> None:
        self.view = view

    def __iter__(self) -> Iterator[Record]:
        view = self.view
        if view is None:
            yield _record(None, None, "capture", status="missing", reason="the run has no wire.json")
            return
        capture = view["capture"]
        yield _record(None, None, "capture", status=capture["status"], reason=capture.get("reason"))
        for flow in view["flows"]:
            if flow.get("side") == "client":
                continue
            tcp = flow.get("tcp") or {}
            owner = flow.get("owner") or {}
            yield _record(flow["first_ts"], flow["proto"], "flow", client=owner.get("client"), flow=flow["id"],
                          retransmissions=sum((tcp.get("retransmissions") or {}).values()) if tcp else None,
                          handshake_ms=tcp.get("handshake_ms"))
        if capture["status"] not in ("ok", "damaged"):
            # Without a capture the wire expectations measure nothing (they fail on the capture's
            # reason): a record per message would only be made for nothing, a run's worth of them.
            return
        for msg in view["messages"]:
            yield _record(msg["sent_ts"], msg["proto"], "message", client=msg["client"], seq=msg["seq"],
                          attempt=msg["attempt"], where=msg["where"])

    def __radd__(self, records: list[Record]) -> list[Record]:
        return [*records, *self]


def timeline_records(view: dict[str, Any] | None, client: str | None = None, proto: str | None = None) -> list[Record]:
    """Every packet (and every lost round trip with its place) as a timeline line for `lab logs`,
    only of one client's flows when `client` is given. For a view in memory (a small run):
    `wire_timeline` reads a run's wire.json as a stream."""
    if view is None:
        return []
    records = []
    for flow in view["flows"]:
        if _shown(flow, client, proto):
            records += [_packet_record(flow, p) for p in flow["packets_list"]]
    records += _lost(view["messages"], client, proto)
    return records


def wire_timeline(directory: Path, client: str | None = None, proto: str | None = None) -> Iterator[Record]:
    """timeline_records of a run's wire.json in time order, as a stream: each shown flow's packets
    are read from its part of the file a piece at a time, all of them side by side, so what is
    held is a piece per flow and the lost round trips (sorted), not the packets. A wire.json in
    another layout (version 1) is read whole, as before."""
    found = sections(directory)
    if found is None:
        yield from sorted(timeline_records(read_wire_view(directory), client, proto), key=_ts)
        return
    _head, flows, messages_at = found
    with open(directory / WIRE_FILE, "rb") as fh:
        fd = fh.fileno()

        def packets(flow: dict[str, Any], start: int, end: int) -> Iterator[Record]:
            for line in read_lines(fd, start, end):
                text = line.strip().rstrip(b",")
                if text:
                    yield _packet_record(flow, json.loads(text))

        def messages() -> Iterator[dict[str, Any]]:
            for line in read_lines(fd, messages_at, os.fstat(fd).st_size):
                text = line.strip().rstrip(b",")
                if text.startswith(b"{"):
                    yield json.loads(text)

        streams = [packets(flow, start, end) for flow, start, end in flows if _shown(flow, client, proto)]
        streams.append(iter(sorted(_lost(messages(), client, proto), key=_ts)))
        yield from heapq.merge(*streams, key=_ts)


def _ts(record: Record) -> str:
    return record.get("ts") or ""


def _shown(flow: dict[str, Any], client: str | None, proto: str | None) -> bool:
    owner = (flow.get("owner") or {}).get("client")
    return not ((client and owner != client) or (proto and flow["proto"] != proto))


def _packet_record(flow: dict[str, Any], p: dict[str, Any]) -> Record:
    ends = {"c2s": (flow["client"], flow["server"]), "s2c": (flow["server"], flow["client"])}
    # The same packet may cross two networks (a router between them): say which side this is.
    near = f" on {flow['network']} (client side)" if flow.get("side") == "client" else ""
    src, dst = ends[p["dir"]]
    what = p["flags"] or "datagram"
    detail = f"{src} > {dst}" + near + (" retransmission" if p["retrans"] else "")
    return _record(p["ts"], flow["proto"], what, seq=p["msg"], bytes=p["len"],
                   client=(flow.get("owner") or {}).get("client"), detail=detail)


def _lost(messages: Iterable[dict[str, Any]], client: str | None, proto: str | None) -> list[Record]:
    return [_record(msg["sent_ts"], msg["proto"], "lost", seq=msg["seq"], client=msg["client"],
                    attempt=msg["attempt"] if msg["attempt"] > 1 else None, reason=msg["where"])
            for msg in messages
            if not (msg["where"] in ("ok", "unknown") or (client and msg["client"] != client)
                    or (proto and msg["proto"] != proto))]
