"""The commands that do work, on the terminal: `lab run`, `lab test` and `lab doctor` as library
calls that show their progress live and print their results, so the command line only parses
arguments.

`ConsoleProgress` is the terminal's `RunProgress` (lab/progress.py): a live bar on a terminal,
plain lines in logs and CI.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lab.doctor import run_checks
from lab.engine import Engine
from lab.home import project_root, runs_dir, scenarios_dir
from lab.images import build_node
from lab.junit import write_junit
from lab.report import console, conversation_table, diagnosis_lines, expectation_table
from lab.run import RunResult, run_scenario
from lab.scenario import Scenario, find_scenario, load_scenario, scenario_names
from lab.verdict import Verdict


class ConsoleProgress:
    """Live progress of a run on the terminal: messages, and clients finished out of N."""

    def __init__(self, out: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.out = out
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=out, transient=True)
        self.task = None

    def started(self, run_id: str, directory: Path, total_clients: int) -> None:
        self.out.print(f"run {run_id} -> {directory}")
        self.task = self.bar.add_task("clients finished", total=total_clients)

    def message(self, text: str) -> None:
        self.out.print(f"  {text}")

    def clients(self, finished: int, total: int) -> None:
        if not self.out.is_terminal:
            self.out.print(f"  clients finished: {finished}/{total}")  # logs and CI get lines, not a bar
            return
        if self.task is not None:
            if not self.bar.live.is_started:
                self.bar.start()
            self.bar.update(self.task, completed=finished, total=total)

    def stop(self) -> None:
        self.bar.stop()


def load_named(name: str, clients: int | None = None, no_capture: bool = False) -> tuple[Scenario, Path]:
    """A scenario by name from scenarios/ (or by path), with its client count overridden if given
    and its capture turned off if asked (`--no-capture`)."""
    path = find_scenario(name, scenarios_dir())
    scenario = load_scenario(path)
    if clients is not None:
        scenario = scenario.with_clients(clients)
    if no_capture:
        scenario = scenario.model_copy(update={"capture": False})
    return scenario, path


def run_in_console(name: str, *, clients: int | None = None, out_dir: Path | None = None,
                   keep: bool = False, no_capture: bool = False) -> RunResult:
    """`lab run`: one scenario, its progress and its tables on the terminal."""
    scenario, path = load_named(name, clients, no_capture)
    return run_and_show(scenario, path, Engine().require(), out_dir, keep=keep)


def run_and_show(scenario: Scenario, path: Path, engine: Engine, out_dir: Path | None,
                 keep: bool = False) -> RunResult:
    """Run one loaded scenario with live progress, then print its tables and verdict."""
    out = console()
    progress = ConsoleProgress(out)
    root = project_root()
    try:
        result = run_scenario(
            scenario, engine, out_dir or runs_dir(), root, keep=keep, progress=progress, source=path,
            ensure_image=lambda: build_node(engine, root, progress=None),
        )
    finally:
        progress.stop()
    out.print(conversation_table(result.conversations, title=f"{scenario.name}: one row per client socket"))
    if result.expectations:
        out.print(expectation_table(result.expectations))
    for line in diagnosis_lines(result.diagnoses):
        out.print(line, highlight=False)
    failed = {name: code for name, code in sorted(result.clients.items()) if code != 0}
    if failed:
        out.print("clients that failed: " + ", ".join(f"{n} (exit {c})" for n, c in failed.items()))
    if result.error:
        out.print(result.error, style="red", markup=False, highlight=False)
    for line in result.details:
        out.print(line, style="yellow", markup=False, highlight=False)
    style = "green" if result.verdict == Verdict.PASSED else "red"
    out.print(f"[{style}]{result.verdict}[/]  run {result.run_id}  logs: {result.directory}")
    if result.report:
        out.print(f"report: {result.report}", markup=False, highlight=False)
    return result


def run_suite_in_console(names: list[str], *, out_dir: Path | None = None, junit: Path | None = None,
                         no_capture: bool = False) -> int:
    """`lab test`: the named scenarios (default all) one after another, a summary and JUnit XML.

    Returns the exit status: 0 all passed, 130 interrupted, else 1.
    """
    # Every file is validated before anything runs.
    loaded = [load_named(name, no_capture=no_capture) for name in names or scenario_names(scenarios_dir())]
    engine = Engine().require()
    out_dir = out_dir or runs_dir()
    results = []
    for scenario, path in loaded:
        results.append((scenario, run_and_show(scenario, path, engine, out_dir)))
        if results[-1][1].verdict == Verdict.INTERRUPTED:
            break  # Ctrl-C ends the whole test run, not just this scenario
    junit = junit or out_dir / "junit.xml"
    write_junit(junit, results)
    out = console()
    out.print("\nsummary:")
    for scenario, result in results:
        style = "green" if result.verdict == Verdict.PASSED else "red"
        out.print(f"  [{style}]{result.verdict:<11}[/] {scenario.name:<20} {result.directory}")
    out.print(f"JUnit XML: {junit}")
    if any(r.verdict == Verdict.INTERRUPTED for _, r in results):
        return 130
    return 0 if all(r.verdict == Verdict.PASSED for _, r in results) else 1


def doctor_in_console() -> int:
    """`lab doctor`: one line per check, a fix under each failed one; 1 if a blocking check failed."""
    out = console()
    failed = 0
    for check in run_checks(Engine(), project_root()):
        mark = "[green]ok[/]  " if check.ok else ("[red]FAIL[/]" if check.blocking else "[yellow]warn[/]")
        out.print(f"{mark} {check.name:<16} {check.detail}")
        if not check.ok and check.fix:
            out.print(f"     fix: {check.fix}")
        failed += (not check.ok) and check.blocking
    return 1 if failed else 0
