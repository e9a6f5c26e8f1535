"""Expectations on the messages: did each come back intact, how many were lost, how long it took."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lab.expect import query as q
from lab.expect.base import Bounded, FractionOrPercent, Millis, ProtoFilter, Scoped, listed, num, pct, range_text, within


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


class Rtt(Scoped):
    """A percentile of the clients' round-trip times, from their `reply` records."""

    check: Literal["rtt"]
    percentile: float = Field(50, ge=0, le=100)
    min_ms: Millis | None = None
    max_ms: Millis | None = None

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_ms is None and self.max_ms is None:
            raise ValueError("give at least one bound: 'min_ms' or 'max_ms'")
        if self.min_ms is not None and self.max_ms is not None and self.min_ms > self.max_ms:
            raise ValueError(f"'min_ms' ({self.min_ms}) is greater than 'max_ms' ({self.max_ms})")
        return self

    def title(self) -> str:
        return f"{self._scope()}rtt p{num(self.percentile)} {self.expected()}{self._suffix()}"

    def expected(self) -> str:
        return range_text(self.min_ms, self.max_ms, unit=" ms")

    def evaluate(self, events):
        rtts = q.reply_rtts(events, self.proto, self._services())
        if not rtts:
            return self._no_data(f"no {self._scope()}reply with rtt_ms")
        value = q.percentile(rtts, self.percentile)
        return self._result(within(value, self.min_ms, self.max_ms), f"{value:.2f} ms ({len(rtts)} replies)",
                            value=value)
