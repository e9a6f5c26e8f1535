"""The measured numbers, each computed in one place, and the generic `metric` kind over them.

The named kinds (`loss`, `distinct_peers`, ...) call the same functions as the `metric` table
here, so a number means the same whichever way a scenario asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lab.expect import query as q
from lab.expect.base import Bounded, Number, Scoped, num, pct, range_text, within
from lab.expect.query import Record


def socket_owners(events: list[Record], proto: str | None,
                  services: Sequence[str] | None = None) -> dict[tuple[str, str], list[str]]:
    """(proto, client address) -> the clients whose sockets had it, one entry per socket."""
    owners: dict[tuple[str, str], list[str]] = {}
    for rec in q.client_sockets(events, proto, services):
        owners.setdefault((rec["proto"], q.client_address(rec)), []).append(q.who(rec))
    return owners


def distinct_peers(events: list[Record], proto: str | None) -> set[tuple[str, str]]:
    """(proto, address) of every peer the server accepted (TCP) or received from (UDP)."""
    return {(p, addr) for p, addr, _ in q.server_peers(events, proto)}


def unmatched_addresses(events: list[Record], proto: str) -> tuple[list[str], int]:
    """Addresses seen by only one side, and how many addresses there were at all."""
    clients = {(r["proto"], q.client_address(r)): q.who(r) for r in q.client_sockets(events, proto)}
    servers = distinct_peers(events, proto)
    only_client = [f"{who} {p} {addr}: server never saw it" for (p, addr), who in clients.items()
                   if (p, addr) not in servers]
    only_server = [f"server saw {p} {addr}: no client had it" for p, addr in sorted(servers - clients.keys())]
    return only_client + only_server, len(clients.keys() | servers)


def concurrency(events: list[Record]) -> tuple[int, int]:
    """Most TCP connections open at once on one server, and how many it accepted in all."""
    spans = q.server_connection_spans(events)
    return q.max_concurrent(spans), len(spans)


# --- the generic form: one named number within bounds -------------------------------------------

def _rtt(p: float):
    def measure(events, proto, services):
        rtts = q.reply_rtts(events, proto, services)
        return q.percentile(rtts, p) if rtts else None
    return measure


def _unmatched(events, proto, services):
    unmatched, total = unmatched_addresses(events, proto)
    return float(len(unmatched)) if total else None


def _count(role: str, event: str, clients_only: bool = True):
    def measure(events, proto, services):
        return float(sum(1 for _ in q.select(events, role, event, proto, services if clients_only else None)))
    return measure


def _loss(events, proto, services):
    tally = q.message_tally(events, proto, services)
    return tally.unanswered / tally.sends if tally.sends else None


def _some(value: float) -> float | None:
    return value or None


# name -> (what it is, unit, measure(events, proto, services) -> value or None when there is no data)
METRICS = {
    "messages": ("client sends", "", lambda e, p, s: _some(q.message_tally(e, p, s).sends)),
    "loss": ("fraction of sends without a reply", "%", _loss),
    "rtt_p50_ms": ("median round-trip time", " ms", _rtt(50)),
    "rtt_p95_ms": ("95th percentile round-trip time", " ms", _rtt(95)),
    "rtt_max_ms": ("largest round-trip time", " ms", _rtt(100)),
    "client_sockets": ("client connected/bound records", "", lambda e, p, s: _some(len(q.client_sockets(e, p, s)))),
    "distinct_ports": ("distinct client addresses", "",
                       lambda e, p, s: _some(len({addr for _, addr in socket_owners(e, p, s)}))),
    "distinct_peers": ("distinct peers the server saw", "", lambda e, p, s: _some(len(distinct_peers(e, p)))),
    "connections": ("tcp connections the server accepted", "", _count("server", "accepted", False)),
    "concurrency": ("most tcp connections open at once", "", lambda e, p, s: concurrency(e)[0] or None),
    "reconnects": ("client reconnect attempts", "", _count("client", "reconnect")),
    "timeouts": ("client timeouts", "", _count("client", "timeout")),
    "errors": ("error records from any program", "", lambda e, p, s: float(len(
        [r for r in e if r.get("event") == "error" and (p in (None, "any") or r.get("proto") == p)]))),
    "unmatched": ("addresses seen by only one side", "", _unmatched),
}
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]


class Metric(Scoped, Bounded):
    """Any number from METRICS within `min`/`max`; percentages like '5%' are accepted."""

    check: Literal["metric"]
    metric: MetricName
    min: Number | None = None
    max: Number | None = None
    equals: Number | None = None

    def _fmt(self, x: float) -> str:
        return pct(x) if METRICS[self.metric][1] == "%" else num(round(x, 3)) + METRICS[self.metric][1]

    def title(self) -> str:
        return f"{self._scope()}{self.metric} {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds, self._fmt)

    def evaluate(self, events):
        value = METRICS[self.metric][2](events, self.proto, self._services())
        if value is None:
            return self._no_data(f"nothing to measure {METRICS[self.metric][0]} from")
        return self._result(within(value, *self.bounds), self._fmt(value), value=float(value))
