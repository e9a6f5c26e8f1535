"""A run's verdict logic on the in-memory engine (no Docker): timeouts, faults on purpose and
refused, teardown errors, Ctrl-C at every phase; and both engines satisfy the `Engine` Protocol.

The real engine's side of the same stories is in tests/docker/test_run.py."""

from __future__ import annotations

import inspect
import json
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from fake_engine import FakeEngine, FakeProject

import lab.run
from lab.engine import ComposeProject, DockerEngine, Engine, Project
from lab.engine.swarm.engine import SwarmEngine, SwarmStack
from lab.errors import EngineError
from lab.run import run_scenario
from lab.scenario import Scenario
from lab.suite import TakingTurns, Turns, _ProjectInTurn

FIXTURE = Path(__file__).parents[1] / "fixtures" / "events" / "threaded-ok.jsonl"
ADDED_BY_THE_LAB = ("service", "container", "ip")


def recorded_outputs() -> tuple[dict[str, str], dict[str, str]]:
    """What each service of a real 3-client TCP run printed, and each one's IP."""
    outputs: dict[str, str] = defaultdict(str)
    ips = {}
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        ips[record["service"]] = record["ip"]
        service = record["service"]
        printed = {k: v for k, v in record.items() if k not in ADDED_BY_THE_LAB}
        outputs[service] += json.dumps(printed) + "\n"
    return dict(outputs), ips


def scenario(**fields) -> Scenario:
    return Scenario.model_validate({
        "name": "fake", "description": "driven by the fake engine",
        "server": {"mode": "threaded", "proto": ["tcp"]}, "clients": {"count": 3, "proto": ["tcp"]},
        "capture": False,  # a pcap needs a real network; the wire view has its own tests
        "expect": [{"check": "echoed_intact"}, {"check": "views_agree"}], **fields})


class RecordedProgress:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def started(self, run_id, directory, total_clients) -> None: ...
    def message(self, text: str) -> None:
        self.messages.append(text)
    def clients(self, finished: int, total: int) -> None: ...


@pytest.fixture
def engine() -> FakeEngine:
    outputs, ips = recorded_outputs()
    return FakeEngine(outputs=outputs, ips=ips)


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(lab.run, "POLL_SECONDS", 0.01)


def run(engine: FakeEngine, tmp_path: Path, progress=None, **fields):
    result = run_scenario(scenario(**fields), engine, tmp_path, tmp_path, progress=progress or RecordedProgress())
    manifest = json.loads((result.directory / "manifest.json").read_text())
    return result, manifest


def torn_down(engine: FakeEngine) -> bool:
    return engine.calls.count("stop") == 1 and engine.calls.count("remove") == 1 and not engine.running


def test_a_run_whose_clients_all_succeed_passes_with_everything_written(engine, tmp_path):
    result, manifest = run(engine, tmp_path)
    assert result.verdict == manifest["verdict"] == "passed", result.error
    assert result.clients == {"client1": 0, "client2": 0, "client3": 0}
    assert [r.passed for r in result.expectations] == [True, True]
    assert len(result.conversations) == 3 and all(c.flag == "ok" for c in result.conversations)
    assert manifest["versions"]["engine"] == "fake" and manifest["subnet"] == "10.99.0.0/24"
    assert sorted(p.name for p in (result.directory / "logs").iterdir()) == sorted(
        f"{manifest['project']}-{s}-1.log" for s in ("server", "client1", "client2", "client3"))
    assert (result.directory / "events.jsonl").read_text().count("\n") == len(FIXTURE.read_text().splitlines())
    assert torn_down(engine)
    # Stopped before the logs are collected (so the summaries are in them), removed after.
    assert engine.calls.index("stop") < engine.calls.index("container_output") < engine.calls.index("remove")


def test_clients_that_say_they_are_done_end_the_conversation_and_their_word_is_their_status(engine, tmp_path):
    engine.stay, engine.stop_code = True, 137  # the teardown had to kill them: their talk was over
    engine.exit_codes["client2"] = 1
    result, manifest = run(engine, tmp_path)
    assert manifest["phases"]["detail"]["conversation"]["clients_held"] == 3  # none left by itself
    assert result.clients == {"client1": 0, "client2": 1, "client3": 0}
    assert result.verdict == "failed" and torn_down(engine)
    assert engine.talked_out is True  # every client said it is over: the teardown needs fewer waves


def test_clients_still_running_at_the_timeout_give_a_timeout(engine, tmp_path):
    engine.ticks_to_finish = None
    progress = RecordedProgress()
    result, manifest = run(engine, tmp_path, progress, timeout=0.2)
    assert result.verdict == manifest["verdict"] == "timeout" and result.exit_code == 1
    assert "timeout: 3 of 3 clients still running after 0.2 s" in progress.messages
    assert result.expectations == []  # a run that did not finish is not judged on its records
    assert torn_down(engine)
    assert engine.talked_out is False  # clients still talking leave before what they talk to


def test_a_client_that_dies_unplanned_fails_the_run(engine, tmp_path):
    engine.exit_codes["client3"] = 137
    result, manifest = run(engine, tmp_path)
    assert result.verdict == manifest["verdict"] == "failed"
    assert manifest["clients"]["client3"] == 137
    assert torn_down(engine)


def test_a_client_killed_on_purpose_is_judged_by_the_expectations_not_its_exit(engine, tmp_path):
    engine.ticks_to_finish = 3  # the kill at t=0 lands while the clients still run
    result, manifest = run(engine, tmp_path, faults=[{"at": 0, "action": "kill", "target": "client3"}],
                           expect=[{"check": "fault", "action": "kill", "target": "client3"},
                                   {"check": "clients_ok", "service": ["client1", "client2"], "min": 2}])
    assert result.verdict == manifest["verdict"] == "passed", result.error
    assert manifest["clients"] == {"client1": 0, "client2": 0, "client3": 137}
    assert "act kill" in engine.calls
    faults = [json.loads(line) for line in (result.directory / "events.jsonl").read_text().splitlines()
              if '"event": "fault"' in line]
    assert [(f["action"], f["target"], f["ok"]) for f in faults] == [("kill", "client3", True)]
    assert torn_down(engine)


def test_a_refused_fault_is_an_error_and_is_never_undone(engine, tmp_path):
    engine.ticks_to_finish = 3
    engine.on["act pause"] = raises(EngineError("docker: act: container is not running"))
    result, manifest = run(engine, tmp_path, faults=[{"at": 0, "action": "pause", "target": "server", "duration": 0.01}])
    assert result.verdict == manifest["verdict"] == "error"
    assert "act unpause" not in engine.calls
    faults = [json.loads(line) for line in (result.directory / "events.jsonl").read_text().splitlines()
              if '"event": "fault"' in line]
    assert [(f["action"], f["ok"], f["detail"]) for f in faults] == [
        ("pause", False, "docker: act: container is not running")]
    assert torn_down(engine)


def test_a_fault_still_in_force_when_the_clients_end_is_undone_before_teardown(engine, tmp_path):
    engine.ticks_to_finish = 3
    result, manifest = run(engine, tmp_path, faults=[{"at": 0, "action": "disconnect", "target": "client2", "duration": 600}])
    assert result.verdict == manifest["verdict"] == "passed", result.error
    assert engine.calls.index("act disconnect") < engine.calls.index("act reconnect") < engine.calls.index("stop")


def test_a_node_cut_goes_to_the_engine_as_a_node_action_and_is_on_the_timeline(engine, tmp_path):
    engine.ticks_to_finish = 3
    result, manifest = run(engine, tmp_path, faults=[{"at": 0, "action": "disconnect", "target": "node3", "duration": 0.01}],
                           expect=[{"check": "fault", "action": "disconnect", "target": "node3"}])
    assert result.verdict == manifest["verdict"] == "passed", result.error
    assert engine.calls.index("act disconnect node3") < engine.calls.index("act reconnect node3") < engine.calls.index("stop")
    faults = [json.loads(line) for line in (result.directory / "events.jsonl").read_text().splitlines()
              if '"event": "fault"' in line]
    assert [(f["action"], f["target"], f["undo"], f["ok"]) for f in faults] == [
        ("disconnect", "node3", False, True), ("reconnect", "node3", True, True)]
    assert torn_down(engine)


def test_a_teardown_error_turns_a_pass_into_an_error_that_says_what_to_do(engine, tmp_path):
    engine.on["remove"] = raises(EngineError("`docker compose down` failed with exit status 1"))
    result, manifest = run(engine, tmp_path)
    assert result.verdict == manifest["verdict"] == "error"
    assert [r.passed for r in result.expectations] == [True, True]  # the run itself was fine
    assert manifest["error"] == "down: `docker compose down` failed with exit status 1 (run `lab clean`)"
    assert engine.calls.count("remove") == 1


def test_the_removal_goes_on_beside_the_analysis_and_the_verdict_waits_for_it(engine, tmp_path):
    """The analysis reads only the run directory: it need not wait for hundreds of containers to
    be removed, but the verdict must (a failed removal is an error)."""
    seen = {}

    def slow_failing_removal():
        # The analysis writes clients.csv: it does so while the removal still runs.
        seen["analysed meanwhile"] = wait_for_file(tmp_path, "clients.csv", seconds=10)
        raise EngineError("network has active endpoints")

    engine.on["remove"] = slow_failing_removal
    result, manifest = run(engine, tmp_path)
    assert seen["analysed meanwhile"]
    assert result.verdict == manifest["verdict"] == "error"
    assert manifest["error"] == "down: network has active endpoints (run `lab clean`)"
    assert "removal" in manifest["phases"]["detail"] and "analysis" in manifest["phases"]["detail"]


def wait_for_file(directory: Path, name: str, seconds: float) -> bool:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if any(directory.rglob(name)):
            return True
        time.sleep(0.01)
    return False


def test_a_stop_error_still_collects_logs_and_removes_everything(engine, tmp_path):
    engine.on["stop"] = raises(EngineError("stop timed out"))
    result, manifest = run(engine, tmp_path)
    assert result.verdict == manifest["verdict"] == "error" and manifest["error"] == "stop: stop timed out"
    assert len(list((result.directory / "logs").iterdir())) == 4
    assert "remove" in engine.calls and not engine.running


def test_a_failed_deploy_is_an_error_and_removes_what_was_half_created(engine, tmp_path):
    engine.on["deploy"] = raises(EngineError("`docker compose up` failed: no such image"))
    result, manifest = run(engine, tmp_path)
    assert result.verdict == manifest["verdict"] == "error"
    assert manifest["error"].startswith("`docker compose up` failed")
    assert engine.calls.count("remove") == 1


@pytest.mark.parametrize("phase, method, verdict", [
    ("starting", "deploy", "interrupted"),
    ("running", "containers", "interrupted"),
    # Once the run is over, teardown is shielded: a Ctrl-C says "please wait" and cuts nothing short.
    ("collecting", "container_output", "passed"),
    ("teardown", "remove", "passed"),
])
def test_ctrl_c_at_each_phase_keeps_the_records_and_tears_down(engine, tmp_path, phase, method, verdict):
    engine.on[method] = ctrl_c
    progress = RecordedProgress()
    with default_sigint():
        result, manifest = run(engine, tmp_path, progress)
    assert result.verdict == manifest["verdict"] == verdict
    assert result.exit_code == (130 if verdict == "interrupted" else 0)
    assert manifest["ended"] and (result.directory / "events.jsonl").exists()
    assert torn_down(engine), engine.calls
    if verdict == "interrupted":
        assert "interrupted: collecting logs and cleaning up" in progress.messages
    else:
        assert "still cleaning up; please wait" in progress.messages
        assert len(list((result.directory / "logs").iterdir())) == 4


@pytest.mark.parametrize("implementation, protocol", [
    (DockerEngine, Engine), (FakeEngine, Engine), (SwarmEngine, Engine),
    (ComposeProject, Project), (FakeProject, Project), (SwarmStack, Project),
    (_ProjectInTurn, Project)])
def test_implementations_have_every_method_of_their_protocol_with_its_parameters(implementation, protocol):
    for name, declared in vars(protocol).items():
        if name.startswith("_") or not callable(declared):
            continue
        implemented = getattr(implementation, name, None)
        assert callable(implemented), f"{implementation.__name__} lacks {name}"
        assert list(inspect.signature(implemented).parameters) == list(inspect.signature(declared).parameters), name


def test_the_docker_engine_and_its_projects_are_what_the_protocols_declare(tmp_path):
    engine = DockerEngine()  # no connection is made until a method needs one
    assert isinstance(engine, Engine)
    assert isinstance(engine.project("lab-x", tmp_path / "compose.yaml"), Project)


# ---- helpers ---------------------------------------------------------------------------------

def raises(exc: Exception):
    def hook() -> None:
        raise exc
    return hook


def ctrl_c() -> None:
    """What the terminal does: SIGINT to this process (the handler in force decides what follows)."""
    signal.raise_signal(signal.SIGINT)


class default_sigint:
    """Python's own SIGINT handler (KeyboardInterrupt) for the test, whatever the runner installed."""

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def test_a_suite_engine_waits_for_its_turn_to_deploy_but_not_to_tear_down_or_look(engine, tmp_path):
    (tmp_path / "compose.yaml").write_text("services: {server: {labels: {}}}\n")
    turns = Turns(1)
    project = TakingTurns(engine, turns).project("lab-x", tmp_path / "compose.yaml")
    assert isinstance(project, Project)
    held = turns.take(0)
    held.__enter__()  # another run holds the only turn
    assert project.resolved_config()
    worker = threading.Thread(target=project.deploy)
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and "deploy" not in engine.calls
    for step in ("stop", "remove"):  # a finished run tears down at once, turn or not
        getattr(project, step)()
        assert step in engine.calls
    held.__exit__(None, None, None)
    worker.join(5)
    assert not worker.is_alive() and "deploy" in engine.calls


def test_clients_wait_at_the_start_barrier_only_where_the_engine_shares_the_run_directory(engine, tmp_path):
    result, _ = run(engine, tmp_path / "shared")
    assert "--start-file" in (result.directory / "compose.yaml").read_text()
    engine.shares_host_files = False  # a swarm: the other nodes never see this host's files
    result, manifest = run(engine, tmp_path / "apart")
    compose = (result.directory / "compose.yaml").read_text()
    assert "--start-file" not in compose and "/lab/ready" not in compose
    assert result.verdict == manifest["verdict"] == "passed", result.error


def test_the_lab_not_health_checks_sees_the_server_and_its_helpers_get_ready(engine, tmp_path):
    result, manifest = run(engine, tmp_path, server={"mode": "threaded", "proto": ["tcp"],
                                                     "impair": {"delay_ms": 5}})
    assert result.verdict == manifest["verdict"] == "passed", result.error
    services = yaml.safe_load((result.directory / "compose.yaml").read_text())["services"]
    assert not any("healthcheck" in spec for spec in services.values())
    assert services["server"]["depends_on"] == {"server-shaper": {"condition": "service_started"}}
    assert services["client1"]["depends_on"]["server"] == {"condition": "service_started"}
    for name in ("server", "server-shaper"):
        ready = result.directory / "control" / "up" / name
        assert (ready / "ready").is_file() and ready.stat().st_mode & 0o777 == 0o777


@pytest.mark.parametrize("exit_code", [1, None])
def test_a_helper_that_never_gets_ready_is_an_error_naming_it_and_no_client_is_released(
        engine, tmp_path, monkeypatch, exit_code):
    monkeypatch.setattr(lab.run, "start_deadline", lambda scenario: 0.3)
    engine.not_ready["server-shaper"] = exit_code
    result, manifest = run(engine, tmp_path, server={"mode": "threaded", "proto": ["tcp"],
                                                     "impair": {"delay_ms": 5}})
    assert result.verdict == manifest["verdict"] == "error"
    assert "server-shaper (" + ("exited with 1)" if exit_code else "not ready in time)") in result.error
    assert "released" not in manifest and not (result.directory / "control" / "go").exists()
    assert torn_down(engine)



def test_a_freed_turn_goes_to_the_waiting_run_ranked_first_whatever_order_they_came_in():
    turns = Turns(2)
    order: list[int] = []
    gate = threading.Event()

    def hold(rank: int) -> None:
        with turns.take(rank):
            order.append(rank)
            gate.wait(5)

    first = [threading.Thread(target=hold, args=(rank,)) for rank in (7, 8)]  # both turns taken
    for thread in first:
        thread.start()
    while len(order) < 2:
        threading.Event().wait(0.01)
    later = [threading.Thread(target=hold, args=(rank,)) for rank in (5, 1, 3)]  # arrive out of rank
    for thread in later:
        thread.start()
        threading.Event().wait(0.05)
    gate.set()
    for thread in first + later:
        thread.join(5)
    assert sorted(order[2:4]) == [1, 3] and order[4] == 5  # 5 waited though it came first
