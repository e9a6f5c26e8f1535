"""What a run reports while it goes: the interface `run_scenario` calls, and a silent default.

The terminal implementation is `lab.console.ConsoleProgress`; a test or another front end may
pass its own object with these three methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class RunProgress(Protocol):
    def started(self, run_id: str, directory: Path, total_clients: int) -> None:
        """The run directory exists; `total_clients` are about to start."""

    def message(self, text: str) -> None:
        """One line about what the run is doing now (starting, a timeout, cleaning up)."""

    def clients(self, finished: int, total: int) -> None:
        """How many clients have exited so far."""


class QuietProgress:
    """Reports nothing: for library callers and tests that only want the result."""

    def started(self, run_id: str, directory: Path, total_clients: int) -> None: ...
    def message(self, text: str) -> None: ...
    def clients(self, finished: int, total: int) -> None: ...
