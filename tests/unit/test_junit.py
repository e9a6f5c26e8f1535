"""`lab test`'s JUnit report as consumers see it: valid against the Jenkins xUnit schema that
dashboards follow, and read back by junitparser, a JUnit reader from PyPI.

tests/fixtures/junit-10.xsd is that schema, unmodified, as pytest ships it in its source
distribution (testing/example_scripts/junit-10.xsd, pytest 9.2.0), where pytest's own tests
validate its JUnit output against it; its MIT licence is in its header.
"""

from __future__ import annotations

from pathlib import Path

import junitparser
import pytest
import xmlschema

from lab.expect import evaluate
from lab.junit import write_junit
from lab.logs import join_views, read_events
from lab.run import RunResult
from lab.scenario import Scenario
from lab.suite import Outcome, Planned

SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "junit-10.xsd"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"


def recorded_run(tmp_path: Path, name: str, expect: list[dict], verdict: str = "passed") -> Outcome:
    """A finished run made from recorded events: real conversations, real expectation results."""
    scenario = Scenario.model_validate({"name": name, "description": "x", "expect": expect})
    records = read_events(FIXTURES / "udp-lossy.jsonl")
    results = evaluate(scenario.expect, records)
    if any(not r.passed for r in results) and verdict == "passed":
        verdict = "failed"
    directory = tmp_path / f"run-{name}"
    result = RunResult(run_id=f"id-{name}", directory=directory, verdict=verdict,
                       clients={"client1": 0, "client2": 1 if verdict == "failed" else 0},
                       conversations=join_views(records), expectations=results)
    return Outcome(Planned(name, Path(f"scenarios/{name}.yaml"), scenario), result=result, seconds=12.3456,
                   started_at="2026-11-25T10:00:00+00:00")


@pytest.fixture
def report(tmp_path) -> Path:
    passing = recorded_run(tmp_path, "lossy-ok", [{"check": "loss", "proto": "udp", "max": 0.9}])
    failing = recorded_run(tmp_path, "lossy-strict", [{"check": "loss", "proto": "udp", "max": 0},
                                                      {"check": "loss", "proto": "udp", "max": 0.9}])
    broken = Outcome(Planned("basic", Path("scenarios/basic.yaml"), None),
                     error="could not run: cannot reach the Docker engine: connection refused")
    host = Outcome(Planned("udp-loss", Path("scenarios/udp-loss.yaml"), failing.planned.scenario),
                   skipped="this host cannot impair traffic as the scenario asks: the kernel lacks nfqueue")
    path = tmp_path / "junit.xml"
    write_junit(path, [passing, failing, broken, host], seconds=20.5)
    return path


def test_report_is_valid_against_the_junit_schema_dashboards_use(report):
    schema = xmlschema.XMLSchema(str(SCHEMA))
    schema.validate(str(report))  # raises with the offending element when invalid
    assert not schema.is_valid("<testsuites><testsuite name='x'/></testsuites>"), "the schema should bite"


def test_a_junit_reader_sees_times_names_verdicts_and_reasons(report):
    xml = junitparser.JUnitXml.fromfile(str(report))
    suites = list(xml)
    assert [s.name for s in suites] == ["lossy-ok", "lossy-strict", "basic", "udp-loss"]
    assert (xml.tests, xml.failures, xml.errors) == (4, 1, 1)
    assert [s.skipped for s in suites] == [0, 0, 0, 1]
    assert xml.time == pytest.approx(20.5)
    cases = {case.name: case for suite in suites for case in suite}
    for case in cases.values():
        assert case.classname == "scenarios"
    assert cases["lossy-ok"].is_passed and cases["lossy-ok"].time == pytest.approx(12.346)

    (failure,) = cases["lossy-strict"].result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message.startswith("loss (udp loss at most 0%): measured ")
    assert "expected at most 0%" in failure.message and "client2 exited 1" in failure.message
    assert "0.9" not in failure.message, "only the failing expectation is in the message"
    assert "one row per client socket" in failure.text and "Expectations" in failure.text
    assert "run directory: " in failure.text

    (error,) = cases["basic"].result
    assert isinstance(error, junitparser.Error) and "cannot reach the Docker engine" in error.message

    (skipped,) = cases["udp-loss"].result
    assert isinstance(skipped, junitparser.Skipped) and "kernel lacks nfqueue" in skipped.message


def test_the_run_directory_is_a_property_of_its_suite(report, tmp_path):
    suites = {s.name: s for s in junitparser.JUnitXml.fromfile(str(report))}
    props = {p.name: p.value for p in suites["lossy-strict"].properties()}
    assert props["run_directory"] == str(tmp_path / "run-lossy-strict")
    assert props["verdict"] == "failed" and props["scenario"] == "lossy-strict"
    assert "run_directory" not in {p.name for p in suites["basic"].properties()}


def test_repeated_runs_get_distinct_names_and_an_interrupted_one_is_skipped(tmp_path):
    first = recorded_run(tmp_path, "lossy-ok", [{"check": "loss", "proto": "udp", "max": 0.9}])
    plan = first.planned
    first.planned = Planned(plan.name, plan.path, plan.scenario, 1, 2)
    second = recorded_run(tmp_path, "lossy-ok", [], verdict="interrupted")
    second.planned = Planned(plan.name, plan.path, plan.scenario, 2, 2)
    path = tmp_path / "junit.xml"
    write_junit(path, [first, second])
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(path))
    cases = [case for suite in junitparser.JUnitXml.fromfile(str(path)) for case in suite]
    assert [c.name for c in cases] == ["lossy-ok (1/2)", "lossy-ok (2/2)"]
    assert cases[0].is_passed and cases[1].is_skipped
    assert "interrupted" in cases[1].result[0].message
