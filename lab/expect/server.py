"""Expectations on addresses and on how the server served: the two views of each conversation.

The client's `connected`/`bound` record carries its own address (getsockname); the server's
`accepted`/`received` carries the peer. These kinds compare the two, and the server's accept
order and timing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lab.expect import query as q
from lab.expect.base import BaseExpectation, Bounded, Count, Millis, ProtoFilter, Scoped, listed, num, range_text, within
from lab.expect.metrics import concurrency, distinct_peers, socket_owners, unmatched_addresses
from lab.expect.query import Record

# --- address checks: the client's getsockname() view against the server's accept/recvfrom view ---

class DistinctPorts(Scoped):
    """Every client socket (sessions, reconnects, clients) had its own (ip, port)."""

    check: Literal["distinct_ports"]

    def title(self) -> str:
        return f"every {self._scope()}client socket has its own address{self._suffix()}"

    def expected(self) -> str:
        return "no address used twice"

    def evaluate(self, events):
        seen = socket_owners(events, self.proto, self._services())
        if not seen:
            return self._no_data(f"no {self._scope()}connected/bound record")
        total = sum(len(v) for v in seen.values())
        dups = [f"{p} {addr} used by {', '.join(names)}" for (p, addr), names in seen.items() if len(names) > 1]
        return self._result(not dups, f"{len(seen)} distinct of {total} sockets", listed(dups),
                            float(total - len(seen)))


class ViewsAgree(BaseExpectation):
    """Each client's own address appears as a peer at the server, and each server peer is a client."""

    check: Literal["views_agree"]
    proto: ProtoFilter = "any"
    max_unmatched: Count = 0

    def title(self) -> str:
        scope = "" if self.proto == "any" else f" ({self.proto})"
        return f"client and server views agree{scope}"

    def expected(self) -> str:
        return "every address seen by both sides" if self.max_unmatched == 0 else f"at most {self.max_unmatched} unmatched"

    def evaluate(self, events):
        unmatched, total = unmatched_addresses(events, self.proto)
        if total == 0:
            return self._no_data("no client socket and no server peer")
        return self._result(len(unmatched) <= self.max_unmatched, f"{len(unmatched)} unmatched of {total}",
                            listed(unmatched), float(len(unmatched)))


# --- server-side checks ---------------------------------------------------------------------------

class DistinctPeers(Bounded, BaseExpectation):
    """How many distinct peer addresses the server accepted (TCP) or received from (UDP)."""

    check: Literal["distinct_peers"]
    proto: ProtoFilter = "any"
    family: Literal["ipv4", "ipv6", "any"] = Field(
        "any", description="count only IPv4 peers (IPv4-mapped ones included) or only IPv6 ones")
    min: Count | None = None
    max: Count | None = None
    equals: Count | None = None

    def title(self) -> str:
        scope = "" if self.proto == "any" else f"{self.proto} "
        scope += "" if self.family == "any" else f"{self.family} "
        return f"server saw {self.expected()} distinct {scope}peers"

    def expected(self) -> str:
        return range_text(*self.bounds)

    def evaluate(self, events):
        peers = {(p, addr) for p, addr in distinct_peers(events, self.proto)
                 if self.family == "any" or q.family_of(addr) == self.family}
        if not peers:
            scope = "" if self.family == "any" else f" over {self.family}"
            return self._no_data(f"the server accepted or received nothing{scope}")
        return self._result(within(len(peers), *self.bounds), f"{len(peers)} peers", value=float(len(peers)))


class Concurrency(Bounded, BaseExpectation):
    """Most TCP connections the server had accepted and not yet closed at one moment."""

    check: Literal["concurrency"]
    min: Count | None = None
    max: Count | None = None

    def title(self) -> str:
        plural = "" if self.bounds == (1, 1) or self.bounds == (None, 1) else "s"
        return f"server served {self.expected()} tcp client{plural} at once"

    def expected(self) -> str:
        return range_text(*self.bounds)

    def evaluate(self, events):
        most, accepted = concurrency(events)
        if not accepted:
            return self._no_data("the server accepted no tcp connection")
        return self._result(within(most, *self.bounds), f"{most} at once ({accepted} connections)",
                            value=float(most))


def _accept_pairs(events: list[Record], services) -> list[tuple[str, str, str]]:
    """(client label, client connected ts, server accepted ts) per TCP socket, by connect time."""
    accepted: dict[str, str] = {}
    for _, addr, rec in q.server_peers(events, "tcp"):
        accepted.setdefault(addr, rec["ts"])
    pairs = []
    for rec in q.client_sockets(events, "tcp", services):
        addr = q.client_address(rec)
        if addr in accepted:
            label = q.who(rec) + (f" s{rec['session']}" if rec.get("session") else "")
            pairs.append((label, rec["ts"], accepted[addr]))
    return sorted(pairs, key=lambda p: q.parse_ts(p[1]))


class AcceptedInOrder(Scoped):
    """The server accepted TCP clients in the order they connected (a FIFO accept queue)."""

    check: Literal["accepted_in_order"]
    proto: Literal["tcp"] = "tcp"
    tolerance_ms: Millis = Field(10, description="Connects closer than this count as simultaneous")

    def title(self) -> str:
        return f"clients accepted in the order they connected{self._suffix()}"

    def expected(self) -> str:
        return "0 out-of-order pairs"

    def evaluate(self, events):
        pairs = _accept_pairs(events, self._services())
        if len(pairs) < 2:
            return self._no_data(f"{len(pairs)} tcp client(s) matched to an accept; need 2")
        bad = [f"{a[0]} connected before {b[0]} but was accepted after"
               for i, a in enumerate(pairs) for b in pairs[i + 1:]
               if q.ms_between(a[1], b[1]) > self.tolerance_ms and q.ms_between(b[2], a[2]) > 0]
        return self._result(not bad, f"{len(bad)} out-of-order pairs of {len(pairs)} clients", listed(bad),
                            float(len(bad)))


class AcceptWaitGrows(Scoped):
    """Each client the server accepted later had waited longer since its connect (a queue)."""

    check: Literal["accept_wait_grows"]
    proto: Literal["tcp"] = "tcp"
    tolerance_ms: Millis = Field(100, description="A wait may be this much shorter than the one before")
    min_growth_ms: Millis = Field(200, description="The last client waits at least this much longer than the first")

    def title(self) -> str:
        return f"accept wait grows for later clients{self._suffix()}"

    def expected(self) -> str:
        return f"non-decreasing (±{num(self.tolerance_ms)} ms), growing by at least {num(self.min_growth_ms)} ms"

    def evaluate(self, events):
        # In accept order: connects within a millisecond of each other may be logged in either order.
        pairs = sorted(_accept_pairs(events, self._services()), key=lambda p: q.parse_ts(p[2]))
        if len(pairs) < 2:
            return self._no_data(f"{len(pairs)} tcp client(s) matched to an accept; need 2")
        waits = [max(0.0, q.ms_between(conn, acc)) for _, conn, acc in pairs]
        drops = [f"{pairs[i][0]} waited {waits[i]:.0f} ms, less than {pairs[i - 1][0]} ({waits[i - 1]:.0f} ms)"
                 for i in range(1, len(waits)) if waits[i] < waits[i - 1] - self.tolerance_ms]
        growth = waits[-1] - waits[0]
        if growth < self.min_growth_ms:
            drops.append(f"last wait only {growth:.0f} ms longer than the first")
        measured = "waits " + ", ".join(f"{w:.0f}" for w in waits) + " ms"
        return self._result(not drops, measured, listed(drops), growth)
