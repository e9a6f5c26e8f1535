"""The terminal's run progress: plain lines when the output is not a terminal (logs, CI)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from lab.console import ConsoleProgress
from lab.progress import RunProgress


def test_console_progress_prints_lines_off_a_terminal():
    buffer = io.StringIO()
    progress: RunProgress = ConsoleProgress(Console(file=buffer, force_terminal=False, width=120))
    progress.started("20261125-run", Path("/runs/20261125-run"), 3)
    progress.message("starting lab-run")
    progress.clients(1, 3)
    assert buffer.getvalue().splitlines() == [
        "run 20261125-run -> /runs/20261125-run", "  starting lab-run", "  clients finished: 1/3"]
    progress.stop()

