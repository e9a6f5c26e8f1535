"""One run of a scenario: bring it up under a unique compose project, drive its fault timeline,
wait for the clients, collect everything, tear down, write the run directory.

The run directory loses nothing: it is created before anything starts, and logs, events and
the conversation table are written in a `finally`, whether the run passed, failed, timed out
or was interrupted.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import __version__
from lab.collect import add_records, collect_run, prepare_records
from lab.compose import all_wait_at_barrier, barrier_clients, node_image, render, start_deadline, to_yaml
from lab.compose_topology import routed_bridges, run_subnets
from lab.echo.barrier import poll_interval
from lab.engine import ContainerInfo, Engine, Project, owner_token
from lab.errors import LabError, UsageError
from lab.expect import Record, evaluate
from lab.faults import FaultTimeline, apply_fault
from lab.hostrules import Mark, close_bridges, open_bridges
from lab.html import write_report
from lab.logs import EventFile, conversations_csv, join_views
from lab.phases import (
    Phases,
    await_ready,
    control_directory,
    finished,
    forget_done,
    last_client_record,
    let_go,
    ready_directories,
    release_start,
    up_directory,
)
from lab.programs.diagnose import clients_by_address, diagnose, diagnosis_records
from lab.programs.views import derive_views
from lab.progress import QuietProgress, RunProgress
from lab.readiness import watched_by_the_lab
from lab.records.schema import utc_timestamp
from lab.scenario import Scenario
from lab.streams import StreamCheck, problems
from lab.verdict import Verdict
from lab.wire.file import write_wire_view
from lab.wire.records import check_records
from lab.wire.service import CAPTURE_DIR
from lab.wire.view import build_wire_view, drop_details

POLL_SECONDS = 0.25
# Listing a run's containers costs the daemon about 1 ms per container: with hundreds of them,
# polling every 0.25 s would keep it busy listing instead of serving the run. The interval
# grows so the listing takes at most this share of the time.
POLL_SHARE = 0.2


@dataclass
class RunResult:
    run_id: str
    directory: Path
    verdict: Verdict
    clients: dict[str, int | None] = field(default_factory=dict)
    conversations: list = field(default_factory=list)
    expectations: list = field(default_factory=list)
    diagnoses: list = field(default_factory=list)
    error: str | None = None
    report: Path | None = None
    details: list[str] = field(default_factory=list)  # worth knowing, not a failure (e.g. capture drops)
    phases: Phases = field(default_factory=Phases)

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def as_expected(self, outcome: str = "passed") -> bool:
        """Did the run end as its scenario says a working lab ends it? `passed` for most; `failed`
        for a scenario that shows a broken program: the run failed and every expectation (what
        the lab must find and explain) held."""
        if outcome == "failed":
            return self.verdict == Verdict.FAILED and bool(self.expectations) and all(r.passed for r in self.expectations)
        return self.verdict == Verdict.PASSED


@dataclass
class _Run:
    """What a run knows while it goes, shared by its phases (drive, then finish)."""

    scenario: Scenario
    engine: Engine
    project: Project
    directory: Path
    manifest: dict[str, Any]
    result: RunResult
    progress: RunProgress
    keep: bool
    seen: dict[str, ContainerInfo] = field(default_factory=dict)  # by container name
    lab_records: list[Record] = field(default_factory=list)  # the fault records
    brought_up: bool = False  # deploy was attempted: there may be something to tear down
    control: Path | None = None  # the start barrier's directory, when the clients wait at it
    held: list[str] = field(default_factory=list)  # clients that wait at the barrier, and stay once done
    described: Callable[..., Any] | None = None  # waits for the engine's versions and the resolved project

    def done(self) -> dict[str, int]:
        """Each client's exit status once it is over: it says so and stays up until the teardown
        stops it (lab/phases.py `finished`), or its container exited. The client's own word
        comes first: a teardown that has to kill a finished client does not undo its conversation."""
        statuses = {c.service: c.exit_code for c in self.seen.values()
                    if c.role == "client" and c.status in ("exited", "dead")}
        if self.control:
            statuses.update(finished(self.control, self.held))
        return statuses


def new_run_id(scenario: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{scenario}-{secrets.token_hex(3)}"


def run_scenario(
    scenario: Scenario,
    engine: Engine,
    runs_dir: Path,
    root: Path,
    *,
    keep: bool = False,
    progress: RunProgress | None = None,
    source: Path | None = None,
    ensure_image: Callable[[], str] | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Run a scenario end to end; never leaves containers behind unless `keep`.

    `stop` ends the run like Ctrl-C does, from another thread (a suite's Ctrl-C, --fail-fast)."""
    scenario = engine.scenario_for(scenario)
    progress = progress or QuietProgress()
    run_id = new_run_id(scenario.name)
    project = "lab-" + run_id.split("-", 2)[2].replace("_", "-")
    directory = runs_dir / run_id
    (directory / "logs").mkdir(parents=True)
    compose_file = directory / "compose.yaml"
    if scenario.capture:
        # The capture helper is root without DAC_OVERRIDE: it writes here through the group.
        (directory / CAPTURE_DIR).mkdir()
        (directory / CAPTURE_DIR).chmod(0o775)
    subnets = run_subnets(scenario, engine)
    # The start barrier lives in files of the run directory: only where the containers see them.
    barrier = barrier_clients(scenario) if engine.shares_host_files else []
    control = control_directory(directory, barrier)
    if keep:
        let_go(control, utc_timestamp)  # kept containers are left as the clients leave them: exited
    compose = render(scenario, run_id=run_id, owner=owner_token(), capture_group=os.getgid(), subnets=subnets,
                     control_dir=str(control.resolve()) if barrier else None, run_dir=directory.resolve())
    # Nothing talks before the release: the lab itself sees the server and helpers get ready.
    watched = (watched_by_the_lab(compose["services"], str(up_directory(control.resolve())))
               if barrier and all_wait_at_barrier(scenario) else [])
    ready_directories(control, watched)
    prepare_records(directory, compose["services"])
    compose_file.write_text(to_yaml(compose, f"# lab run {run_id}: rendered from {source or scenario.name}\n"))
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "project": project,
        "scenario": scenario.name,
        "scenario_file": str(source) if source else None,
        "scenario_model": scenario.model_dump(mode="json"),
        "started": utc_timestamp(),
        "ended": None,
        "verdict": Verdict.RUNNING,
        "versions": {"lab": __version__, "python": platform.python_version()},
        "subnets": subnets,
        "host_rules": [],
    }
    write_json(directory / "manifest.json", manifest)
    progress.started(run_id, directory, scenario.clients.count)
    if scenario.placement is not None and not engine.places_on_nodes:
        progress.message("placement: ignored: this engine runs every container on one host (--engine swarm places them)")

    result = RunResult(run_id=run_id, directory=directory, verdict=Verdict.ERROR)
    run = _Run(scenario, engine, engine.project(project, compose_file), directory, manifest, result, progress, keep,
               control=control if barrier else None, held=barrier)
    try:
        # What the manifest records of the engine and the project is asked meanwhile (two Compose
        # processes, half a second): nothing below waits for it before the clients are released.
        run.described = _in_background(lambda: (engine.versions(), run.project.resolved_config()))
        if ensure_image:
            progress.message("checking the node image")
            ensure_image()
        bridges = routed_bridges(scenario, run_id)
        if bridges:
            progress.message("accepting routed traffic on the run's own bridges (DOCKER-USER)")
            manifest["host_rules"] = bridges
            manifest["host_rules_mark"] = Mark(run_id, owner_token(), os.environ.get("LAB_SESSION", "")).comment()
            open_bridges(engine, node_image(), bridges, Mark.parse(manifest["host_rules_mark"]))
        progress.message(f"starting {project}")
        run.brought_up = True
        with result.phases.timed("bring_up") as notes:
            run.project.deploy()
            notes["containers"] = len(compose["services"])
            # Every container is up; the clients may talk once each waits (lab/phases.py).
            late = await_ready(control, barrier, lambda: _exited(run), start_deadline(scenario), services=watched)
            if late & set(watched):
                raise LabError(_not_ready(run, late & set(watched)))
            if late:
                notes["not_ready"] = sorted(late)
                progress.message(f"{len(late)} clients were not ready in time; starting without them")
            _describe(run)
            manifest["released"] = release_start(control, utc_timestamp)
        progress.message(f"up: {result.phases.summary()}; the clients start now")
        manifest["subnet"] = engine.network_subnet(project)
        with result.phases.timed("conversation"):
            result.verdict = _drive(run, stop)
    except KeyboardInterrupt:
        result.verdict = Verdict.INTERRUPTED
        progress.message("interrupted: collecting logs and cleaning up")
    except LabError as exc:
        result.verdict = Verdict.ERROR
        result.error = str(exc)
    finally:
        with _shielded_from_interrupts(progress):
            _finish(run)
    return result


def _drive(run: _Run, stop: threading.Event | None = None) -> Verdict:
    """Run the fault timeline and wait for every client to exit, or for the scenario's timeout.

    Faults keep time from when the clients started talking (printed their first record), not
    from when compose said the containers started: on a loaded machine a program may start
    seconds later, and a fault is written against the conversation. A fault on a client counts
    from that client's start, any other from the moment every client has started."""
    scenario, engine, seen, lab_records, progress = run.scenario, run.engine, run.seen, run.lab_records, run.progress
    start = time.monotonic()
    timeline = FaultTimeline(list(scenario.faults))
    total = scenario.clients.count
    talking: dict[str, float] = {}  # client service -> when it was first seen talking
    everyone: list[float] = []  # when every client was talking, once known
    client_names = set(scenario.client_names())

    def elapsed(fault) -> float | None:
        began = talking.get(fault.target) if fault.target in client_names else (everyone[0] if everyone else None)
        return None if began is None else time.monotonic() - began

    # A client the scenario kills or stops on purpose is judged by the expectations, not its exit.
    doomed = {f.target for f in scenario.faults if f.action in ("kill", "stop") and f.target != "server"}

    def carry_out(steps) -> None:
        for step in steps:
            if step.action in ("start", "restart") and step.fault.target in run.held:
                forget_done(run.control, step.fault.target)
            record = apply_fault(scenario, engine, run.project.name, _by_service(seen), step, elapsed(step.fault) or 0.0)
            lab_records.append(record)
            if record["ok"]:
                timeline.applied(step)

    progress.clients(0, total)
    last_done = -1
    look = 0.0  # when the daemon is next asked for the run's containers
    while True:
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt  # told to stop from outside: the same path as Ctrl-C
        listed = time.monotonic()
        if listed >= look:
            _observe(run)
            look = listed + max(POLL_SECONDS, (time.monotonic() - listed) / POLL_SHARE)
            clients = [c for c in seen.values() if c.role == "client"]
            if scenario.faults and not everyone and _all_talking(engine, clients, total, talking):
                everyone.append(time.monotonic())
        carry_out(timeline.due(elapsed))
        statuses = run.done()
        done = len(statuses)
        if done != last_done:
            progress.clients(done, total)
            last_done = done
        if len(clients) == total and done == total:
            # Put right what is still in force (a pause, a cut cable) so the teardown finds every
            # container as it should be and its logs are complete.
            carry_out(timeline.outstanding_undos())
            # How many leave only with the teardown, a few at a time (lab/echo/barrier.py).
            run.result.phases.note("conversation", clients_held=sum(1 for c in clients if c.status == "running"))
            if any(r.get("ok") is False for r in lab_records):
                return Verdict.ERROR
            ok = all(statuses[c.service] == 0 for c in clients if c.service not in doomed)
            return Verdict.PASSED if ok else Verdict.FAILED
        if time.monotonic() - start > scenario.timeout:
            progress.message(f"timeout: {total - done} of {total} clients still running after {scenario.timeout:g} s")
            return Verdict.TIMEOUT
        # The held clients say they are done in their files, cheap to read often (as often as they
        # looked for the start file); only an exit needs the daemon's list.
        wait = look - time.monotonic()
        if run.held:
            wait = min(wait, poll_interval(len(run.held)))
        time.sleep(max(0.0, wait))


def _all_talking(engine: Engine, clients: list[ContainerInfo], total: int, talking: dict[str, float]) -> bool:
    """Has every client printed a record (or already exited)? `talking` notes when each was first seen to."""
    for c in clients:
        if c.service not in talking and (c.status in ("exited", "dead") or b'"event"' in engine.container_logs(c.id)):
            talking[c.service] = time.monotonic()
    return len(clients) == total and len(talking) == total


def _observe(run: _Run) -> None:
    """Refresh what is known of the run's containers, keeping an IP once seen (exited ones lose it)."""
    for info in run.engine.containers(run.project.name):
        known = run.seen.get(info.name)
        if known and not info.ip:
            info.ip = known.ip
        run.seen[info.name] = info


def _exited(run: _Run) -> set[str]:
    _observe(run)
    return {c.service for c in run.seen.values() if c.status in ("exited", "dead")}


def _not_ready(run: _Run, services: set[str]) -> str:
    """Why the clients cannot be released: what never got ready, and how each stopped."""
    by_service = _by_service(run.seen)
    said = []
    for name in sorted(services):
        info = by_service.get(name)
        said.append(f"{name} (exited with {info.exit_code})" if info and info.status in ("exited", "dead")
                    else f"{name} (not ready in time)")
    return f"not ready, so the clients were not started: {', '.join(said)}; the records and logs say why"


def _by_service(seen: dict[str, ContainerInfo]) -> dict[str, ContainerInfo]:
    return {c.service: c for c in seen.values()}


def _finish(run: _Run) -> None:
    """Stop, collect, tear down, write: each step guarded so the later ones still happen."""
    scenario, engine, directory, manifest, result, seen, progress = (
        run.scenario, run.engine, run.directory, run.manifest, run.result, run.seen, run.progress)
    errors: list[str] = []
    if run.brought_up:
        if not run.keep:
            # Stopped first, so every program's SIGTERM summary is in the logs collected next.
            try:
                progress.message("stopping containers")
                with result.phases.timed("stopping"):
                    run.project.stop(talked_out=len(run.done()) == scenario.clients.count)
            except (LabError, OSError) as exc:
                errors.append(f"stop: {exc}")
        try:
            _observe(run)
        except LabError as exc:
            errors.append(f"inspect: {exc}")
    try:
        _describe(run, timeout=30)  # a run that failed before its release still says what it ran on
    except (LabError, TimeoutError) as exc:
        errors.append(f"describe: {exc}")
    with result.phases.timed("collection") as notes:
        images = {c.name: engine_safe(lambda c=c: engine.image_of(c.id)) for c in seen.values()}
        checks = collect_run(engine, seen.values(), directory, run.lab_records, errors)
        notes["containers"] = len(checks)
    if run.brought_up and not run.keep:
        progress.message("removing containers and network")
    # Everything the analysis reads is in the run directory by now: the removal goes on beside it
    # (a second or more with hundreds of containers), and the verdict waits for both.
    removed = _in_background(lambda: _remove(run))
    try:
        with result.phases.timed("analysis"):
            wire = _analyse(run)
    finally:
        errors += removed()
    # No expectation reads a message's text: leaving it out keeps what a check holds small.
    _judge(scenario, result, EventFile(directory / "events.jsonl", slim=True, then=check_records(wire)), errors,
           checks)
    manifest.update(
        ended=utc_timestamp(),
        verdict=result.verdict,
        error=result.error,
        details=result.details,
        kept=run.keep,
        images={"node": engine_safe(lambda: engine.image_id(node_image())), "containers": images},
        clients=result.clients,
        diagnoses=[d.as_dict() for d in result.diagnoses],
        expectations=[r.model_dump(mode="json") for r in result.expectations],
        containers={c.name: {"service": c.service, "role": c.role, "ip": c.ip, "exit_code": c.exit_code,
                             **({"node": c.node} if c.node else {})}
                    for c in seen.values()},
        phases=result.phases.manifest(),
        streams={name: check.summary() for name, check in checks.items()},
    )
    write_json(directory / "manifest.json", manifest)
    try:
        result.report = write_report(directory)
    except (LabError, OSError) as exc:  # the run stands without its page; `lab report` can retry
        progress.message(f"report not written: {exc}")


def _remove(run: _Run) -> list[str]:
    """Remove the run's containers and network, then its host rules; what went wrong, said."""
    errors = []
    if run.brought_up and not run.keep:
        try:
            with run.result.phases.timed("removal"):
                run.project.remove()
        except (LabError, OSError) as exc:
            errors.append(f"down: {exc} (run `lab clean`)")
    if run.manifest.get("host_rules") and not run.keep:
        try:
            close_bridges(run.engine, node_image(), run.manifest["host_rules"],
                          Mark.parse(run.manifest["host_rules_mark"]))
        except (LabError, OSError) as exc:
            errors.append(f"host rules: {exc} (run `lab clean`)")
    return errors


def _analyse(run: _Run) -> dict[str, Any]:
    """The records joined into conversations, the wire view, the diagnoses and each client's
    status; returns the wire view."""
    scenario, directory, result = run.scenario, run.directory, run.result
    events_path = directory / "events.jsonl"
    # Programs that print no records: their views come from the socket tables and their output.
    add_records(events_path, derive_views(EventFile(events_path)))
    events = EventFile(events_path)
    if run.manifest.get("released"):
        result.phases.note("conversation", clients_talked=last_client_record(events, run.manifest["released"]))
    result.conversations = join_views(events)
    wire = _wire_view(scenario, directory, events, result)
    result.diagnoses = diagnose(events, wire, clients_by_address=clients_by_address(result.conversations))
    add_records(events_path, diagnosis_records(result.diagnoses, utc_timestamp()))
    write_text(directory / "clients.csv", conversations_csv(result.conversations))
    statuses = run.done()
    result.clients = {c.service: statuses.get(c.service) for c in run.seen.values() if c.role == "client"}
    return wire


def _wire_view(scenario: Scenario, directory: Path, events: Iterable[Record], result: RunResult) -> dict[str, Any]:
    """The third view (lab/wire): wire.json, the wire columns of each row, capture drops as details."""
    networks = list(scenario.networks) if scenario.networks else None
    server_networks = (scenario.server.networks or networks[:1]) if networks else None
    view = build_wire_view(directory, events, result.conversations, scenario.capture, networks, server_networks)
    write_wire_view(directory, view)
    result.details += drop_details(view)
    return view


def _judge(scenario: Scenario, result: RunResult, events: Iterable[Record], errors: list[str],
           checks: dict[str, StreamCheck]) -> None:
    """The final verdict: expectations count only for a run that finished; lost records fail
    it (nothing measured on an incomplete record can be trusted); a teardown problem turns a pass
    into an error (something may be left behind)."""
    if result.verdict in (Verdict.PASSED, Verdict.FAILED):
        result.expectations = evaluate(scenario.expect, events)
        if any(not r.passed for r in result.expectations):
            result.verdict = Verdict.FAILED
    lost = problems(c for c in checks.values() if c.missing)
    if lost and result.verdict == Verdict.PASSED:
        result.verdict = Verdict.FAILED
    if errors and result.verdict == Verdict.PASSED:
        result.verdict = Verdict.ERROR
    lost_text = "records lost: " + "; ".join(lost) if lost else None
    result.error = "; ".join(filter(None, [result.error, lost_text, *errors])) or None


def _describe(run: _Run, timeout: float | None = None) -> None:
    """Put the engine's versions and the project as Compose resolves it into the manifest, once."""
    if run.described is None or "compose_config" in run.manifest:
        return
    versions, run.manifest["compose_config"] = run.described(timeout)
    run.manifest["versions"].update(versions)


def _in_background(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start `fn` in a thread; the returned function waits for its result (or raises its error)."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future.result


def engine_safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except LabError:
        return None


@contextmanager
def _shielded_from_interrupts(progress: RunProgress):
    """Ctrl-C during teardown says it is already cleaning up instead of cutting it short."""
    def on_signal(signum, frame):
        progress.message("still cleaning up; please wait")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def write_text(path: Path, text: str) -> None:
    """Whole or not at all: a run killed mid-write never leaves a torn file behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Past runs, newest first, from their manifests."""
    runs = []
    for manifest in runs_dir.glob("*/manifest.json"):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        data.setdefault("run_id", manifest.parent.name)
        data["directory"] = str(manifest.parent)
        runs.append(data)
    runs.sort(key=lambda d: d.get("started") or "", reverse=True)
    return runs


def find_run(runs_dir: Path, run: str | None) -> Path:
    runs = list_runs(runs_dir)
    if not runs:
        raise LabError(f"no runs in {runs_dir}; start one with `lab run basic`")
    if run is None:
        return Path(runs[0]["directory"])
    exact = [d for d in runs if d["run_id"] == run or Path(d["directory"]) == Path(run)]
    matches = exact or [d for d in runs if d["run_id"].startswith(run)]
    if len(matches) == 1:
        return Path(matches[0]["directory"])
    if matches:
        names = ", ".join(d["run_id"] for d in matches[:5])
        raise UsageError(f"run {run!r} is ambiguous: {names}{', ...' if len(matches) > 5 else ''}")
    raise UsageError(f"no run {run!r} in {runs_dir}; `lab runs` lists them")

