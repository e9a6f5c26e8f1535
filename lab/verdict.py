"""A run's verdict: one name for it across the run, the CLI, JUnit and the reports.

The values are the strings written to `manifest.json`, so run directories from any version read
back the same.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    RUNNING = "running"  # only in the manifest of a run not finished (or killed hard)
    PASSED = "passed"
    FAILED = "failed"  # a client or an expectation failed
    TIMEOUT = "timeout"  # clients still running at the scenario's timeout
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    ERROR = "error"  # the lab could not carry the run out, or could not clean up after it

    @property
    def exit_code(self) -> int:
        """The `lab run`/`lab test` exit status for this verdict."""
        return {Verdict.PASSED: 0, Verdict.INTERRUPTED: 130}.get(self, 1)

    @property
    def is_failure(self) -> bool:
        """The scenario did not hold (as opposed to the lab not managing to run it)."""
        return self in (Verdict.FAILED, Verdict.TIMEOUT)
