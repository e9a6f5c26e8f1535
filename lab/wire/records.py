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
  number it carries) and nothing else.
"""

from __future__ import annotations

from typing import Any

from lab.expect.query import Record

ROLE = "wire"


def _record(ts: str | None, proto: str | None, event: str, **fields: Any) -> Record:
    record: Record = {"v": 1, "ts": ts or "0000-00-00T00:00:00.000000Z", "host": ROLE, "role": ROLE,
                      "service": ROLE, "proto": proto, "event": event}
    record.update({k: v for k, v in fields.items() if v is not None})
    return record


def check_records(view: dict[str, Any] | None) -> list[Record]:
    """What the wire expectations read: the capture's status, each flow, each send's fate."""
    if view is None:
        return [_record(None, None, "capture", status="missing", reason="the run has no wire.json")]
    capture = view["capture"]
    records = [_record(None, None, "capture", status=capture["status"], reason=capture.get("reason"))]
    for flow in view["flows"]:
        if flow.get("side") == "client":
            continue
        tcp = flow.get("tcp") or {}
        owner = flow.get("owner") or {}
        records.append(_record(flow["first_ts"], flow["proto"], "flow", client=owner.get("client"), flow=flow["id"],
                               retransmissions=sum((tcp.get("retransmissions") or {}).values()) if tcp else None,
                               handshake_ms=tcp.get("handshake_ms")))
    if capture["status"] not in ("ok", "damaged"):
        # Without a capture the wire expectations measure nothing (they fail on the capture's
        # reason): a record per message would only be held, a run's worth of them.
        return records
    for msg in view["messages"]:
        records.append(_record(msg["sent_ts"], msg["proto"], "message", client=msg["client"], seq=msg["seq"],
                               attempt=msg["attempt"], where=msg["where"]))
    return records


def timeline_records(view: dict[str, Any] | None, client: str | None = None, proto: str | None = None) -> list[Record]:
    """Every packet (and every lost round trip with its place) as a timeline line for `lab logs`,
    only of one client's flows when `client` is given."""
    if view is None:
        return []
    records = []
    for flow in view["flows"]:
        owner = (flow.get("owner") or {}).get("client")
        if (client and owner != client) or (proto and flow["proto"] != proto):
            continue
        ends = {"c2s": (flow["client"], flow["server"]), "s2c": (flow["server"], flow["client"])}
        # The same packet may cross two networks (a router between them): say which side this is.
        near = f" on {flow['network']} (client side)" if flow.get("side") == "client" else ""
        for p in flow["packets_list"]:
            src, dst = ends[p["dir"]]
            what = p["flags"] or "datagram"
            detail = f"{src} > {dst}" + near + (" retransmission" if p["retrans"] else "")
            records.append(_record(p["ts"], flow["proto"], what, seq=p["msg"], bytes=p["len"], client=owner,
                                   detail=detail))
    for msg in view["messages"]:
        if msg["where"] in ("ok", "unknown") or (client and msg["client"] != client) or (proto and msg["proto"] != proto):
            continue
        records.append(_record(msg["sent_ts"], msg["proto"], "lost", seq=msg["seq"], client=msg["client"],
                               attempt=msg["attempt"] if msg["attempt"] > 1 else None, reason=msg["where"]))
    return records
