"""The suite runner's rules without Docker: selection, start order, how many at once, plan-order
results, --fail-fast, skips, pass rates and exit codes. Runs are stand-ins that sleep."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lab.errors import ScenarioError, UsageError
from lab.run import RunResult
from lab.scenario import load_scenario
from lab.suite import (
    Outcome,
    Planned,
    default_jobs,
    pass_rates,
    past_durations,
    plan_runs,
    run_suite,
    select_scenarios,
    start_order,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def scenario(name: str):
    return load_scenario(SCENARIOS / f"{name}.yaml")


class FakeRuns:
    """Stands in for run_scenario: each named scenario sleeps its time and gets its verdict;
    it stops early, as a real run does, when the suite's stop event is set."""

    def __init__(self, seconds: dict[str, float], verdicts: dict[str, list[str]] | None = None) -> None:
        self.seconds = seconds
        self.verdicts = {k: list(v) for k, v in (verdicts or {}).items()}
        self.lock = threading.Lock()
        self.now_running = 0
        self.most_at_once = 0
        self.started: list[str] = []

    def __call__(self, scenario, engine, runs_dir, root, *, progress, source, stop) -> RunResult:
        with self.lock:
            self.now_running += 1
            self.most_at_once = max(self.most_at_once, self.now_running)
            self.started.append(scenario.name)
            verdicts = self.verdicts.get(scenario.name)
            verdict = verdicts.pop(0) if verdicts else "passed"
        try:
            progress.started(f"id-{scenario.name}", runs_dir / scenario.name, 3)
            if stop.wait(self.seconds.get(scenario.name, 0.05)):
                verdict = "interrupted"
            return RunResult(run_id=f"id-{scenario.name}", directory=runs_dir / scenario.name, verdict=verdict)
        finally:
            with self.lock:
                self.now_running -= 1


def suite(names, fake, tmp_path, repeat=1, **kw):
    plan = plan_runs([(scenario(n), SCENARIOS / f"{n}.yaml") for n in names], repeat)
    return run_suite(plan, lambda: None, tmp_path, tmp_path, run=fake, **kw)


def test_names_globs_and_files_in_the_order_given_each_once(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("description: x\n")
    chosen = select_scenarios(["udp-*", "basic", "udp-loss", str(own)], SCENARIOS)
    assert [p.stem for p in chosen] == ["udp-loss", "udp-only", "basic", "mine"]
    assert [p.stem for p in select_scenarios([], SCENARIOS)] == sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


def test_unknown_name_and_empty_glob_list_the_known_scenarios():
    with pytest.raises(ScenarioError, match="no scenario named 'nope'.*basic, client-crash"):
        select_scenarios(["nope"], SCENARIOS)
    with pytest.raises(UsageError, match=r"matches 'zzz\*'; known: basic, client-crash"):
        select_scenarios(["zzz*"], SCENARIOS)


def test_longest_first_and_never_seen_before_the_known(tmp_path):
    plan = plan_runs([(scenario(n), SCENARIOS / f"{n}.yaml") for n in ("basic", "partition", "tcp-only")], 1)
    order = start_order(plan, {"basic": 9.0, "tcp-only": 5.0})
    assert [p.name for p in order] == ["partition", "basic", "tcp-only"]


def test_without_history_the_scenarios_own_length_orders_them():
    """A fresh CI job has no past runs: the long scenarios of the shipped set still start first."""
    names = ["basic", "iterative", "large-messages", "tcp-only", "udp-only", "high-latency", "iterative-backlog",
             "lossy-restart", "partition", "server-restart", "udp-loss", "client-crash", "server-pause"]
    plan = plan_runs([(scenario(n), SCENARIOS / f"{n}.yaml") for n in names], 1)
    order = [p.name for p in start_order(plan, {})]
    # The three that take longest alone (benchmarks: about 39, 35 and 28 s against 7 to 17 s).
    assert set(order[:3]) == {"lossy-restart", "iterative-backlog", "partition"}, order
    # ...and the last to start are among the seven shortest alone (7 to 12 s).
    assert set(order[-3:]) <= {"basic", "tcp-only", "udp-only", "client-crash", "iterative", "large-messages",
                               "high-latency"}, order


def test_past_durations_are_medians_of_finished_runs(tmp_path):
    import json

    for i, (verdict, seconds) in enumerate([("passed", 10), ("failed", 20), ("passed", 12), ("interrupted", 1)]):
        run = tmp_path / f"r{i}"
        run.mkdir()
        (run / "manifest.json").write_text(json.dumps({
            "scenario": "basic", "verdict": verdict, "started": "2026-01-01T00:00:00.000000Z",
            "ended": f"2026-01-01T00:00:{seconds:02d}.000000Z"}))
    assert past_durations(tmp_path) == {"basic": 12.0}
    assert past_durations(tmp_path / "missing") == {}


def test_runs_overlap_up_to_jobs_and_results_come_in_plan_order(tmp_path):
    names = ["basic", "partition", "tcp-only", "udp-only", "iterative"]
    fake = FakeRuns({"basic": 0.3, "partition": 0.6, "tcp-only": 0.1, "udp-only": 0.2, "iterative": 0.3})
    began = time.monotonic()
    result = suite(names, fake, tmp_path, jobs=3, durations={"partition": 30, "basic": 9})
    took = time.monotonic() - began
    assert fake.most_at_once == 3
    # Longest first: past times where known, the files' own estimates for the rest.
    assert fake.started == ["partition", "iterative", "tcp-only", "udp-only", "basic"]
    assert [o.planned.name for o in result.outcomes] == names
    assert [o.status for o in result.outcomes] == ["passed"] * 5 and result.exit_code == 0
    assert took < 1.3, "three at a time should take about as long as the longest chain, not the sum (1.5 s)"
    assert all(o.seconds > 0 and o.started_at for o in result.outcomes)


def test_one_job_runs_one_at_a_time(tmp_path):
    fake = FakeRuns({})
    suite(["basic", "tcp-only", "udp-only"], fake, tmp_path, jobs=1)
    assert fake.most_at_once == 1


def test_fail_fast_stops_the_running_and_skips_the_rest(tmp_path):
    fake = FakeRuns({"tcp-only": 0.1, "partition": 5, "basic": 5, "udp-only": 5},
                    verdicts={"tcp-only": ["failed"]})
    began = time.monotonic()
    result = suite(["partition", "tcp-only", "basic", "udp-only"], fake, tmp_path, jobs=2, fail_fast=True,
                   durations={"partition": 9, "tcp-only": 8, "basic": 2, "udp-only": 1})
    assert time.monotonic() - began < 3, "the long run should have been stopped"
    by_name = {o.planned.name: o for o in result.outcomes}
    assert by_name["tcp-only"].status == "failed"
    assert by_name["partition"].status == "skipped" and by_name["partition"].result.verdict == "interrupted"
    assert by_name["partition"].skipped == "stopped by --fail-fast after tcp-only failed"
    assert fake.started == ["partition", "tcp-only"]
    for name in ("basic", "udp-only"):
        assert by_name[name].result is None and by_name[name].skipped.startswith("not started: stopped by")
    assert result.stopped_by and result.exit_code == 1 and not result.interrupted


def test_a_scenario_this_host_cannot_run_is_skipped_with_the_reason(tmp_path):
    fake = FakeRuns({})
    result = suite(["basic", "udp-loss"], fake, tmp_path, jobs=2,
                   cannot_run=lambda s: "the kernel lacks nfqueue" if s.name == "udp-loss" else None)
    assert fake.started == ["basic"]
    assert [(o.status, o.skipped) for o in result.outcomes] == [("passed", None), ("skipped", "the kernel lacks nfqueue")]
    assert result.exit_code == 0


def test_repeat_gives_a_pass_rate_per_scenario(tmp_path):
    fake = FakeRuns({}, verdicts={"basic": ["passed", "failed", "passed"]})
    result = suite(["basic", "tcp-only"], fake, tmp_path, repeat=3, jobs=1)
    assert [o.planned.label for o in result.outcomes] == [
        "basic (1/3)", "basic (2/3)", "basic (3/3)", "tcp-only (1/3)", "tcp-only (2/3)", "tcp-only (3/3)"]
    assert result.pass_rates == {"basic": (2, 3), "tcp-only": (3, 3)}
    assert result.exit_code == 1


def test_pass_rate_leaves_out_what_did_not_finish():
    plan = Planned("basic", SCENARIOS / "basic.yaml", None)
    outcomes = [Outcome(plan, RunResult("a", Path("a"), "passed")), Outcome(plan, skipped="not started"),
                Outcome(plan, RunResult("b", Path("b"), "interrupted"))]
    assert pass_rates(outcomes) == {"basic": (1, 1)}


def test_jobs_must_be_positive_and_default_scales_with_cpus(tmp_path):
    with pytest.raises(UsageError, match="-j must be at least 1"):
        suite(["basic"], FakeRuns({}), tmp_path, jobs=0)
    assert default_jobs() >= 2


def test_a_scenario_that_shows_a_broken_program_passes_by_failing_as_described(tmp_path):
    from lab.expect import ExpectationResult

    planned = Planned("tutorial-as-written", SCENARIOS / "tutorial-as-written.yaml", scenario("tutorial-as-written"))
    found = ExpectationResult(name="the lab diagnoses loopback-listener", passed=True, measured="1", expected="1")
    missed = found.model_copy(update={"passed": False})

    def outcome(verdict, expectations):
        result = RunResult(run_id="r", directory=tmp_path, verdict=verdict, expectations=expectations)
        return Outcome(planned, result=result).status

    assert outcome("failed", [found]) == "passed"
    assert outcome("failed", [found, missed]) == "failed"  # the lab did not explain it
    assert outcome("passed", [found]) == "failed"  # the broken program worked: the scenario is wrong
    assert outcome("failed", []) == "failed"


def test_a_bug_in_one_run_stops_the_others_before_it_surfaces(tmp_path):
    fake = FakeRuns({"partition": 5})

    def run(scenario, *args, **kw):
        if scenario.name == "basic":
            raise RuntimeError("a bug")
        return fake(scenario, *args, **kw)

    began = time.monotonic()
    with pytest.raises(RuntimeError, match="a bug"):
        suite(["partition", "basic"], run, tmp_path, jobs=2, durations={"partition": 9, "basic": 1})
    assert time.monotonic() - began < 3 and fake.now_running == 0, "partition should have been stopped"
