"""The two socket views of programs that print no records, derived from what was observed.

A learner's program prints what it likes. The lab still knows its sockets from three places:
the socket-table watcher beside each host (`role: sockets`: `listen`, `bound`, `open`), the
program's own socket calls (`role: program`, `socket` records from the launcher) and the lines
it printed (`output`, with the addresses `printed.addresses_in` finds). `derive_views` turns
them into the same records the lab's echo programs write (`connected`/`bound` for a client,
`accepted`/`received` for the server) with a `source` field saying where each came from, so
the ordinary join flags them like any other conversation.

Order of trust: the socket table (the kernel's own word) first; the printed output fills what
the table could not catch (a UDP conversation between two samples, the peer a UDP server
printed for each datagram).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lab.expect import Record, normal_addr, port_of
from lab.programs.printed import addresses_in

SOCKET_TABLE = "socket-table"
PRINTED = "printed"
DNS_PORT = 53  # the resolver's sockets are not the conversation
DOCKER_DNS = "127.0.0.11"  # Docker's embedded DNS server listens in every container's namespace


def _host(record: Record) -> str:
    """The host a learner record is about: the watcher's and launcher's `host` (`$LAB_NAME`)."""
    return str(record.get("host") or record.get("service") or "?")


def _ip(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def _loopback_or_wild(address: str) -> bool:
    host = _ip(address)
    return host.startswith("127.") or host in ("::1", "0.0.0.0", "::")


def derive_views(records: Iterable[Record], server: str = "server", ips: dict[str, str] | None = None) -> list[Record]:
    """Echo-style records (client `connected`/`bound`, server `accepted`/`received`) derived
    from the watcher's and the launcher's records of a run; sorted by time."""
    ips = dict(ips or {})
    learner = [r for r in records if r.get("role") in ("sockets", "program")
               and _ip(str(r.get("local") or "")) != DOCKER_DNS]
    for r in learner:
        if r.get("ip"):
            ips.setdefault(_host(r), r["ip"])
    listening = {("tcp", port_of(r["local"])) for r in learner
                 if r.get("role") == "sockets" and r.get("event") == "listen" and _host(r) == server}
    listening |= {("udp", port_of(r["local"])) for r in learner
                  if r.get("role") == "sockets" and r.get("event") == "bound" and _host(r) == server}
    out: list[Record] = []
    seen: set[tuple[str, str, str]] = set()  # (host, proto, address) already derived
    sessions: dict[tuple[str, str], int] = {}
    conns = 0

    def add(host: str, role: str, event: str, proto: str, source: str, ts: str, **fields: Any) -> None:
        address = fields.get("peer") if role == "server" else fields.get("local_route") or fields.get("local")
        key = (host, proto, normal_addr(address, ips.get(host)))
        if key in seen:
            return
        seen.add(key)
        if role == "client":
            fields["session"] = sessions[(host, proto)] = sessions.get((host, proto), -1) + 1
        out.append({"v": 1, "ts": ts, "host": host, "service": host, "role": role, "proto": proto,
                    "event": event, "source": source, **({"ip": ips[host]} if host in ips else {}), **fields})

    for r in learner:
        if r.get("role") != "sockets":
            continue
        host, proto, event = _host(r), r.get("proto"), r.get("event")
        if host == server:
            if proto == "tcp" and event == "open" and ("tcp", port_of(r["local"])) in listening:
                conns += 1
                add(host, "server", "accepted", "tcp", SOCKET_TABLE, r["ts"], local=r["local"], peer=r["peer"], conn=conns)
            continue
        if event == "open" and proto == "tcp" and not _loopback_or_wild(r["peer"]):
            add(host, "client", "connected", "tcp", SOCKET_TABLE, r["ts"], local=r["local"], peer=r["peer"])
        elif event == "bound" and proto == "udp" and not _ip(r["local"]).startswith("127."):
            local = r["local"]
            fields = {"local": local}
            if _ip(local) in ("0.0.0.0", "::") and host in ips:
                fields["local_route"] = f"{ips[host]}:{port_of(local)}"
            add(host, "client", "bound", "udp", SOCKET_TABLE, r["ts"], **fields)
        elif event == "open" and proto == "udp" and port_of(r["peer"]) != DNS_PORT and not _loopback_or_wild(r["peer"]):
            add(host, "client", "bound", "udp", SOCKET_TABLE, r["ts"], local=r["local"], peer=r["peer"])

    tcp_peers = {normal_addr(r["peer"]) for r in out if r["role"] == "server"}
    for r in learner:
        if r.get("role") != "program" or r.get("event") != "output" or not r.get("text"):
            continue
        host, own = _host(r), ips.get(_host(r))
        for found in addresses_in(str(r["text"])):
            address = found.address
            if host == server:
                if _ip(address) == own or _loopback_or_wild(address) or port_of(address) in {p for _, p in listening}:
                    continue  # its own address, not a client's
                served = {kind for kind, _ in listening}
                proto = "tcp" if normal_addr(address) in tcp_peers or "udp" not in served else "udp"
                add(host, "server", "accepted" if proto == "tcp" else "received", proto, PRINTED, r["ts"],
                    peer=address, line=r["text"])
            elif _ip(address) in (own, "0.0.0.0", "::") and port_of(address) != 0:
                # Its own socket (getsockname): which protocol is told by what it asked for.
                proto = _proto_asked(learner, host)
                fields: dict[str, Any] = {"local": address, "line": r["text"]}
                if _ip(address) in ("0.0.0.0", "::") and own:
                    fields["local_route"] = f"{own}:{port_of(address)}"
                add(host, "client", "connected" if proto == "tcp" else "bound", proto, PRINTED, r["ts"], **fields)
    out += _summaries(learner, server, out)
    out.sort(key=lambda rec: rec["ts"])
    return out


def _summaries(learner: list[Record], server: str, derived: list[Record]) -> list[Record]:
    """A client program's exit as the `summary` the echo client would print: ok when it exited
    0, one per protocol it used, so `clients_ok` judges a learner's clients like the lab's."""
    out = []
    for r in learner:
        if r.get("role") != "program" or r.get("event") != "exited" or _host(r) == server:
            continue
        host = _host(r)
        protos = sorted({d["proto"] for d in derived if d["service"] == host}) or [_proto_asked(learner, host)]
        code = r.get("code")
        reason = None if code == 0 else (f"killed by {r['signal']}" if r.get("signal") else f"exited with code {code}")
        for proto in protos:
            out.append({"v": 1, "ts": r["ts"], "host": host, "service": host, "role": "client", "proto": proto,
                        "event": "summary", "ok": code == 0, "reason": reason, "source": "program"})
    return out


def _proto_asked(learner: list[Record], host: str) -> str:
    """tcp when the program connected a stream socket, else the protocol of its socket calls."""
    protos = [r.get("proto") for r in learner
              if r.get("role") == "program" and r.get("event") == "socket" and _host(r) == host]
    return "tcp" if "tcp" in protos or not protos else str(protos[0])
