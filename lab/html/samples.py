"""The round trips of a run as the report needs them, bounded however many messages it sent:
what the round-trip chart is drawn from (`RttSamples`), and the percentiles (`Percentiles`).

Every message is kept as a point up to `POINTS` of them (a short run's chart shows each one);
past that the points are dropped and the chart is drawn from slices of time instead: per
protocol and slice, how many came back, the fastest, the slowest and the mean round trip, and
how many were lost. The slices are always counted, so nothing is read twice: a slice doubles
in width (neighbours merged) whenever the run outgrows them, so there are never more than
`SLICES` per protocol, whatever the run's length.

The percentiles are exact (lab.records.stats.percentile) up to `EXACT` round trips; past that
they come from buckets `STEP` wide (relative: 0.1%), each counting its round trips, so a
percentile is within 0.05% of the exact one.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any

from lab.records.stats import percentile

POINTS = 2000  # messages drawn one by one; a page with more dots draws slowly and shows no more
SLICES = 240  # time slices per protocol once there are more (about 3 pixels each on the chart)
FIRST_WIDTH = 0.05  # seconds per slice to begin with
EXACT = 100_000  # round trips kept as they are for exact percentiles (800 kB)
STEP = 1.001  # a bucket's upper bound over its lower one, past EXACT
_LOG_STEP = math.log(STEP)


@dataclass
class Slice:
    """The messages of one protocol sent within one slice of time."""

    echoed: int = 0  # with a round-trip time
    total_ms: float = 0.0
    low_ms: float = math.inf
    high_ms: float = 0.0
    lost: int = 0

    def merge(self, other: Slice) -> None:
        self.echoed += other.echoed
        self.total_ms += other.total_ms
        self.low_ms = min(self.low_ms, other.low_ms)
        self.high_ms = max(self.high_ms, other.high_ms)
        self.lost += other.lost

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.echoed if self.echoed else 0.0


class RttSamples:
    """The messages of a run as the chart needs them, fed once each (`add`), in any order."""

    def __init__(self, points: int = POINTS, slices: int = SLICES) -> None:
        self.limit = points
        self.points: list[tuple[Any, ...]] | None = []  # None once there were more than `limit`
        self.messages = 0
        self.t_max = -math.inf  # the latest send
        self.low_ms, self.high_ms = math.inf, 0.0  # of the positive round-trip times
        self.width = FIRST_WIDTH
        self.count = slices
        self.slices: dict[str, dict[int, Slice]] = {}

    def add(self, order: tuple, t: float, rtt_ms: float | None, proto: str, label: str,
            lost_where: str | None) -> None:
        """One message: `order` places its point among the others (row, then message), `t` when
        it was sent, `label` who sent it (`client1 tcp #3`)."""
        self.messages += 1
        self.t_max = max(self.t_max, t)
        if rtt_ms is not None and rtt_ms > 0:
            self.low_ms, self.high_ms = min(self.low_ms, rtt_ms), max(self.high_ms, rtt_ms)
        if self.points is not None:
            self.points.append((order, t, rtt_ms, proto, label, lost_where))
            if len(self.points) > self.limit:
                self.points = None
        t = max(t, 0.0)
        while t >= self.width * self.count:
            self._coarsen()
        piece = self.slices.setdefault(proto, {}).setdefault(int(t / self.width), Slice())
        if rtt_ms is not None:
            piece.echoed += 1
            piece.total_ms += rtt_ms
            piece.low_ms, piece.high_ms = min(piece.low_ms, rtt_ms), max(piece.high_ms, rtt_ms)
        elif lost_where:
            piece.lost += 1

    def _coarsen(self) -> None:
        self.width *= 2
        for proto, slices in self.slices.items():
            merged: dict[int, Slice] = {}
            for index, piece in slices.items():
                merged.setdefault(index // 2, Slice()).merge(piece)
            self.slices[proto] = merged

    def exact(self) -> list[tuple[Any, ...]] | None:
        """Every message as (order, t, rtt_ms, proto, label, lost_where) in order, or None when
        there were too many: then the chart is drawn from `slices`."""
        return None if self.points is None else sorted(self.points, key=lambda p: p[0])

    def held(self) -> int:
        """How many things this holds (points and slices), for the tests of its bound."""
        return len(self.points or ()) + sum(len(s) for s in self.slices.values())


class Percentiles:
    """Round trips (ms) for their percentiles: every one up to `EXACT`, then counts per bucket."""

    def __init__(self, exact: int = EXACT) -> None:
        self.limit = exact
        self.values: array | None = array("d")
        self.buckets: dict[int | None, int] = {}  # None: zero or less
        self.count = 0
        self.low, self.high = math.inf, -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.low, self.high = min(self.low, value), max(self.high, value)
        if self.values is None:
            self._bucket(value)
            return
        self.values.append(value)
        if len(self.values) > self.limit:
            for held in self.values:
                self._bucket(held)
            self.values = None

    def _bucket(self, value: float) -> None:
        key = math.floor(math.log(value) / _LOG_STEP) if value > 0 else None
        self.buckets[key] = self.buckets.get(key, 0) + 1

    def percentile(self, p: float) -> float:
        """Nearest rank, as lab.records.stats.percentile: exact up to EXACT values; past them the
        middle of the bucket holding that rank (within the smallest and largest seen)."""
        if self.values is not None:
            return percentile(self.values, p)
        rank = min(max(math.ceil(round(p * self.count / 100.0, 9)), 1), self.count)
        seen = 0
        for key in sorted(self.buckets, key=lambda k: -math.inf if k is None else k):
            seen += self.buckets[key]
            if seen >= rank:
                middle = 0.0 if key is None else STEP ** (key + 0.5)
                return min(max(middle, self.low), self.high)
        return self.high

    def held(self) -> int:
        return len(self.values or ()) + len(self.buckets)
