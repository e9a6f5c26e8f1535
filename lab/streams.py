"""Is each program's record stream complete? Checked as the records go by, a few numbers each.

Every record a program writes carries `n`, its number in that program's stream: 1 for the
program's first record, then one more for each record (docs/log-schema.md). A container whose
program starts again (a restart) begins again at 1. So, in the order a container's records were
written, anything but `n = previous + 1` or a fresh start at 1 means records are missing, and a
first record above 1 means the start is missing. Records from before numbering (schema 1) make
a stream's completeness unknown, which is said too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Ranges of missing numbers kept per stream (the count of missing records is always exact).
KEPT_RANGES = 8


@dataclass
class StreamCheck:
    """One container's stream, fed each of its program records in the order they were written."""

    container: str
    records: int = 0
    unnumbered: int = 0
    starts: int = 0
    last: int | None = None
    missing: int = 0
    start_missing: bool = False
    ranges: list[tuple[int, int]] = field(default_factory=list)
    # Why records went missing, when the collector knows (e.g. the Docker log store's rotation).
    cause: str | None = None

    def see(self, n: Any) -> None:
        self.records += 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            self.unnumbered += 1
            return
        if self.last is None or n == 1:
            self.starts += 1
            if n != 1:
                self.start_missing = True
                self._lost(1, n - 1)
        elif n != self.last + 1:
            # Past the last number: the ones between are gone. Back below it but not at 1: the
            # program started again and its new start is gone.
            self._lost(self.last + 1 if n > self.last else 1, n - 1)
        self.last = n

    def _lost(self, first: int, last: int) -> None:
        self.missing += last - first + 1
        if len(self.ranges) < KEPT_RANGES:
            self.ranges.append((first, last))

    @property
    def complete(self) -> bool:
        return self.missing == 0 and self.unnumbered == 0

    def problem(self) -> str | None:
        """One line saying what is wrong with this stream, or None if it is complete."""
        if self.missing:
            shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges)
            more = ", ..." if len(self.ranges) == KEPT_RANGES else ""
            start = " including its start" if self.start_missing else ""
            return (f"{self.container} lost {self.missing} record(s){start} (n {shown}{more})"
                    f"{': ' + self.cause if self.cause else ''}")
        if self.unnumbered:
            return (f"{self.container}: {self.unnumbered} record(s) carry no sequence number (schema 1): "
                    f"completeness unknown")
        return None

    def summary(self) -> dict[str, Any]:
        """For the manifest."""
        return {"records": self.records, "starts": self.starts, "missing": self.missing,
                "missing_ranges": [list(r) for r in self.ranges], "start_missing": self.start_missing,
                "unnumbered": self.unnumbered, "cause": self.cause, "complete": self.complete}


# Events the orchestrator makes itself rather than a program: never numbered, never checked.
UNCHECKED_EVENTS = {"output"}
UNCHECKED_ROLES = {"lab"}


def check_streams(records: Iterable[dict[str, Any]]) -> dict[str, StreamCheck]:
    """Each container's stream checked from a time-ordered timeline (events.jsonl), for runs
    collected elsewhere or earlier; holds one StreamCheck per container."""
    checks: dict[str, StreamCheck] = {}
    for record in records:
        if record.get("role") in UNCHECKED_ROLES or record.get("event") in UNCHECKED_EVENTS:
            continue
        name = str(record.get("container") or record.get("service") or record.get("host") or "?")
        check = checks.get(name)
        if check is None:
            check = checks[name] = StreamCheck(name)
        check.see(record.get("n"))
    return checks


def problems(checks: Iterable[StreamCheck]) -> list[str]:
    return [p for p in (c.problem() for c in sorted(checks, key=lambda c: c.container)) if p]
