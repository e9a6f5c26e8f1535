"""The classic mistakes of a multi-host socket program, each explained in one line with its fix.

Every diagnosis rests on something observed, never on a guess: the socket table of each host
(the watcher's `listen`/`bound`/`open`/`owned`/`queued`/`closed` records), the program's own
socket calls (the launcher's `socket` records: the address it asked to bind, connect or send
to), and the wire (`wire.json`: SYNs answered by RST, empty datagrams). Each names the host,
the socket and the fix:

| kind | seen as |
|---|---|
| `loopback-listener` | the server's socket listens (or is bound) on 127.0.0.1 / ::1 only |
| `client-to-loopback` | a client connects or sends to 127.0.0.1 / ::1: its own container |
| `nothing-listening` | clients use a port on which the server has no socket at all |
| `connection-refused` | a client's SYN was answered by RST on the wire |
| `one-at-a-time` | connections waited in the listen queue until the server finished the one before |
| `udp-stops-on-empty` | an empty datagram reached the server and its UDP socket closed after it |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from lab.expect import Record, port_of

DOCKER_DNS = "127.0.0.11"
QUEUE_WAIT_S = 1.0  # a connection not accepted for this long is waiting for the server, not the kernel


@dataclass(frozen=True)
class Diagnosis:
    """One mistake found: what kind, on which host and socket, and the sentence a learner reads."""

    kind: str
    host: str
    socket: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _host(record: Record) -> str:
    return str(record.get("host") or record.get("service") or "?")


def _ip(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def _loopback(address: str) -> bool:
    host = _ip(address)
    return host.startswith("127.") or host == "::1"


def _docker_dns(address: str) -> bool:
    """Docker's embedded DNS server listens inside every container's namespace on 127.0.0.11."""
    return _ip(address) == DOCKER_DNS


def _time(ts: str) -> dt.datetime:
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def _clock(ts: str) -> str:
    return ts[11:23]


def diagnose(records: Iterable[Record], wire: dict | None = None, *, server: str = "server",
             clients_by_address: dict[str, str] | None = None) -> list[Diagnosis]:
    """Every diagnosis for a run, in a stable order (by kind, then host).

    `records`: the run's records (only `sockets` and `program` ones are read). `wire`: the
    run's `wire.json` when there was a capture. `clients_by_address`: `ip:port` -> client
    name, from the joined views, to name the client behind an address."""
    learner = [r for r in records if r.get("role") in ("sockets", "program")]
    names = dict(clients_by_address or {})
    found: list[Diagnosis] = []
    found += _loopback_listener(learner, server)
    found += _client_to_loopback(learner, server)
    found += _nothing_listening(learner, server, wire)
    found += _connection_refused(wire, names)
    found += _one_at_a_time(learner, server, names)
    found += _udp_stops_on_empty(learner, server, wire, names)
    unique = {(d.kind, d.host, d.socket): d for d in found}
    return sorted(unique.values(), key=lambda d: (d.kind, d.host, d.socket or ""))


def clients_by_address(conversations) -> dict[str, str]:
    """`ip:port` -> client name, from the joined conversation rows."""
    return {f"{c.client_ip}:{c.client_port}": c.client for c in conversations
            if c.client != "?" and c.client_port is not None}


def diagnosis_records(found: list[Diagnosis], ts: str) -> list[Record]:
    """Diagnoses as `lab` records for the run's timeline (and the `diagnosed` expectation)."""
    return [{"v": 1, "ts": ts, "host": "lab", "role": "lab", "proto": None, "event": "diagnosis",
             "kind": d.kind, "target": d.host, "socket": d.socket, "text": d.text} for d in found]


def _server_sockets(learner: list[Record], server: str) -> list[Record]:
    return [r for r in learner if r.get("role") == "sockets" and _host(r) == server
            and r.get("event") in ("listen", "bound") and not _docker_dns(r["local"])]


def _loopback_listener(learner: list[Record], server: str) -> list[Diagnosis]:
    listening = _server_sockets(learner, server)
    out = []
    for r in listening:
        if not _loopback(r["local"]):
            continue
        port, proto = port_of(r["local"]), r.get("proto")
        reachable = [o for o in listening if o.get("proto") == proto and port_of(o["local"]) == port
                     and not _loopback(o["local"])]
        if reachable:
            continue
        verb = "listens" if proto == "tcp" else "is bound"
        out.append(Diagnosis(
            "loopback-listener", server, r["local"],
            f"{server}: its {proto.upper()} socket {verb} on {r['local']} only, so other hosts cannot reach it; "
            f"bind to '' or '0.0.0.0' (all addresses) instead of '{_ip(r['local'])}'",
        ))
    return out


def _client_to_loopback(learner: list[Record], server: str) -> list[Diagnosis]:
    out = []
    for r in learner:
        if (r.get("role") == "program" and r.get("event") == "socket" and _host(r) != server
                and r.get("call") in ("connect", "sendto") and _loopback(str(r.get("address")))):
            host = _host(r)
            verb = "connects" if r["call"] == "connect" else "sends"
            out.append(Diagnosis(
                "client-to-loopback", host, str(r["address"]),
                f"{host}: {verb} to {r['address']}, which is {host}'s own container, not the server; "
                f"use the server's name ('{server}') or its address",
            ))
    return out


def _nothing_listening(learner: list[Record], server: str, wire: dict | None) -> list[Diagnosis]:
    if not any(r.get("role") == "sockets" and _host(r) == server for r in learner):
        return []  # the server's socket table was not watched: nothing to say
    ports = {(r.get("proto"), port_of(r["local"])) for r in _server_sockets(learner, server)}
    asked: dict[tuple[str, int], tuple[str, str]] = {}
    for r in learner:
        if (r.get("role") == "program" and r.get("event") == "socket" and _host(r) != server
                and r.get("call") in ("connect", "sendto") and not _loopback(str(r.get("address")))):
            asked.setdefault((str(r.get("proto")), port_of(str(r["address"]))), (_host(r), str(r["address"])))
    for flow in (wire or {}).get("flows", []):
        if flow.get("owner"):
            asked.setdefault((flow["proto"], port_of(flow["server"])), (flow["owner"]["client"], flow["server"]))
    out = []
    for (proto, port), (host, address) in sorted(asked.items()):
        if (proto, port) in ports:
            continue
        there = sorted(f"{p}/{q}" for p, q in ports)
        offer = f"; {server} has sockets on {', '.join(there)}" if there else f"; {server} has no socket at all"
        out.append(Diagnosis(
            "nothing-listening", server, f"{proto}/{port}",
            f"{server}: nothing listens on {proto.upper()} port {port}, which {host} uses ({address}){offer}; "
            f"start the server on port {port}, or point the clients at the port it uses",
        ))
    return out


def _connection_refused(wire: dict | None, names: dict[str, str]) -> list[Diagnosis]:
    out = []
    for flow in (wire or {}).get("flows", []):
        tcp = flow.get("tcp") or {}
        if flow.get("proto") != "tcp" or not (tcp.get("rst") or {}).get("s2c") or tcp.get("synack_ts"):
            continue
        host = (flow.get("owner") or {}).get("client") or names.get(flow["client"]) or flow["client"]
        out.append(Diagnosis(
            "connection-refused", host, flow["client"],
            f"{host}: its connection from {flow['client']} to {flow['server']} was refused (the SYN was answered "
            f"by RST on the wire): nothing accepts connections on that address and port",
        ))
    return out


def _one_at_a_time(learner: list[Record], server: str, names: dict[str, str]) -> list[Diagnosis]:
    opened: dict[str, str] = {}
    waits: list[tuple[float, str, str]] = []
    for r in learner:
        if r.get("role") != "sockets" or _host(r) != server or r.get("proto") != "tcp":
            continue
        if r.get("event") == "open" and not r.get("owned"):
            opened[r["peer"]] = r["ts"]
        elif r.get("event") == "owned" and r["peer"] in opened:
            waits.append(((_time(r["ts"]) - _time(opened.pop(r["peer"]))).total_seconds(), r["peer"], r["local"]))
    queued = max((int(r.get("queued") or 0) for r in learner if r.get("role") == "sockets" and _host(r) == server
                  and r.get("event") == "queued"), default=0)
    long = [w for w in waits if w[0] >= QUEUE_WAIT_S]
    if not long:
        return []
    wait, peer, local = max(long)
    who = names.get(peer, peer)
    return [Diagnosis(
        "one-at-a-time", server, local,
        f"{server}: accepts one client at a time: {len(long)} connection(s) waited in the listen queue "
        f"(up to {queued} at once), {who} for {wait:.1f} s before accept; serve each connection in its own "
        f"thread (or with selectors) to talk to several clients at once",
    )]


def _udp_stops_on_empty(learner: list[Record], server: str, wire: dict | None,
                        names: dict[str, str]) -> list[Diagnosis]:
    empties = []
    for flow in (wire or {}).get("flows", []):
        if flow.get("proto") != "udp":
            continue
        for packet in flow.get("packets_list") or []:
            if packet.get("dir") == "c2s" and packet.get("len") == 0:
                empties.append((packet["ts"], flow))
    closed = [r for r in learner if r.get("role") == "sockets" and _host(r) == server and r.get("proto") == "udp"
              and r.get("event") == "closed" and not _loopback(r["local"])]
    out = []
    for ts, flow in sorted(empties, key=lambda e: e[0]):
        after = [r for r in closed if port_of(r["local"]) == port_of(flow["server"]) and r["ts"] >= ts]
        if not after:
            continue
        host = (flow.get("owner") or {}).get("client") or names.get(flow["client"]) or flow["client"]
        out.append(Diagnosis(
            "udp-stops-on-empty", server, after[0]["local"],
            f"{server}: its UDP socket {after[0]['local']} closed at {_clock(after[0]['ts'])}, right after an empty "
            f"datagram from {host} ({flow['client']}) at {_clock(ts)}; an empty datagram is a valid UDP message, "
            f"so don't treat `not data` as the end (only TCP's recv returns b'' at the end)",
        ))
        break  # the server stopped once: later empties found no socket
    return out
