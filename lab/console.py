"""The commands that do work, on the terminal: `lab run`, `lab test` and `lab doctor` as library
calls that show their progress live and print their results, so the command line only parses
arguments.

`ConsoleProgress` is the terminal's `RunProgress` (lab/progress.py): a live bar on a terminal,
plain lines in logs and CI. `SuiteConsole` is `lab test`'s: a live line per running scenario.

Over 300 lines because it is every command's terminal side; each part is a small function
or class of its own, and none of it holds logic the library does not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lab.compose import node_image
from lab.doctor import cannot_run_here, probe_impairments, run_checks, scenario_impairments
from lab.engine import DockerEngine, Engine
from lab.errors import EngineUnavailable, ScenarioError
from lab.home import project_root, runs_dir, scenarios_dir
from lab.images import build_node
from lab.junit import write_junit
from lab.report import VERDICT_STYLE, console, conversation_table, diagnosis_lines, expectation_table
from lab.run import RunResult, run_scenario
from lab.scenario import Scenario, find_scenario, load_scenario
from lab.suite import (
    Outcome,
    Planned,
    SuiteResult,
    default_jobs,
    past_durations,
    plan_runs,
    run_suite,
    select_scenarios,
)


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
                   keep: bool = False, no_capture: bool = False, engine: str = "docker") -> RunResult:
    """`lab run`: one scenario, its progress and its tables on the terminal."""
    scenario, path = load_named(name, clients, no_capture)
    chosen, ensure_image = open_engine(engine)
    return run_and_show(scenario, path, chosen, out_dir, keep=keep, ensure_image=ensure_image)


def open_engine(name: str) -> tuple[Engine, Callable[[], str]]:
    """The engine called `name`, reachable, and the run's `ensure_image` for it."""
    host, root = DockerEngine().require(), project_root()
    if name == "docker":
        return host, lambda: build_node(host, root, progress=None)
    from lab.engine.swarm.engine import swarm_engine

    swarm = swarm_engine()

    def ensure_image() -> str:
        image_id = build_node(host, root, progress=None)
        swarm.ensure_image(node_image(), image_id, progress=lambda _m: None)
        return image_id
    return swarm, ensure_image


def run_and_show(scenario: Scenario, path: Path, engine: Engine, out_dir: Path | None,
                 keep: bool = False, ensure_image: Callable[[], str] | None = None) -> RunResult:
    """Run one loaded scenario with live progress, then print its tables and verdict."""
    out = console()
    progress = ConsoleProgress(out)
    root = project_root()
    try:
        result = run_scenario(
            scenario, engine, out_dir or runs_dir(), root, keep=keep, progress=progress, source=path,
            ensure_image=ensure_image or (lambda: build_node(engine, root, progress=None)),
        )
    finally:
        progress.stop()
    out.print(Group(*result_lines(scenario.name, result, outcome=scenario.outcome)))
    return result


def result_lines(label: str, result: RunResult, seconds: float | None = None, outcome: str = "passed") -> list:
    """A finished run as the terminal shows it: its tables, the clients that failed, its error,
    its verdict line and where its report is. `outcome` is what the scenario says a working lab
    ends with: a scenario that shows a broken program says so next to its `failed`."""
    lines: list = [conversation_table(result.conversations, title=f"{label}: one row per client socket")]
    if result.expectations:
        lines.append(expectation_table(result.expectations))
    lines += [Text.from_markup(line) for line in diagnosis_lines(result.diagnoses)]
    failed = {name: code for name, code in sorted(result.clients.items()) if code != 0}
    if failed:
        lines.append(Text("clients that failed: " + ", ".join(f"{n} (exit {c})" for n, c in failed.items())))
    if result.error:
        lines.append(Text(result.error, style="red"))
    lines += [Text(line, style="yellow") for line in result.details]
    if result.phases.seconds:
        lines.append(Text(f"phases: {result.phases.summary()}"))
    took = f"  {label}  {seconds:.1f} s" if seconds is not None else ""
    as_expected = " (as this scenario expects: it shows a broken program)" if (
        outcome != "passed" and result.as_expected(outcome)) else ""
    lines.append(Text.assemble((str(result.verdict), VERDICT_STYLE.get(result.verdict, "")), as_expected,
                               f"{took}  run {result.run_id}  logs: {result.directory}"))
    if result.report:
        lines.append(Text(f"report: {result.report}"))
    return lines


# ---- lab test ---------------------------------------------------------------------------------

def run_suite_in_console(patterns: list[str], *, out_dir: Path | None = None, junit: Path | None = None,
                         jobs: int | None = None, repeat: int = 1, fail_fast: bool = False,
                         no_capture: bool = False) -> int:
    """`lab test`: the selected scenarios (default all), up to `jobs` at once, each `repeat` times;
    a live line per running scenario, each run printed whole when it ends, a summary in plan
    order, and JUnit XML. Returns the exit status (see SuiteResult.exit_code)."""
    out_dir = out_dir or runs_dir()
    junit = junit or out_dir / "junit.xml"
    plan, cannot_run = _prepare_suite(patterns, repeat, junit, no_capture)
    jobs = jobs or default_jobs()
    out = console()
    with SuiteConsole(out) as view:
        suite = run_suite(plan, DockerEngine, out_dir, project_root(), jobs=jobs, fail_fast=fail_fast,
                          progress=view, cannot_run=cannot_run, durations=past_durations(out_dir))
    write_junit(junit, suite.outcomes, seconds=suite.seconds)
    print_summary(out, suite, jobs, junit)
    return suite.exit_code


def _prepare_suite(patterns: list[str], repeat: int, junit: Path, no_capture: bool = False):
    """Select and validate every scenario, reach the engine, build the image and learn what this
    host can impair, before any run starts. A bad file or an engine that is down still leaves a
    JUnit report naming each scenario that could not run."""
    paths = select_scenarios(patterns, scenarios_dir())  # an unknown name: exit 2, listing the known
    loaded, bad = [], []
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            bad.append((path, exc))
            continue
        loaded.append((scenario.model_copy(update={"capture": False}) if no_capture else scenario, path))
    if bad:
        write_junit(junit, [Outcome(Planned(path.stem, path, None), error=str(exc)) for path, exc in bad]
                    + [Outcome(Planned(s.name, p, s), skipped="not run: another scenario file is invalid")
                       for s, p in loaded])
        raise ScenarioError("\n".join(str(exc) for _, exc in bad))
    plan = plan_runs(loaded, repeat)
    try:
        engine = DockerEngine().require()
    except EngineUnavailable as exc:
        write_junit(junit, [Outcome(p, error=f"could not run: {exc}") for p in plan])
        raise
    console().print("checking the node image")
    build_node(engine, project_root(), progress=None)
    if not any(scenario_impairments(s) for s, _ in loaded):
        return plan, lambda scenario: None
    probe = probe_impairments(engine, project_root())
    return plan, lambda scenario: cannot_run_here(scenario, probe)


class RunLine:
    """One running scenario's live state: its RunProgress."""

    def __init__(self, planned: Planned, view: SuiteConsole) -> None:
        self.planned = planned
        self.view = view
        self.began = time.monotonic()
        self.state = "waiting for a turn"
        self.finished = 0
        self.total = 0
        self.directory: Path | None = None

    def started(self, run_id: str, directory: Path, total_clients: int) -> None:
        self.directory, self.total, self.state = directory, total_clients, "starting"
        self.view.begun(self)

    def message(self, text: str) -> None:
        self.state = text

    def clients(self, finished: int, total: int) -> None:
        self.finished, self.total, self.state = finished, total, "running"


class SuiteConsole:
    """`lab test`'s SuiteProgress on the terminal: one live line per running scenario, each
    finished run printed whole above them. Runs report from worker threads; every print goes
    through one lock, so blocks never interleave. Without a terminal (CI logs) there is no live
    part: a line when a run starts, its block when it ends."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.running: dict[int, RunLine] = {}
        self.live = Live(console=out, get_renderable=self._live_lines, refresh_per_second=4, transient=True) \
            if out.is_terminal else None

    def __enter__(self) -> SuiteConsole:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.stop()

    def run_started(self, planned: Planned) -> RunLine:
        line = RunLine(planned, self)
        with self.lock:
            self.running[id(planned)] = line
        return line

    def begun(self, line: RunLine) -> None:
        if not self.live:
            self._print(Text(f"started {line.planned.label} -> {line.directory}"))

    def run_finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.running.pop(id(outcome.planned), None)
        self._print(outcome_block(outcome))

    def stopping(self, reason: str) -> None:
        self._print(Text(reason, style="yellow"))

    def _print(self, renderable) -> None:
        with self.lock:
            try:
                self.out.print(renderable)
            except OSError:  # the terminal or pipe is gone: the runs, their cleanup and the report go on
                pass

    def _live_lines(self) -> Table:
        table = Table.grid(padding=(0, 2))
        with self.lock:
            lines = list(self.running.values())
        now = time.monotonic()
        for line in lines:
            clients = f"{line.finished}/{line.total} clients" if line.total else ""
            table.add_row(Text(line.planned.label, style="cyan"), f"{now - line.began:5.0f} s", clients,
                          Text(line.state, overflow="ellipsis", no_wrap=True))
        return table


def outcome_block(outcome: Outcome) -> Group:
    """A finished run of the suite, whole; one line for a run that never ran."""
    if outcome.result is None:
        style = "red" if outcome.error else "yellow"
        return Group(Text.assemble((f"{outcome.status:<11}", style),
                                   f" {outcome.planned.label}: {outcome.error or outcome.skipped}"))
    expected = outcome.planned.scenario.outcome if outcome.planned.scenario else "passed"
    return Group(Text(""), *result_lines(outcome.planned.label, outcome.result, outcome.seconds, outcome=expected))


def print_summary(out: Console, suite: SuiteResult, jobs: int, junit: Path | None) -> None:
    """Every run in plan order, then the pass rate of scenarios run more than once."""
    out.print(f"\nsummary: {len(suite.outcomes)} runs in {suite.seconds:.1f} s, up to {jobs} at once")
    width = max((len(o.planned.label) for o in suite.outcomes), default=10)
    for o in suite.outcomes:
        where = o.result.directory if o.result else (o.error or o.skipped or "")
        took = f"{o.seconds:6.1f} s" if o.result else " " * 8
        out.print(Text.assemble((f"  {o.status:<11}", VERDICT_STYLE.get(o.status, "yellow")),
                                f" {o.planned.label:<{width}}  {took}  {where}"))
    if any(o.planned.repeats > 1 for o in suite.outcomes):
        out.print("pass rate:")
        for name, (passed, ran) in suite.pass_rates.items():
            rate = f"{100 * passed / ran:.0f}%" if ran else "-"
            style = "green" if ran and passed == ran else "red"
            out.print(Text.assemble(f"  {name:<{width}}  ", (f"{passed}/{ran} passed  {rate}", style)))
    if junit:
        out.print(f"JUnit XML: {junit}")


def doctor_in_console(engine: str = "docker") -> int:
    """`lab doctor`: one line per check, a fix under each failed one; 1 if a blocking check failed.
    With the swarm engine, the swarm's checks follow this host's."""
    out = console()
    failed = 0
    host = DockerEngine()
    checks = run_checks(host, project_root())
    if engine == "swarm":
        from lab.doctor import swarm_checks
        from lab.errors import LabError

        try:
            host_image = host.image_id(node_image())
        except LabError:
            host_image = None
        checks += swarm_checks(host_image)
    for check in checks:
        mark = "[green]ok[/]  " if check.ok else ("[red]FAIL[/]" if check.blocking else "[yellow]warn[/]")
        out.print(f"{mark} {check.name:<16} {check.detail}")
        if not check.ok and check.fix:
            out.print(f"     fix: {check.fix}")
        failed += (not check.ok) and check.blocking
    return 1 if failed else 0
