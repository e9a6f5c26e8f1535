"""The wire's view of a run for the report: what the capture saw (`wire.json`, docs/wire.md),
attached to each conversation row, or the reason there is none. wire.json is read as a stream: of
each flow's packets, those the ladder draws are kept and the rest counted; of its messages, only
the lost round trips.

A run without a capture still gets its report: the wire column then says why.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lab.expect.query import normal_addr
from lab.html.ladder import MAX_ROWS
from lab.html.rundata import Clock, RunData
from lab.wire.file import WIRE_FILE, iter_wire, read_wire_capture


def read_wire(directory: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A run's wire view as the page draws it, when it holds one (the capture was read), and what
    the page should say about it: why there is none, or that the capture is damaged.

    wire.json is read as a stream (lab.wire.file.iter_wire): of each flow, the packets the ladder
    draws are kept and the rest counted (`timed`, `retransmitted`); of the messages, only the
    lost round trips (`message_places`). So what is held does not grow with the run's packets."""
    path = directory / WIRE_FILE
    if not path.exists():
        return None, "this run has no wire.json: it was recorded without a packet capture"
    # Its capture first, from the head of the file: without one, its messages (one per send)
    # are not read at all.
    capture = read_wire_capture(directory) or {}
    status = capture.get("status")
    if capture and status not in ("ok", "damaged"):
        return None, _no_view(capture)
    wire = _drawn(directory)
    if wire is None:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return None, f"{path.name} is not readable JSON ({exc})"
        return None, f"{path.name} holds no wire view"
    capture = wire.get("capture") or {}
    status = capture.get("status")
    if status not in ("ok", "damaged"):
        return None, _no_view(capture)
    if status == "damaged":
        damage = capture.get("damage") or {}
        return wire, f"the capture is damaged after {damage.get('after_packets', '?')} packets: later packets are unknown"
    return wire, None


def _drawn(directory: Path) -> dict[str, Any] | None:
    """What the page draws of wire.json, read as a stream; None when there is no readable one."""
    wire: dict[str, Any] | None = None
    flow: dict[str, Any] = {}
    for kind, item in iter_wire(directory):
        if kind == "head":
            wire = {**item, "flows": [], "messages": []}
        elif kind == "flow":
            flow = {**item, "packets_list": [], "timed": 0, "retransmitted": 0}
            wire["flows"].append(flow)
        elif kind == "packet":
            if item.get("retrans"):
                flow["retransmitted"] += 1
            if item.get("ts"):
                flow["timed"] += 1
                if len(flow["packets_list"]) < MAX_ROWS:  # the ladder draws these; the rest are counted
                    flow["packets_list"].append(item)
        elif kind == "message" and item.get("where") not in (None, "ok", "unknown"):
            wire["messages"].append({k: item.get(k) for k in ("client", "proto", "session", "seq", "where")})
    return wire


def _no_view(capture: dict[str, Any]) -> str:
    status = capture.get("status")
    reason = capture.get("reason") or ("capture was turned off" if status == "off" else "no capture file")
    return f"capture {status or 'unknown'}: {reason}"


def message_places(wire: dict[str, Any] | None) -> dict[tuple[str, str, int, int], str]:
    """The wire's `where` of each lost round trip, by (client, proto, session, seq): what the
    journeys need from wire.json's messages (the ones that came back are left out)."""
    places = {}
    for m in (wire or {}).get("messages") or []:
        if m.get("where") not in (None, "ok", "unknown"):
            places[(m.get("client"), m.get("proto"), int(m.get("session") or 0), m.get("seq"))] = m["where"]
    return places


def attach_wire(run: RunData, wire: dict[str, Any] | None, note: str | None) -> None:
    """Fill `run.wire_summary` and each socket's `wire` from the run's wire view (`read_wire`);
    the messages' places were given to the journeys when they were followed (`message_places`)."""
    if note:
        run.wire_note = note
    if wire is None:
        return
    run.wire_summary = wire.get("capture") or {}
    clock = Clock(origin_ts=run.origin)
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
    for sock in run.sockets:
        conv = sock.conversation
        key = (conv.proto, normal_addr(sock.address)) if sock.address else None
        flow = flows.get(key) if key else None
        sock.wire = _socket_wire(flow, clock, near.get(key) if key else None)
        sock.wire["flag"] = flags.get((conv.client, conv.proto, str(conv.client_port or ""))) or (
            "ok" if flow else "no-flow")
    run.wire_flags = list(wire.get("flags") or [])


def _socket_wire(flow: dict[str, Any] | None, clock: Clock, near: dict[str, Any] | None = None) -> dict[str, Any]:
    if flow is None:
        return {"summary": "not on the wire" + (f" beyond {near['network']}" if near else ""), "packets": [],
                "packets_left_out": 0, "retransmitted": 0}
    timed = [p for p in flow.get("packets_list") or [] if p.get("ts")]
    # The ladder draws the first MAX_ROWS steps: the packets after those are counted, not kept.
    packets = [{"t": clock(p["ts"]), **{k: p.get(k) for k in ("dir", "flags", "seq", "ack", "len", "retrans", "msg")}}
               for p in timed[:MAX_ROWS]]
    retransmitted = flow.get("retransmitted", sum(1 for p in timed if p.get("retrans")))
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
    return {"summary": " · ".join(parts), "packets": packets,
            "packets_left_out": flow.get("timed", len(timed)) - len(packets), "retransmitted": retransmitted}


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
