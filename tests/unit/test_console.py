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



def test_a_scenario_that_shows_a_broken_program_says_its_failure_was_expected(tmp_path):
    from rich.console import Console

    from lab.console import result_lines
    from lab.expect import ExpectationResult
    from lab.run import RunResult

    found = ExpectationResult(name="the lab diagnoses loopback-listener", passed=True, measured="1", expected="1")
    result = RunResult(run_id="r", directory=tmp_path, verdict="failed", expectations=[found])
    console = Console(width=200, record=True)
    for line in result_lines("tutorial-as-written", result, outcome="failed")[-1:]:
        console.print(line)
    assert "failed (as this scenario expects" in console.export_text()
    console = Console(width=200, record=True)
    for line in result_lines("basic", result)[-1:]:
        console.print(line)
    assert "as this scenario expects" not in console.export_text()
