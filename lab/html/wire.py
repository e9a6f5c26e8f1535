"""The wire's view of a run for the report: what the capture saw (`wire.json`, docs/wire.md),
attached to each conversation row, or the reason there is none.

A run without a capture still gets its report: the wire column then says why.
"""

from __future__ import annotations

import csv
import json
from typing import Any

from lab.expect.query import normal_addr
from lab.html.rundata import Clock, RunData

WIRE_FILE = "wire.json"


def attach_wire(run: RunData) -> None:
    """Fill `run.wire_summary` and each socket's `wire` from the run's wire.json, if it has one."""
    path = run.directory / WIRE_FILE
    if not path.exists():
        run.wire_note = "this run has no wire.json: it was recorded without a packet capture"
        return
    try:
        wire = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        run.wire_note = f"{path.name} is not readable JSON ({exc})"
        return
    capture = wire.get("capture") or {}
    status = capture.get("status")
    if status not in ("ok", "damaged"):
        reason = capture.get("reason") or ("capture was turned off" if status == "off" else "no capture file")
        run.wire_note = f"capture {status or 'unknown'}: {reason}"
        return
    run.wire_summary = capture
    if status == "damaged":
        damage = capture.get("damage") or {}
        run.wire_note = f"the capture is damaged after {damage.get('after_packets', '?')} packets: later packets are unknown"
    clock = Clock(run.events)
    flags = _csv_flags(run)
    # The flow on the server's side of the run stands for the socket (the one its messages were
    # matched on); the same socket's flow on its own network, beyond a router, is named beside it.
    flows: dict[tuple[str, str], dict[str, Any]] = {}
    near: dict[tuple[str, str], dict[str, Any]] = {}
    for f in wire.get("flows") or []:
        owner = (f.get("owner") or {}).get("local")
        key = (f.get("proto"), normal_addr(owner or f.get("client") or ""))
        if f.get("side") == "client":
            near.setdefault(key, f)
        elif owner or key not in flows:
            flows[key] = f
    messages = {}
    for m in wire.get("messages") or []:
        messages[(m.get("client"), m.get("proto"), int(m.get("session") or 0), m.get("seq"))] = m
    for sock in run.sockets:
        conv = sock.conversation
        key = (conv.proto, normal_addr(sock.address)) if sock.address else None
        flow = flows.get(key) if key else None
        sock.wire = _socket_wire(flow, clock, near.get(key) if key else None)
        sock.wire["flag"] = flags.get((conv.client, conv.proto, str(conv.client_port or ""))) or (
            "ok" if flow else "no-flow")
        for journey in sock.journeys:
            message = messages.get((conv.client, conv.proto, int(conv.session or 0), journey.seq))
            if message and message.get("where") not in (None, "ok", "unknown"):
                journey.wire_where = message["where"]
    run.wire_flags = list(wire.get("flags") or [])


def _socket_wire(flow: dict[str, Any] | None, clock: Clock, near: dict[str, Any] | None = None) -> dict[str, Any]:
    if flow is None:
        return {"summary": "not on the wire" + (f" beyond {near['network']}" if near else ""), "packets": []}
    packets = [{"t": clock(p["ts"]), **{k: p.get(k) for k in ("dir", "flags", "seq", "ack", "len", "retrans", "msg")}}
               for p in flow.get("packets_list") or [] if p.get("ts")]
    count, size = flow.get("packets") or {}, flow.get("bytes") or {}
    parts = [(f"{near.get('network')}: {near.get('client')} → {near.get('server')} · " if near else "")
             + (f"{flow.get('network')}: " if near else "") + f"{flow.get('client')} → {flow.get('server')}",
             f"{count.get('c2s', 0)}↑ {count.get('s2c', 0)}↓ pkts", f"{size.get('c2s', 0)}↑ {size.get('s2c', 0)}↓ B"]
    tcp = flow.get("tcp")
    if tcp:
        if tcp.get("handshake_ms") is not None:
            parts.insert(1, f"handshake {tcp['handshake_ms']:.2f} ms")
        retrans = tcp.get("retransmissions") or {}
        if sum(v or 0 for v in retrans.values()):
            parts.append(f"{retrans.get('c2s', 0)}↑ {retrans.get('s2c', 0)}↓ retransmitted")
        for what in ("fin", "rst"):
            sides = [side for side, ts in (tcp.get(what) or {}).items() if ts]
            if sides:
                parts.append(f"{what.upper()} " + "+".join("client" if s == "c2s" else "server" for s in sides))
    return {"summary": " · ".join(parts), "packets": packets}


def capture_points(capture: dict[str, Any] | None) -> str:
    """Where the packets were recorded, in one line: each network's bridge and its side."""
    points = (capture or {}).get("points") or []
    if len(points) < 2:
        return ""
    return "captured on every network: " + ", ".join(
        f"{p.get('network')} ({p.get('side')} side, {p.get('packets') or 0} packets)" for p in points)


def _csv_flags(run: RunData) -> dict[tuple[str, str, str], str]:
    """`wire_flag` of each clients.csv row, by (client, proto, client port)."""
    path = run.directory / "clients.csv"
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return {}
    return {(r.get("client"), r.get("proto"), r.get("client_port") or ""): r["wire_flag"]
            for r in rows if r.get("wire_flag")}
