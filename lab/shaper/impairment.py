"""What a shaper applies: the impairment values, their validation and their text forms.

Validation lives here so that `run`, `set`, the planner and the lab's scenario model
(lab/scenario.py validates every `impair:` through `Impairment.from_dict`) all reject the same
bad values for the same reason. Standard library only: the orchestrator imports it too.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
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
NUMBERS = ("delay_ms", "jitter_ms", "loss", "duplicate", "reorder", "corrupt")
FIELDS = (*NUMBERS, "rate")  # the to_dict form, as a scenario file and `set` name them


def flag(name: str) -> str:
    """A field as the command line spells it: delay_ms -> --delay-ms."""
    return "--" + name.replace("_", "-")


class _Spelled(dict):
    """format_map's mapping for a rule: every field it names, spelled by `spell`."""

    def __init__(self, spell: Callable[[str], str]) -> None:
        super().__init__()
        self.spell = spell

    def __missing__(self, name: str) -> str:
        return self.spell(name)


def _literal(text: str) -> str:
    """User text inside a rule, kept as it is (a rule's braces name fields)."""
    return text.replace("{", "{{").replace("}", "}}")


class ImpairmentError(ValueError):
    """A bad impairment value: which field, the value, and what is allowed (`rule`).

    `str()` is the one-line message of the shaper's command line (`bad --loss 1.5: must be ...`).
    The rule names other fields as `{delay_ms}`, so a scenario file's error can spell them as
    that file does (`rule_text(str)`); `field` is None for a rule about the whole impairment.
    """

    def __init__(self, field: str | None, value: Any, rule: str) -> None:
        self.field, self.value, self.rule = field, value, rule
        text = self.rule_text(flag)
        super().__init__(text if field is None else f"bad {flag(field)} {value!r}: {text}")

    def rule_text(self, spell: Callable[[str], str]) -> str:
        """What is allowed, with other fields spelled by `spell`."""
        return self.rule.format_map(_Spelled(spell))


def parse_rate(text: str) -> int:
    """A tc-style rate (`1mbit`, `500kbit`, `2mbps`) as bits per second."""
    match = _RATE_RE.match(text.strip().lower()) if isinstance(text, str) else None
    if not match or match.group(2) not in _RATE_UNITS:
        raise ImpairmentError("rate", text, f"must be a number and a unit, one of {', '.join(_RATE_UNITS)} (e.g. 1mbit)")
    bits = int(float(match.group(1)) * _RATE_UNITS[match.group(2)])
    if bits < MIN_RATE_BITS:
        raise ImpairmentError("rate", text, f"must be at least {format_rate(MIN_RATE_BITS)}")
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
        for name in NUMBERS:
            check_field(name, getattr(self, name))
        if self.reorder > 0 and self.delay_ms <= 0:
            raise ImpairmentError("reorder", self.reorder,
                                  "needs {delay_ms} > 0: reordered packets are the ones sent without the delay")
        if self.jitter_ms > self.delay_ms:
            raise ImpairmentError("jitter_ms", self.jitter_ms,
                                  f"must not exceed {{delay_ms}} ({self.delay_ms:g}): jitter is +/- around the delay")
        if self.rate_bits is not None and self.rate_bits < MIN_RATE_BITS:
            raise ImpairmentError("rate", format_rate(self.rate_bits), f"must be at least {format_rate(MIN_RATE_BITS)}")

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
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ImpairmentError(None, None, f"unknown impairment field(s): {_literal(', '.join(sorted(unknown)))}; "
                                              f"known: {', '.join(FIELDS)}")
        fields = {k: v for k, v in data.items() if k != "rate" and v is not None}
        rate = data.get("rate")
        return cls(**fields, rate_bits=parse_rate(rate) if rate is not None else None)

    def merged(self, changes: dict[str, Any]) -> Impairment:
        """This impairment with the given to_dict-style fields replaced (the `set` command)."""
        data = self.to_dict()
        data.update(changes)
        return Impairment.from_dict(data)


def check_field(name: str, value: Any) -> None:
    """One field's range, on its own (`set` checks these before the merge with the live values)."""
    if name == "rate":
        if value is not None:
            parse_rate(value)
        return
    if name not in NUMBERS:
        raise ImpairmentError(None, None, f"unknown impairment field {_literal(repr(name))}; known: {', '.join(FIELDS)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ImpairmentError(name, value, "must be a number")
    if name in ("delay_ms", "jitter_ms"):
        if not 0 <= value <= 60_000:
            raise ImpairmentError(name, value, "must be from 0 to 60000 ms")
    elif not 0 <= value <= 1:
        raise ImpairmentError(name, value, "must be a fraction from 0 to 1")
