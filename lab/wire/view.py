"""Build a run's wire view from its directory and records: read the capture, extract flows, join
them with the conversation rows, and write `wire.json` (format: docs/wire.md).

A run without a capture still gets a view that says why (`capture.status`, `capture.reason`),
and every row then says `no-capture`; a damaged capture gives the flows up to the damage.

Everything is read as a stream, so what is held does not grow with the run (issue 8): each
capture is read twice, a packet at a time (lab.wire.pcap). The first reading makes the flows'
numbers (lab.wire.flows), which the sockets claim; the second gives each packet to its flow's
lines on disk (lab.wire.spool) and, on the server's side, matches it on the way with the
clients' messages, the records and the packets taken as one stream in time order
(lab.wire.match). The view's `messages` (`Messages`) are listed again each time they are read:
the settled sends of the followed sockets from disk, the others' derived again from the records.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lab.expect.query import Record, normal_addr, select
from lab.labels import NETWORK
from lab.wire.file import VERSION
from lab.wire.flows import C2S, S2C, Flow, FlowTable, WirePacket, flow_summary
from lab.wire.join import FlowClaims, Socket, client_sockets, record_time, row_address, unfollowed_sends, wire_row
from lab.wire.match import StreamMatch
from lab.wire.pcap import Capture, iter_capture, no_collection
from lab.wire.service import CAPTURE_DIR, PCAP_NAME, ROLE, pcap_name
from lab.wire.spool import FlowItems, FlowLines, Lines


def iso(ts: float | None) -> str | None:
    """Capture time as a record-style UTC timestamp, so wire and application events sort together."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_wire_view(directory: Path, events: Iterable[Record], conversations: list, capture_on: bool,
                    networks: list[str] | None = None, server_networks: list[str] | None = None) -> dict[str, Any]:
    """The wire view of a run; adds the wire columns to each conversation row (`row.wire`) and
    rows for flows no program claims. `conversations` are lab.logs.Conversation objects.

    `networks`: a topology's networks, each captured into `capture/<network>.pcap`, and
    `server_networks` the server's among them (its side of every router; default the first).
    Without them the run has one network, captured into `capture/lab.pcap`. A row's wire
    columns are its flow on the server's side; the flow on the client's own network, when that
    is another one, adds the `_near` columns.

    `events` is read more than once (a list, or an EventFile): here, and whenever the view's
    `messages` are listed."""
    points = [(net, pcap_name(net)) for net in networks] if networks else [(NETWORK, PCAP_NAME)]
    server_side = set(server_networks or [points[0][0]])
    helper = _helper_report(events)
    if len(points) == 1 and "" in helper:  # records that name no file are the one capture's
        helper.setdefault(points[0][1], {}).update(helper[""])
    captures = [_read_point(directory, net, name, net in server_side, helper.get(name, {}), capture_on)
                for net, name in points]
    flows: list[Flow] = []
    network_of: dict[int, str] = {}  # each flow's network, by id: the flows themselves stay as flows.py makes them
    by_point = [point.pop("flows") for point in captures]
    paths = [point.pop("path", None) for point in captures]
    for point, point_flows in zip(captures, by_point, strict=True):
        for flow in point_flows:
            flows.append(flow)
            network_of[id(flow)] = point["network"]
    # The rows and their messages stand on the server's side: its captures decide their notes.
    rows_status = _worst([p for p in captures if p["network"] in server_side])["status"]
    damaged = [p["known_until"] for p in captures if p["network"] in server_side and p["status"] == "damaged"]
    known_until = min(damaged) if damaged else None  # messages after it have no known place
    for point in captures:
        point.pop("known_until")
    capture = _overall(captures, capture_on)

    server_flows = [flow for flow in flows if network_of[id(flow)] in server_side]
    near_flows = [flow for flow in flows if network_of[id(flow)] not in server_side]
    # A masqueraded socket's flow beyond the router carries the address the server saw.
    translated = {(conv.proto, address): normal_addr(conv.server_saw) for conv in conversations
                  if conv.flag == "nat" and conv.server_saw
                  and (address := row_address(conv.client_ip, conv.client_port))}
    # Each socket claims its flow as it opens: only a socket with one has its sends matched.
    claims = FlowClaims(server_flows, translated)
    sockets = client_sockets(events, claims)
    leaks = claims.leaks
    near = _claim_near(sockets, near_flows)
    index = {id(flow): i for i, flow in enumerate(flows)}  # each flow's place in wire.json
    packets, followed = FlowLines(), Lines()
    # The second reading: each packet to its flow's lines, the server's side's matched on the way
    # with the clients' messages (one stream in time order, lab.wire.match).
    match = StreamMatch(sockets, known_until, lambda i, p: packets.add(i, _packet_json(p)),
                        lambda sock, send: followed.add(_message_json(sock, send)))
    sides = {True: [], False: []}
    for point, point_flows, path in zip(captures, by_point, paths, strict=True):
        if path is not None:
            sides[point["network"] in server_side].append(_packets(directory / path, point_flows, index))
    _match_stream(events, heapq.merge(*sides[True], key=lambda item: item[0]), match)
    for point_packets in sides[False]:
        for _ts, _flow, i, packet in point_packets:
            packet.payload = b""
            packets.add(i, _packet_json(packet))
    notes = {"off": ["no-capture"], "missing": ["no-capture"], "damaged": ["capture-damaged"]}.get(rows_status, [])
    flags = _annotate(conversations, sockets, server_flows, notes, rows_status in ("ok", "damaged"), leaks,
                      near, near_flows, network_of)
    owners = {id(s.flow): s for s in sockets if s.flow is not None}
    owners.update({id(flow): sock for sock in sockets if (flow := near.get(id(sock))) is not None})
    flows_json = []
    for i, flow in enumerate(flows):
        data = _flow_json(flow, owners.get(id(flow)), network_of[id(flow)], network_of[id(flow)] in server_side)
        data["packets_list"] = FlowItems(packets, i)
        flows_json.append(data)
    return {
        "v": VERSION,
        "capture": capture,
        "flows": flows_json,
        "messages": Messages(events, sockets, known_until, followed),
        "flags": flags,
    }


def _packets(path: Path, flows: list[Flow], index: dict[int, int]) -> Iterator[tuple[float, Flow, int, WirePacket]]:
    """A capture's packets read again, each with its flow (as the first reading made it) and
    that flow's place in wire.json: the same file gives the same flows in the same order."""
    table = FlowTable(keep=False)
    add = table.add
    for batch in iter_capture(path, Capture()):
        for packet in batch:
            flow, wire = add(packet)
            mine = flows[flow.index]
            yield wire.ts, mine, index[id(mine)], wire


def _match_stream(events: Iterable[Record], packets: Iterator[tuple], match: StreamMatch) -> None:
    """The clients' records and the packets into `match`, whichever is earlier first."""
    pending = next(packets, None)
    for record in select(events, "client"):
        try:
            t = record_time(record)
        except (KeyError, TypeError, ValueError):  # no usable time: it moves the stream on no further
            t = float("-inf")
        while pending is not None and pending[0] <= t:
            match.packet(*pending[1:])
            pending = next(packets, None)
        match.record(record)
    while pending is not None:
        match.packet(*pending[1:])
        pending = next(packets, None)
    match.finish()


class Messages:
    """wire.json's `messages`, listed again each time they are iterated: first the sends of the
    sockets matched with a flow (settled as the stream was matched, kept on disk: `followed`),
    then the others', derived again from the records (lab.wire.join.unfollowed_sends), so none
    is held in memory."""

    def __init__(self, events: Iterable[Record], sockets: list[Socket], known_until: float | None,
                 followed: Lines | None = None) -> None:
        self.events, self.sockets, self.known_until, self.followed = events, sockets, known_until, followed

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.followed is not None:
            yield from self.followed
        if any(not sock.follow for sock in self.sockets):
            for sock, send in unfollowed_sends(self.events, self.sockets, self.known_until):
                yield _message_json(sock, send)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The index-th message (read up to it): for a quick look, not for going through them."""
        found = next(itertools.islice(iter(self), index, None), None)
        if found is None:
            raise IndexError(index)
        return found


def _read_point(directory: Path, network: str, name: str, server_side: bool, helper: dict[str, Any],
                capture_on: bool) -> dict[str, Any]:
    """One capture point (a network's bridge): its file read into flows, with what the helper said."""
    point: dict[str, Any] = {
        "network": network, "side": "server" if server_side else "client", "file": f"{CAPTURE_DIR}/{name}",
        "interface": None, "status": "ok", "reason": None, "packets": 0, "in_flows": 0, "other": 0,
        "undecodable": 0, "damage": None, "kernel_dropped": None, "interface_dropped": None,
        "parse_seconds": None, "flows": [], "known_until": None,
    }
    point.update(helper)
    pcap = directory / CAPTURE_DIR / name
    if not capture_on:
        point.update(status="off", reason="capture turned off (scenario `capture: false` or --no-capture)", file=None)
    elif not pcap.is_file():
        point.update(status="missing", reason=f"no {point['file']}: the capture helper did not write one "
                     "(its records are in records/capture.jsonl)", file=None)
    else:
        started = time.perf_counter()
        read = Capture()
        table = FlowTable(keep=False)  # the flows' numbers only: their packets are read again later
        add, in_flows, last = table.add, 0, 0.0
        try:
            with no_collection():
                for batch in iter_capture(pcap, read):
                    for packet in batch:
                        add(packet)
                    in_flows += len(batch)
                    last = batch[-1].ts
        except (OSError, ValueError) as exc:
            point.update(status="missing", reason=f"{point['file']} is not a readable capture: {exc}")
        else:
            point["flows"], point["path"] = table.flows, f"{CAPTURE_DIR}/{name}"
            point.update(packets=read.records, in_flows=in_flows, other=read.other,
                         undecodable=read.undecodable, damage=read.damage)
            if read.damage:
                point.update(status="damaged", reason=f"the capture ends early: {read.damage['detail']} "
                             f"after {read.damage['after_packets']} packets", known_until=last)
        point["parse_seconds"] = round(time.perf_counter() - started, 4)
    return point


def _worst(captures: list[dict[str, Any]]) -> dict[str, Any]:
    rank = {"ok": 0, "damaged": 1, "missing": 2, "off": 3}
    return max(captures, key=lambda p: rank[p["status"]])


def _overall(captures: list[dict[str, Any]], capture_on: bool) -> dict[str, Any]:
    """wire.json's `capture`: the worst status of the capture points, their counts summed, and
    each point in `points` (one for a run with one network)."""
    worst = _worst(captures)
    server = next(p for p in captures if p["side"] == "server")
    points = [dict(p) for p in captures]

    def total(key: str) -> Any:
        values = [p[key] for p in captures if p[key] is not None]
        return round(sum(values), 4) if values else None

    capture = {
        "status": worst["status"], "reason": "; ".join(p["reason"] for p in captures if p["reason"]) or None,
        "file": server["file"], "interface": server["interface"], "point": "bridge",
        "packets": total("packets"), "in_flows": total("in_flows"), "other": total("other"),
        "undecodable": total("undecodable"), "damage": next((p["damage"] for p in captures if p["damage"]), None),
        "kernel_dropped": total("kernel_dropped"), "interface_dropped": total("interface_dropped"),
        "parse_seconds": total("parse_seconds"), "points": points,
    }
    if not capture_on:
        capture["reason"] = worst["reason"]
    return capture


def _claim_near(sockets: list[Socket], flows: list[Flow]) -> dict[int, Flow]:
    """Each socket's flow on its own network, when that is not the server's (by id of the
    socket): the one with its own address that began last by the time it opened."""
    by_address: dict[tuple[str, str], list[Flow]] = {}
    for flow in flows:
        by_address.setdefault((flow.proto, flow.client), []).append(flow)
        by_address.setdefault((flow.proto, flow.server), []).append(flow)
    near: dict[int, Flow] = {}
    for sock in sockets:
        candidates = by_address.get((sock.proto, sock.address))
        if candidates:
            started = [f for f in candidates if f.first_ts is not None and f.first_ts <= sock.opened + 1.0]
            near[id(sock)] = (started or candidates)[-1]
    return near


def _helper_report(events: list[Record]) -> dict[str, dict[str, Any]]:
    """Each capture's interface and tcpdump's drop counters, from the helper's records, by file name."""
    found: dict[str, dict[str, Any]] = {}
    for record in select(events, ROLE):
        point = found.setdefault(Path(str(record.get("file") or "")).name, {})
        if record.get("interface"):
            point["interface"] = record["interface"]
        if record.get("event") == "summary":
            point["kernel_dropped"] = record.get("kernel_dropped")
            point["interface_dropped"] = record.get("interface_dropped", 0 if "kernel_dropped" in record else None)
    return found


def _annotate(conversations: list, sockets: list[Socket], flows: list[Flow], notes: list[str],
              have_capture: bool, leaks: list[tuple[Socket, Flow]] = (), near: dict[int, Flow] | None = None,
              near_flows: list[Flow] = (), network_of: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Wire columns on every row, a row for every unclaimed flow; the disagreements as a list.
    `flows` are the server's side; `near` each socket's flow on its own network (by id of the
    socket) and `near_flows` all flows on the clients' networks. `leaks`: a masqueraded socket's
    packets seen beyond the router untranslated (claim_flows)."""
    from lab.logs import Conversation

    near = near or {}
    network_of = network_of or {}
    by_address = {(s.proto, s.address): s for s in sockets}
    claimed = {id(s.flow) for s in sockets if s.flow is not None} | {id(flow) for _sock, flow in leaks}
    claimed |= {id(flow) for flow in near.values()}
    leaked = {id(sock): flow for sock, flow in leaks}
    flows_by_address = {}
    for flow in flows:
        flows_by_address.setdefault((flow.proto, flow.client), flow)
        flows_by_address.setdefault((flow.proto, flow.server), flow)
    flags: list[dict[str, Any]] = []
    for conv in conversations:
        address = row_address(conv.client_ip, conv.client_port) or (normal_addr(conv.server_saw) if conv.server_saw else None)
        sock = by_address.get((conv.proto, address))
        flow = sock.flow if sock is not None else flows_by_address.get((conv.proto, address))
        if flow is None and conv.flag == "nat" and conv.server_saw:
            # Captured on the server's side of the router: the flow carries the translated address.
            flow = flows_by_address.get((conv.proto, normal_addr(conv.server_saw)))
            claimed.add(id(flow))
        if sock is None and flow is not None:
            claimed.add(id(flow))  # a server-only row: the server's peer is on the wire
        conv.wire = wire_row(flow, sock, notes) if have_capture or flow else {"wire_flag": "+".join(notes)}
        if sock is not None and (own := near.get(id(sock))) is not None:
            # The same socket on its own network, before the router: its own address there.
            mine = own.client == sock.address
            conv.wire.update(wire_client_near=own.client if mine else own.server,
                             wire_server_near=own.server if mine else own.client,
                             wire_network_near=network_of.get(id(own)))
        if sock is None and flow is not None:
            conv.wire["wire_flag"] = conv.wire["wire_flag"].replace("wire-only", "").strip("+") or "ok"
        if sock is not None and id(sock) in leaked:
            conv.wire["wire_flag"] = "+".join(f for f in (conv.wire["wire_flag"], "untranslated") if f != "ok")
        for flag in conv.wire["wire_flag"].split("+"):
            if flag == "untranslated":
                leak = leaked[id(sock)]
                packets = leak.count(C2S if leak.client == sock.address else S2C)
                flags.append({"kind": flag, "client": conv.client, "proto": conv.proto, "address": address,
                              "flow": leak.id, "detail": f"{packets} packet(s) of this socket crossed the wire "
                              "with its own address: a router forwarded them without NAT"})
            elif flag not in ("ok", "no-capture", "capture-damaged"):
                flags.append({"kind": flag, "client": conv.client, "proto": conv.proto, "address": address,
                              "flow": flow.id if flow else None})
    containers = {conv.client_ip: conv.client for conv in conversations if conv.client != "?"}
    # A routed flow (no NAT) crosses the wire on both sides of its router with the same addresses:
    # the server's side stands for both, whether claimed or not.
    server_side = {(flow.proto, flow.client, flow.server) for flow in flows}
    unclaimed = [*flows, *(flow for flow in near_flows if (flow.proto, flow.client, flow.server) not in server_side)]
    for flow in unclaimed:
        if id(flow) in claimed:
            continue
        host = flow.client.rsplit(":", 1)[0].strip("[]")
        other = _not_a_conversation(flow, containers.get(host))
        if other is not None:
            # Flagged with who sent it (the flow left that container's namespace), but no row:
            # the table is one row per socket a program talked on.
            flags.append({**other, "network": network_of.get(id(flow))})
            continue
        row = Conversation(client="?", client_ip=host, proto=flow.proto, session=None,
                           client_port=int(flow.client.rsplit(":", 1)[1]), server_saw=None, flag="wire-only")
        row.wire = wire_row(flow, None, notes)
        conversations.append(row)
        flags.append({"kind": "wire-only", "client": None, "proto": flow.proto, "address": flow.client, "flow": flow.id,
                      "network": network_of.get(id(flow)), "detail": "a flow no client or server record claims"})
    return flags


def _not_a_conversation(flow: Flow, client: str | None) -> dict[str, Any] | None:
    """An unclaimed flow that is not a conversation: a name lookup that Docker's DNS forwarded
    from a container (port 53), or a client's connection attempt that carried no byte either way
    (refused or unanswered, e.g. while the server restarts: the client logs the attempt, not the
    socket). None for anything else, which stays a `wire-only` row."""
    base = {"client": client, "proto": flow.proto, "address": flow.client, "flow": flow.id}
    if flow.server.rsplit(":", 1)[1] == "53":
        return {"kind": "resolver", **base,
                "detail": "a name lookup forwarded by Docker's DNS from this container, not a conversation of the lab"}
    if client is not None and flow.proto == "tcp" and not flow.payload_bytes(C2S) and not flow.payload_bytes(S2C):
        how = "refused" if flow.rst[S2C] else "not answered"
        return {"kind": "connect-attempt", **base,
                "detail": f"a connection attempt from {client}'s container that carried no data ({how})"}
    return None


def _flow_json(flow: Flow, owner: Socket | None, network: str, server_side: bool) -> dict[str, Any]:
    data = flow_summary(flow)
    data["network"], data["side"] = network, "server" if server_side else "client"
    data["owner"] = {"client": owner.client, "session": owner.session, "local": owner.address} if owner else None
    data["first_ts"], data["last_ts"] = iso(data["first_ts"]), iso(data["last_ts"])
    if data["tcp"]:
        tcp = data["tcp"]
        for key in ("syn_ts", "synack_ts", "ack_ts"):
            tcp[key] = iso(tcp[key])
        tcp["fin"] = {d: iso(t) for d, t in tcp["fin"].items()}
        tcp["rst"] = {d: iso(t) for d, t in tcp["rst"].items()}
    return data


def _packet_json(p: WirePacket) -> dict[str, Any]:
    return {"ts": iso(p.ts), "dir": p.dir, "flags": p.flags, "seq": p.seq, "ack": p.ack, "len": p.len,
            "retrans": p.retrans, "msg": p.msg}


def _message_json(sock: Socket, send) -> dict[str, Any]:
    return {
        "client": sock.client, "proto": sock.proto, "session": sock.session, "seq": send.seq, "attempt": send.attempt,
        "local": sock.address, "sent_ts": iso(send.sent_ts), "replied": send.replied, "reply_ts": iso(send.reply_ts),
        "request_ts": [iso(p.ts) for p in send.request], "echo_ts": [iso(p.ts) for p in send.echo],
        "retransmissions": send.retransmissions, "where": send.where,
    }


def drop_details(view: dict[str, Any]) -> list[str]:
    """Lines for the run's verdict details: a capture that lost packets, or has none, says so."""
    capture = view["capture"]
    details = []
    dropped = {k: capture.get(k) or 0 for k in ("kernel_dropped", "interface_dropped")}
    if any(dropped.values()):
        details.append(f"capture: {dropped['kernel_dropped']} packets dropped by the kernel, "
                       f"{dropped['interface_dropped']} by the interface: the wire view misses them")
    if capture["status"] in ("missing", "damaged"):
        details.append(f"capture {capture['status']}: {capture['reason']}")
    return details
