"""What every expectation kind is built from: the result, the base models, bounds, value types
and formatting. Nothing here reads records (that is `query`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from lab.expect.query import Record

# Which records a kind looks at; the scenario's own `Proto` (tcp or udp) has no "any".
ProtoFilter = Literal["tcp", "udp", "any"]
MAX_LISTED = 6


def _percent(value: Any) -> Any:
    """`'5%'` -> 0.05; anything else is left for pydantic to check as a number."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError("expected a fraction like 0.05 or a percentage like '5%'") from None
    return value


FractionOrPercent = Annotated[float, BeforeValidator(_percent), Field(ge=0, le=1)]
Number = Annotated[float, BeforeValidator(_percent)]
Count = Annotated[int, Field(ge=0)]
Millis = Annotated[float, Field(ge=0)]


class ExpectationResult(BaseModel):
    """One line of `lab run`'s verdict: what was checked, what was measured, pass or fail."""

    name: str
    passed: bool
    measured: str
    expected: str
    detail: str = ""
    value: float | None = None


def listed(items: Sequence[str], total: int | None = None) -> str:
    """The first items, and how many more (of `total`, when only the first few were kept)."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" (+{total - MAX_LISTED} more)" if total > MAX_LISTED else "")


def pct(x: float) -> str:
    return f"{x * 100:.1f}".rstrip("0").rstrip(".") + "%"


def num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def range_text(lo: float | None, hi: float | None, fmt=num, unit: str = "") -> str:
    if lo is not None and hi is not None:
        return f"exactly {fmt(lo)}{unit}" if lo == hi else f"between {fmt(lo)}{unit} and {fmt(hi)}{unit}"
    return f"at least {fmt(lo)}{unit}" if lo is not None else f"at most {fmt(hi)}{unit}"


def within(value: float, lo: float | None, hi: float | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


class BaseExpectation(BaseModel):
    """One kind of expectation: a `check: <kind>` mapping that measures one value on a run's records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Label shown instead of the generated one")

    def title(self) -> str:
        raise NotImplementedError

    def expected(self) -> str:
        raise NotImplementedError

    def evaluate(self, events: list[Record]) -> ExpectationResult:
        raise NotImplementedError

    def _result(self, passed: bool, measured: str, detail: str = "", value: float | None = None) -> ExpectationResult:
        return ExpectationResult(name=self.name or self.title(), passed=passed, measured=measured,
                                 expected=self.expected(), detail=detail, value=value)

    def _no_data(self, why: str) -> ExpectationResult:
        return self._result(False, "no data", why)


class Scoped(BaseExpectation):
    """A check on some protocol's records, optionally only some clients' records."""

    proto: ProtoFilter = "any"
    service: tuple[str, ...] = Field((), description="Only these clients (compose service names)")

    @field_validator("service", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def _scope(self) -> str:
        words = "" if self.proto == "any" else f"{self.proto} "
        return words

    def _suffix(self) -> str:
        return f" ({', '.join(self.service)})" if self.service else ""

    def _services(self) -> tuple[str, ...] | None:
        return self.service or None


class PercentileOfMillis(BaseModel):
    """A percentile of some times, bounded in milliseconds (`min_ms`, `max_ms`: at least one)."""

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

    def expected(self) -> str:
        return range_text(self.min_ms, self.max_ms, unit=" ms")


class Bounded(BaseModel):
    """`min`/`max` bounds (at least one); `equals` where a kind has it is shorthand for both."""

    @property
    def bounds(self) -> tuple[Any, Any]:
        equals = getattr(self, "equals", None)
        return (equals, equals) if equals is not None else (self.min, self.max)

    @model_validator(mode="after")
    def _check_bounds(self):
        if getattr(self, "equals", None) is not None and (self.min is not None or self.max is not None):
            raise ValueError("give either 'equals' or 'min'/'max', not both")
        lo, hi = self.bounds
        if lo is None and hi is None:
            raise ValueError("give at least one bound: 'min' or 'max'")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"'min' ({lo}) is greater than 'max' ({hi})")
        return self
