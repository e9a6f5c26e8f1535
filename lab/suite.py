"""Scenarios as a test suite: pick them by name or glob, run several at once, sum them up.

Each run is still one `run_scenario` in its own compose project and network. This module only
decides which runs, how many at a time, in what order, and when to stop (Ctrl-C, --fail-fast).
Runs spend most of their time waiting (message intervals, timeouts, fault timelines), so they
overlap well even on a small machine. They run on threads of this process: one Engine each,
one shared stop signal, and the main thread stays free to take Ctrl-C.

Over 300 lines: selection, planning, turn-taking and the result are one concept (a suite) whose
parts are tested together (tests/unit/test_suite.py); splitting would scatter its rules.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import heapq
import os
import signal
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lab.engine import Engine, Project
from lab.errors import UsageError
from lab.progress import QuietProgress, RunProgress
from lab.run import RunResult, list_runs, run_scenario
from lab.scenario import Scenario, find_scenario, scenario_names
from lab.verdict import Verdict

GLOB_CHARS = frozenset("*?[")
# A run is mostly asleep, but its start-up, log collection, wire view and report are not: on a
# 2-core machine 8 at once stretch every start-up (docs/benchmarks.md); 6 at once keep the
# longest run's time, now that no health check probes the containers (lab/readiness.py).
RUNS_PER_CPU = 3


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """How many runs at once when `-j` is not given: a few per CPU this process may use."""
    return RUNS_PER_CPU * cpus()


class Turns:
    """At most `n` holders at a time, and a turn that frees goes to the waiting run ranked
    first (its place in the start order), not to whichever thread wakes first: the longest
    run, started first, must not wait behind short ones for its containers, or the whole
    suite waits for it."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiting: list[int] = []
        self._changed = threading.Condition()

    @contextmanager
    def take(self, rank: int):
        with self._changed:
            heapq.heappush(self._waiting, rank)
            try:
                while not (self._free and self._waiting[0] == rank):
                    self._changed.wait()
            except BaseException:  # gone from the queue, or every run ranked after it waits for ever
                self._waiting.remove(rank)
                heapq.heapify(self._waiting)
                self._changed.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._free -= 1
            self._changed.notify_all()  # the next in rank may take a turn still free
        try:
            yield
        finally:
            with self._changed:
                self._free += 1
                self._changed.notify_all()


class TakingTurns:
    """An engine whose project start-ups take turns with the other runs' engines: a few at a time.

    Creating and starting containers is what loads the machine; the conversations after it
    mostly sleep. Overlapping conversations but not start-ups keeps each run's own containers
    starting close together. Teardown does not wait for a turn: a finished run frees the
    machine soonest by going at once."""

    def __init__(self, engine: Engine, turns: Turns, rank: int = 0) -> None:
        self._engine = engine
        self._turns, self._rank = turns, rank

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def project(self, name: str, file: Path) -> Project:
        return _ProjectInTurn(self._engine.project(name, file), self._turns, self._rank)


class _ProjectInTurn:
    """A project whose deploy waits for a turn."""

    def __init__(self, project: Project, turns: Turns, rank: int) -> None:
        self._project, self._turns, self._rank = project, turns, rank
        self.name, self.file = project.name, project.file

    def resolved_config(self) -> str:
        return self._project.resolved_config()

    def deploy(self) -> None:
        with self._turns.take(self._rank):
            self._project.deploy()

    def stop(self, grace: float = 3, talked_out: bool = False) -> None:
        self._project.stop(grace, talked_out)

    def remove(self) -> None:
        self._project.remove()


def select_scenarios(patterns: Sequence[str], directory: Path) -> list[Path]:
    """Scenario files for names, globs (`udp-*`) and paths, in the order given, each once;
    all of them when none is given. A name or glob that matches nothing lists the known ones."""
    known = scenario_names(directory)
    if not patterns:
        return [directory / f"{name}.yaml" for name in known]
    chosen: list[Path] = []
    for pattern in patterns:
        if GLOB_CHARS & set(pattern) and "/" not in pattern:
            matches = [name for name in known if fnmatch.fnmatchcase(name, pattern)]
            if not matches:
                raise UsageError(f"no scenario in {directory} matches {pattern!r}; known: {', '.join(known) or 'none'}")
            chosen += [directory / f"{name}.yaml" for name in matches]
        else:
            chosen.append(find_scenario(pattern, directory))
    return list(dict.fromkeys(chosen))


@dataclass(frozen=True)
class Planned:
    """One run to do: a scenario, and which of its `--repeat` runs this is. `scenario` is None
    for a file that did not validate: it is reported, never run."""

    name: str
    path: Path
    scenario: Scenario | None
    index: int = 1
    repeats: int = 1

    @property
    def label(self) -> str:
        return self.name if self.repeats == 1 else f"{self.name} ({self.index}/{self.repeats})"


def plan_runs(loaded: Iterable[tuple[Scenario, Path]], repeat: int) -> list[Planned]:
    """Every scenario `repeat` times, in selection order: the order of the summary and the report."""
    return [Planned(scenario.name, path, scenario, i, repeat) for scenario, path in loaded for i in range(1, repeat + 1)]


def past_durations(runs_dir: Path) -> dict[str, float]:
    """Median seconds of each scenario's past finished runs, from their manifests."""
    seconds: dict[str, list[float]] = {}
    for run in list_runs(runs_dir) if runs_dir.is_dir() else []:
        if run.get("verdict") not in (Verdict.PASSED, Verdict.FAILED) or not run.get("ended") or not run.get("started"):
            continue
        try:
            took = (_parse_ts(run["ended"]) - _parse_ts(run["started"])).total_seconds()
        except (TypeError, ValueError):
            continue
        seconds.setdefault(str(run.get("scenario")), []).append(took)
    return {name: statistics.median(values) for name, values in seconds.items()}


def _parse_ts(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_order(plan: Sequence[Planned], durations: dict[str, float]) -> list[Planned]:
    """Longest first, so the last run to start is a short one and nothing long trails alone.
    A scenario never run here (no past run in the output directory, as in a fresh CI job) is
    ranked by what its file says it will take (`estimated_seconds`)."""
    return sorted(plan, key=lambda p: -(durations[p.name] if p.name in durations else estimated_seconds(p.scenario)))


RUN_OVERHEAD_S = 8.0  # bring-up, collection, report and teardown of a small run on these machines
START_S_PER_CONTAINER = 0.5
TCP_RETRANSMIT_S = 0.3


def estimated_seconds(scenario: Scenario) -> float:
    """A first guess at a run's length from its file: its longest client's talk (messages times
    the interval, per protocol and session, after its start delay; behind an iterative server the
    TCP talks queue one after another), stretched by each message lost and waited for, or its last
    fault's end if that is later; plus starting its containers and a fixed overhead. Only the
    order it gives matters."""
    server_loss = scenario.server.impair.loss if scenario.server.impair else 0.0
    talks, queued = [], 0.0
    for name in scenario.client_names():
        spec = scenario.client(name)
        messages = spec.message_count or len(spec.messages or ()) or 4
        loss = server_loss + (spec.impair.loss if spec.impair else 0.0)
        # A lost datagram is waited for until the client's timeout; a lost segment, about one
        # retransmission timeout.
        wait = {"udp": spec.timeout, "tcp": TCP_RETRANSMIT_S}
        per_proto = {proto: messages * (spec.interval + loss * wait[proto]) for proto in spec.proto}
        talks.append(spec.start_after + spec.sessions * sum(per_proto.values()))
        if scenario.server.mode == "iterative":
            queued += spec.sessions * per_proto.get("tcp", 0.0)
    faults_end = max((f.at + (f.duration or 0.0) for f in scenario.faults), default=0.0)
    containers = scenario.clients.count + 2 + len(scenario.routers)
    return max([*talks, queued, faults_end]) + START_S_PER_CONTAINER * containers + RUN_OVERHEAD_S


@dataclass
class Outcome:
    """What became of one planned run. `result` is None when it never started; then `skipped`
    says why (this host cannot run it, --fail-fast, Ctrl-C)."""

    planned: Planned
    result: RunResult | None = None
    seconds: float = 0.0
    skipped: str | None = None
    started_at: str | None = None
    error: str | None = None  # why it could not run at all (the engine is down)

    @property
    def status(self) -> str:
        """passed, failed, timeout, error, interrupted or skipped."""
        if self.error:
            return "error"
        if self.result is None:
            return "skipped"
        if self.skipped:  # stopped on purpose by --fail-fast: not a verdict on the scenario
            return "skipped"
        outcome = self.planned.scenario.outcome if self.planned.scenario else "passed"
        if outcome != "passed":  # a scenario that shows a broken program passes by failing as described
            return "passed" if self.result.as_expected(outcome) else "failed"
        return str(self.result.verdict)


class SuiteProgress(Protocol):
    """What the suite reports while it goes; a console renders it, tests may ignore it."""

    def run_started(self, planned: Planned) -> RunProgress: ...
    def run_finished(self, outcome: Outcome) -> None: ...
    def stopping(self, reason: str) -> None: ...


@dataclass
class SuiteResult:
    outcomes: list[Outcome]  # in plan order, whatever the order they ran in
    interrupted: bool = False
    stopped_by: str | None = None
    seconds: float = 0.0
    pass_rates: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when every run that ran passed (a scenario this host cannot run is no failure),
        1 otherwise, 130 when interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status not in ("passed", "skipped")]


def pass_rates(outcomes: Iterable[Outcome]) -> dict[str, tuple[int, int]]:
    """Per scenario: (runs passed, runs that finished), in first-seen order; skipped runs do not count."""
    rates: dict[str, list[int]] = {}
    for o in outcomes:
        entry = rates.setdefault(o.planned.name, [0, 0])
        if o.status in ("passed", "failed", "timeout", "error"):
            entry[1] += 1
            entry[0] += o.status == "passed"
    return {name: (passed, ran) for name, (passed, ran) in rates.items()}


def run_suite(
    plan: Sequence[Planned],
    new_engine: Callable[[], Engine],
    runs_dir: Path,
    root: Path,
    *,
    jobs: int,
    fail_fast: bool = False,
    progress: SuiteProgress | None = None,
    cannot_run: Callable[[Scenario], str | None] = lambda scenario: None,
    durations: dict[str, float] | None = None,
    run: Callable[..., RunResult] = run_scenario,
    starts: int | None = None,
) -> SuiteResult:
    """Run the plan, `jobs` at a time, longest first; results come back in plan order.

    Ctrl-C (or SIGTERM) stops every run: each tears its project down and keeps its logs; runs
    not yet started are reported as skipped. With `fail_fast`, the first run that does not pass
    stops the others the same way. At most `starts` runs (default: one per CPU) bring their
    containers up at a time (see TakingTurns)."""
    if jobs < 1:
        raise UsageError(f"-j must be at least 1, got {jobs}")
    progress = progress or _Quiet()
    started = time.monotonic()
    stop = threading.Event()
    outcomes: dict[int, Outcome] = {}
    position = {id(p): i for i, p in enumerate(plan)}
    queue = deque(enumerate(start_order(plan, durations or {})))
    running: dict[Future, Planned] = {}
    stopped_by: str | None = None
    interrupted = False

    def finish(future: Future, planned: Planned) -> None:
        nonlocal stopped_by
        outcome = future.result()
        if stop.is_set() and stopped_by and not interrupted and outcome.result is not None \
                and outcome.result.verdict == Verdict.INTERRUPTED:
            outcome.skipped = stopped_by
        outcomes[position[id(planned)]] = outcome
        progress.run_finished(outcome)
        if fail_fast and not stop.is_set() and outcome.status not in ("passed", "skipped"):
            stopped_by = f"stopped by --fail-fast after {planned.label} {outcome.status}"
            progress.stopping(stopped_by)
            stop.set()

    turns = Turns(max(1, starts or cpus()))
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lab-run")
    try:
        try:
            while queue or running:
                while queue and len(running) < jobs and not stop.is_set():
                    rank, planned = queue.popleft()
                    reason = cannot_run(planned.scenario)
                    if reason:
                        outcome = Outcome(planned, skipped=reason)
                        outcomes[position[id(planned)]] = outcome
                        progress.run_finished(outcome)
                        continue
                    future = pool.submit(_one_run, run, planned,
                                         lambda rank=rank: TakingTurns(new_engine(), turns, rank),
                                         runs_dir, root, stop, progress.run_started(planned))
                    running[future] = planned
                if stop.is_set() and not running:
                    break
                # A short wait, so Ctrl-C reaches this thread between waits.
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(future, running.pop(future))
        except KeyboardInterrupt:
            interrupted = True
            stopped_by = "interrupted"
            stop.set()
            progress.stopping("interrupted: stopping every run, collecting logs and cleaning up")
            with _patient(progress):
                while running:
                    done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        finish(future, running.pop(future))
        except BaseException:
            stop.set()  # a bug surfacing here: the other runs still stop and clean up first
            raise
    finally:
        pool.shutdown(wait=True)
    for _, planned in queue:
        outcomes[position[id(planned)]] = Outcome(planned, skipped=f"not started: {stopped_by}")
    ordered = [outcomes[i] for i in sorted(outcomes)]
    return SuiteResult(ordered, interrupted=interrupted, stopped_by=stopped_by,
                       seconds=time.monotonic() - started, pass_rates=pass_rates(ordered))


def _one_run(run: Callable[..., RunResult], planned: Planned, new_engine: Callable[[], Engine], runs_dir: Path,
             root: Path, stop: threading.Event, progress: RunProgress) -> Outcome:
    """One run on a worker thread, with its own engine (and so its own Docker connections)."""
    began = time.monotonic()
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    result = run(planned.scenario, new_engine(), runs_dir, root, progress=progress,
                          source=planned.path, stop=stop)
    return Outcome(planned, result=result, seconds=time.monotonic() - began, started_at=stamp)


@contextmanager
def _patient(progress: SuiteProgress):
    """While the runs tear down, another Ctrl-C only says so: cutting teardown short leaves
    containers behind."""
    def on_signal(signum, frame):
        progress.stopping("still cleaning up; please wait")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Quiet:
    def run_started(self, planned: Planned) -> RunProgress:
        return QuietProgress()

    def run_finished(self, outcome: Outcome) -> None: ...
    def stopping(self, reason: str) -> None: ...
