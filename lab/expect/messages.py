"""Expectations on the messages: did each come back intact, how many were lost, how long it took."""

from __future__ import annotations

from typing import Literal

from lab.expect import query as q
from lab.expect.base import (
    Bounded,
    FractionOrPercent,
    PercentileOfMillis,
    ProtoFilter,
    Scoped,
    listed,
    num,
    pct,
    range_text,
    within,
)


class EchoedIntact(Scoped):
    """Every message a client sent came back, byte for byte (the last try of each counts)."""

    check: Literal["echoed_intact"]

    def title(self) -> str:
        return f"every {self._scope()}message echoed intact{self._suffix()}"

    def expected(self) -> str:
        return "all intact"

    def evaluate(self, events):
        tally = q.message_tally(events, self.proto, self._services())
        if not tally.messages:
            return self._no_data(f"no {self._scope()}client sent a message")
        good = tally.intact
        return self._result(not tally.not_intact, f"{good}/{tally.messages} intact",
                            listed(tally.describe_not_intact(), tally.not_intact), good / tally.messages)


class Loss(Scoped, Bounded):
    """Fraction of sends that got no reply (round trip: lost either way counts)."""

    check: Literal["loss"]
    proto: ProtoFilter = "udp"
    min: FractionOrPercent | None = None
    max: FractionOrPercent | None = None

    def title(self) -> str:
        return f"{self._scope()}loss {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(*self.bounds, pct)

    def evaluate(self, events):
        tally = q.message_tally(events, self.proto, self._services())
        if not tally.sends:
            return self._no_data(f"no {self._scope()}client sent a message")
        frac = tally.unanswered / tally.sends
        return self._result(within(frac, *self.bounds), f"{pct(frac)} ({tally.unanswered}/{tally.sends} lost)",
                            value=frac)


class Rtt(PercentileOfMillis, Scoped):
    """A percentile of the clients' round-trip times, from their `reply` records."""

    check: Literal["rtt"]

    def title(self) -> str:
        return f"{self._scope()}rtt p{num(self.percentile)} {self.expected()}{self._suffix()}"

    def evaluate(self, events):
        rtts = q.reply_rtts(events, self.proto, self._services())
        if not rtts:
            return self._no_data(f"no {self._scope()}reply with rtt_ms")
        value = q.percentile(rtts, self.percentile)
        return self._result(within(value, self.min_ms, self.max_ms), f"{value:.2f} ms ({len(rtts)} replies)",
                            value=value)
