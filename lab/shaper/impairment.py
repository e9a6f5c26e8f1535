"""What a shaper applies: the impairment values, their validation and their text forms.

Validation lives here so that `run`, `set` and the planner all reject the same bad values with
the same one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

DIRECTIONS = ("egress", "ingress", "both")
BACKENDS = ("auto", "netem", "userspace")

# tc's rate units, in bits per second per unit ("bps" is bytes per second in tc, as here).
_RATE_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
}
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$")
MIN_RATE_BITS = 8_000  # below this even one full-size packet takes over a second


class ImpairmentError(ValueError):
    """A bad impairment value; the message is one line, fit for the user."""


def parse_rate(text: str) -> int:
    """A tc-style rate (`1mbit`, `500kbit`, `2mbps`) as bits per second."""
    match = _RATE_RE.match(text.strip().lower())
    if not match or match.group(2) not in _RATE_UNITS:
        raise ImpairmentError(
            f"bad rate {text!r}: use a number and a unit, one of {', '.join(_RATE_UNITS)} (e.g. 1mbit)")
    bits = int(float(match.group(1)) * _RATE_UNITS[match.group(2)])
    if bits < MIN_RATE_BITS:
        raise ImpairmentError(f"bad rate {text!r}: must be at least 8kbit")
    return bits


def format_rate(bits: int) -> str:
    """Bits per second in tc's units, exact: 1000000 -> `1mbit`, 1500 -> `1500bit`."""
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits % scale == 0:
            return f"{bits // scale}{unit}"
    return f"{bits}bit"


@dataclasses.dataclass(frozen=True)
class Impairment:
    """Per-packet impairment in each impaired direction; all zero means pass everything."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    rate_bits: int | None = None  # bits per second; None = unlimited

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt"):
            check_field(name, getattr(self, name))
        if self.reorder > 0 and self.delay_ms <= 0:
            raise ImpairmentError("--reorder needs --delay-ms > 0: reordered packets are the ones sent without the delay")
        if self.rate_bits is not None and self.rate_bits < MIN_RATE_BITS:
            raise ImpairmentError(f"bad --rate {self.rate_bits}bit: must be at least 8kbit")

    @property
    def is_noop(self) -> bool:
        return self == Impairment()

    @property
    def needs_queue(self) -> bool:
        """True when the userspace backend must see packets (everything but loss and rate)."""
        return any((self.delay_ms, self.jitter_ms, self.reorder, self.duplicate, self.corrupt))

    def to_dict(self) -> dict[str, Any]:
        """The record/JSON form: every parameter, rate as tc text or null."""
        return {
            "delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "loss": self.loss,
            "duplicate": self.duplicate, "reorder": self.reorder, "corrupt": self.corrupt,
            "rate": format_rate(self.rate_bits) if self.rate_bits else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Impairment:
        """Inverse of to_dict; unknown keys are an error (they would be silently ignored)."""
        known = {"delay_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt", "rate"}
        unknown = set(data) - known
        if unknown:
            raise ImpairmentError(f"unknown impairment field(s): {', '.join(sorted(unknown))}")
        fields = {k: v for k, v in data.items() if k != "rate" and v is not None}
        rate = data.get("rate")
        return cls(**fields, rate_bits=parse_rate(rate) if rate else None)

    def merged(self, changes: dict[str, Any]) -> Impairment:
        """This impairment with the given to_dict-style fields replaced (the `set` command)."""
        data = self.to_dict()
        data.update(changes)
        return Impairment.from_dict(data)


def check_field(name: str, value: Any) -> None:
    """One field's range, on its own (`set` checks these before the merge with the live values)."""
    flag = name.replace("_", "-")
    if name == "rate":
        if value is not None:
            parse_rate(value)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ImpairmentError(f"bad --{flag} {value!r}: must be a number")
    if name in ("delay_ms", "jitter_ms"):
        if not 0 <= value <= 60_000:
            raise ImpairmentError(f"bad --{flag} {value!r}: must be from 0 to 60000 ms")
    elif name in ("loss", "duplicate", "reorder", "corrupt"):
        if not 0 <= value <= 1:
            raise ImpairmentError(f"bad --{flag} {value!r}: must be a fraction from 0 to 1")
    else:
        raise ImpairmentError(f"unknown impairment field {name!r}")
