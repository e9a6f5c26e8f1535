"""Charts of a run as geometry for the SVG template: round-trip time over the run with the faults
marked, and lost messages per direction.

Drawn from the data by hand rather than with a plotting library: two small charts do not
justify megabytes of embedded JavaScript, and plain SVG opens instantly and offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lab.html.rundata import AT_SERVER, TO_CLIENT, TO_SERVER, Fault
from lab.html.samples import RttSamples

WIDTH, HEIGHT = 900, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 34, 44
LOST_BAND = 16  # the strip above the plot where lost messages are marked


@dataclass
class Point:
    x: float
    y: float
    kind: str  # tcp | udp | lost
    title: str


@dataclass
class Tick:
    at: float  # pixel
    label: str


@dataclass
class Band:
    x: float
    width: float
    label: str
    failed: bool


@dataclass
class SliceBar:
    """A slice of time of one protocol, in a run with too many messages to draw one by one: a
    line from its fastest to its slowest round trip, a dot at the mean."""

    x: float
    low: float  # pixel of the fastest (the lower on the chart)
    high: float
    mean: float
    kind: str  # tcp | udp
    title: str


@dataclass
class RttChart:
    points: list[Point] = field(default_factory=list)
    bars: list[SliceBar] = field(default_factory=list)  # instead of points, in a long run
    sliced: bool = False  # drawn from slices of time (`bars`): more messages than points
    messages: int = 0
    faults: list[Band] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    log: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    lost_y: float = TOP - LOST_BAND / 2 - 2
    empty: bool = True


def rtt_chart(samples: RttSamples, faults: list[Fault]) -> RttChart:
    """Each echoed message as a point at (time it was sent, its rtt); lost ones in the top strip.
    With more messages than points (lab.html.samples), each slice of time as a bar instead."""
    chart = RttChart(messages=samples.messages)
    if not samples.messages:
        return chart
    chart.empty = False
    times = [samples.t_max] + [f.t for f in faults] + [f.until for f in faults if f.until is not None]
    t_max = max(max(times), 0.001)
    lo, hi = (samples.low_ms, samples.high_ms) if samples.high_ms > 0 else (0.1, 1.0)
    chart.log = hi / max(lo, 1e-6) > 30
    scale_y = _log_scale(lo, hi, chart) if chart.log else _linear_scale(hi, chart)

    def x_of(t: float) -> float:
        return LEFT + (chart.right - LEFT) * max(t, 0.0) / t_max

    points = samples.exact()
    if points is not None:
        for _order, t, rtt, proto, who, lost_where in points:
            if rtt is None:
                if lost_where:
                    chart.points.append(Point(x_of(t), chart.lost_y, "lost", f"{who} lost {lost_where} at {t:.3f} s"))
                continue
            chart.points.append(Point(x_of(t), scale_y(max(rtt, 1e-3)), proto, f"{who}: {rtt:.3f} ms at {t:.3f} s"))
    else:
        chart.sliced = True
        width = samples.width
        for proto in sorted(samples.slices):
            for index, piece in sorted(samples.slices[proto].items()):
                start, end = index * width, (index + 1) * width
                x = x_of(start + width / 2)
                span = f"{start:.3f}-{end:.3f} s"
                if piece.echoed:
                    chart.bars.append(SliceBar(
                        x, scale_y(max(piece.low_ms, 1e-3)), scale_y(max(piece.high_ms, 1e-3)),
                        scale_y(max(piece.mean_ms, 1e-3)), proto,
                        f"{proto} {span}: {piece.echoed} echoed, rtt {piece.low_ms:.3f}-{piece.high_ms:.3f} ms, "
                        f"mean {piece.mean_ms:.3f} ms"))
                if piece.lost:
                    chart.points.append(Point(x, chart.lost_y, "lost", f"{proto} {span}: {piece.lost} lost"))
    for fault in faults:
        end = fault.until if fault.until is not None else fault.t
        chart.faults.append(Band(x_of(fault.t), max(x_of(end) - x_of(fault.t), 0.0), fault.label, not fault.ok))
    step = _nice_step(t_max / 8)
    chart.x_ticks = [Tick(x_of(i * step), f"{i * step:g} s") for i in range(int(t_max / step) + 1)]
    return chart


def _linear_scale(hi: float, chart: RttChart):
    top = _nice_step(hi / 4) * 5 if hi > 0 else 1.0
    span = chart.bottom - chart.top

    def y_of(value: float) -> float:
        return chart.bottom - span * value / top

    step = top / 5
    chart.y_ticks = [Tick(y_of(i * step), f"{i * step:g}") for i in range(6)]
    return y_of


def _log_scale(lo: float, hi: float, chart: RttChart):
    low, high = math.floor(math.log10(max(lo, 1e-3))), math.ceil(math.log10(hi))
    high = max(high, low + 1)
    span = chart.bottom - chart.top

    def y_of(value: float) -> float:
        return chart.bottom - span * (math.log10(value) - low) / (high - low)

    chart.y_ticks = [Tick(y_of(10.0 ** e), f"{10.0 ** e:g}") for e in range(low, high + 1)]
    return y_of


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


@dataclass
class LossBar:
    proto: str
    sent: int
    segments: list[tuple[str, int, float, float]]  # (leg, count, x, width)
    lost: int
    width: int = 560

    @property
    def percent(self) -> str:
        return f"{100 * self.lost / self.sent:.1f}%" if self.sent else "-"


LEGS = [(TO_SERVER, "to-server"), (AT_SERVER, "at-server"), (TO_CLIENT, "to-client")]


def loss_bars(rows: list[dict]) -> list[LossBar]:
    """One bar per protocol: its lost messages split by the leg that lost them, to scale of sent."""
    bars = []
    for row in rows:
        bar = LossBar(proto=row["proto"], sent=row["sent"], segments=[], lost=row["lost"])
        x = 0.0
        for leg, _ in LEGS:
            count = row.get(leg, 0)
            width = bar.width * count / row["sent"] if row["sent"] else 0
            bar.segments.append((leg, count, x, width))
            x += width
        bars.append(bar)
    return bars
