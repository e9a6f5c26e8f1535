"""Expectations on a learner's own programs: the lab explained what went wrong.

The run turns each diagnosis (`lab.programs.diagnose`) into a `diagnosis` record of role `lab`;
`diagnosed` checks that one of a kind was made, so a scenario built around a classic mistake
(`tutorial-as-written`) says what the lab must find, and a scenario that must run clean can
say `diagnosed` with `count: 0`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lab.expect import query as q
from lab.expect.base import BaseExpectation, Count, listed

DiagnosisKind = Literal[
    "loopback-listener", "client-to-loopback", "nothing-listening", "connection-refused", "one-at-a-time",
    "udp-stops-on-empty",
]


class Diagnosed(BaseExpectation):
    """The lab found (or, with `count: 0`, did not find) a diagnosis of this kind."""

    check: Literal["diagnosed"]
    kind: DiagnosisKind
    host: str | None = Field(None, description="only diagnoses about this host")
    count: Count | None = Field(None, description="exactly this many (default: at least one)")

    def title(self) -> str:
        return f"the lab diagnoses {self.kind}" + (f" on {self.host}" if self.host else "")

    def expected(self) -> str:
        return "at least one" if self.count is None else f"exactly {self.count}"

    def evaluate(self, events):
        found = [r for r in q.select(events, "lab", "diagnosis")
                 if r.get("kind") == self.kind and (self.host is None or r.get("target") == self.host)]
        passed = len(found) >= 1 if self.count is None else len(found) == self.count
        return self._result(passed, f"{len(found)} found", listed([str(r.get("text")) for r in found]),
                            float(len(found)))
