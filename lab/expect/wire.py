"""Expectations on the wire view: what the capture saw, beside what the programs logged.

They read the `wire` records the orchestrator adds for checking (lab/wire/records.py): one
`capture` record saying whether there is a wire view at all, one `flow` record per flow, one
`message` record per client send with `where` its round trip was lost. A run without a usable
capture has nothing to measure: these kinds then fail with the capture's reason, never pass.
"""

from __future__ import annotations

from typing import Literal

from lab.expect import query as q
from lab.expect.base import Bounded, Count, PercentileOfMillis, ProtoFilter, Scoped, num, range_text, within

WIRE = "wire"
# Where a round trip can be lost, as seen from the capture point (docs/wire.md).
LostPlace = Literal["request-not-on-wire", "no-echo-on-wire", "echo-not-received"]


def _wire(events, event: str, proto: str, services: tuple[str, ...] | None) -> list[q.Record]:
    """The wire's records of one kind, for one proto and (by owning client) some clients."""
    return [r for r in q.select(events, WIRE, event, proto) if not services or r.get("client") in services]


def _no_capture(events) -> str | None:
    """Why there is no wire view to measure, or None when there is one."""
    capture = next(iter(q.select(events, WIRE, "capture")), None)
    if capture is None:
        return "no wire view: the run recorded no capture"
    if capture.get("status") not in ("ok", "damaged"):
        return f"no wire view: {capture.get('reason') or capture.get('status')}"
    return None


class Retransmissions(Scoped, Bounded):
    """TCP segments the capture saw carrying bytes already sent, over every flow in scope."""

    check: Literal["retransmissions"]
    proto: ProtoFilter = "tcp"
    min: Count | None = None
    max: Count | None = None
    equals: Count | None = None

    def title(self) -> str:
        return f"{self._scope()}retransmissions on the wire {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds)

    def evaluate(self, events):
        why = _no_capture(events)
        if why:
            return self._no_data(why)
        flows = [f for f in _wire(events, "flow", self.proto, self._services()) if f.get("retransmissions") is not None]
        if not flows:
            return self._no_data(f"no {self._scope()}TCP flow on the wire")
        total = sum(f["retransmissions"] for f in flows)
        return self._result(within(total, *self.bounds), f"{total} in {len(flows)} flows", value=total)


class LostWhere(Scoped, Bounded):
    """How many round trips were lost at one place: before the wire, between the wire and back,
    or after the echo crossed the wire."""

    check: Literal["lost_where"]
    where: LostPlace
    proto: ProtoFilter = "udp"
    min: Count | None = None
    max: Count | None = None
    equals: Count | None = None

    def title(self) -> str:
        return f"{self._scope()}round trips lost as {self.where} {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds)

    def evaluate(self, events):
        why = _no_capture(events)
        if why:
            return self._no_data(why)
        sends = _wire(events, "message", self.proto, self._services())
        if not sends:
            return self._no_data(f"no {self._scope()}client sent a message")
        places = [s.get("where") for s in sends]
        count = places.count(self.where)
        lost = sum(1 for p in places if p not in ("ok", "unknown"))
        return self._result(within(count, *self.bounds), f"{count} of {lost} lost ({len(sends)} sends)", value=count)


class HandshakeMs(PercentileOfMillis, Scoped):
    """A percentile of the TCP handshakes' times on the wire (SYN to the handshake's last ACK)."""

    check: Literal["handshake_ms"]
    proto: ProtoFilter = "tcp"

    def title(self) -> str:
        return f"TCP handshake p{num(self.percentile)} {self.expected()}{self._suffix()}"

    def evaluate(self, events):
        why = _no_capture(events)
        if why:
            return self._no_data(why)
        times = [f["handshake_ms"] for f in _wire(events, "flow", self.proto, self._services())
                 if f.get("handshake_ms") is not None]
        if not times:
            return self._no_data("no complete TCP handshake on the wire")
        value = q.percentile(times, self.percentile)
        return self._result(within(value, self.min_ms, self.max_ms), f"{value:.3f} ms ({len(times)} handshakes)",
                            value=value)
