"""`lab test` with several runs at once, on the real engine: readable output, a report CI reads,
and Ctrl-C that stops every run, cleans every project and still writes the report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import junitparser
import xmlschema

from lab.engine import Engine

from .conftest import ROOT, run_lab, start_lab
from .test_run import run_resources, wait_for

SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "junit-10.xsd"


def test_parallel_repeats_print_whole_blocks_and_a_summary_in_plan_order(engine, node_image, tmp_path):
    junit = tmp_path / "report.xml"
    result = run_lab("test", "udp-only", "tcp-*", "-j", "4", "--repeat", "2", "--out", str(tmp_path / "runs"),
                     "--junit", str(junit))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    labels = ["udp-only (1/2)", "udp-only (2/2)", "tcp-only (1/2)", "tcp-only (2/2)"]
    summary = out[out.index("summary: 4 runs"):]
    assert [line.split()[1] + " " + line.split()[2] for line in summary.splitlines()[1:5]] == labels
    assert re.search(r"udp-only +2/2 passed +100%", summary) and re.search(r"tcp-only +2/2 passed +100%", summary)
    # Each run's block is whole: its title, its table, its expectations, then its verdict line.
    for label in labels:
        title = f"{label}: one row per client socket"
        block_start = out.index(title) + len(title)
        verdict = out.index(f"passed  {label}  ", block_start)
        assert "Expectations" in out[block_start:verdict]
        assert "one row per client socket" not in out[block_start:verdict], "another run's block cut in"
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    cases = [c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s]
    assert [c.name for c in cases] == labels and all(c.is_passed and c.time > 1 for c in cases)


def test_ctrl_c_stops_every_run_cleans_up_and_writes_the_report(engine: Engine, node_image, tmp_path):
    out, junit = tmp_path / "runs", tmp_path / "report.xml"
    proc = start_lab("test", "partition", "lossy-restart", "udp-loss", "-j", "3", "--out", str(out), "--junit", str(junit))
    try:
        def all_talking():
            dirs = [p.parent for p in out.glob("*/manifest.json")]
            return len(dirs) == 3 and all(
                any(c.role == "client" and b'"event":"reply"' in engine.container_logs(c.id)
                    for c in run_resources(engine, d.name)[0]) for d in dirs)
        wait_for(all_talking, 180, "a client of each of the three runs talking")
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    dirs = sorted(p.parent for p in out.glob("*/manifest.json"))
    assert len(dirs) == 3
    for directory in dirs:
        assert run_resources(engine, directory.name) == ([], []), f"{directory.name} left resources behind"
        manifest = json.loads((directory / "manifest.json").read_text())
        assert manifest["verdict"] == "interrupted" and manifest["ended"], manifest["verdict"]
        assert (directory / "events.jsonl").exists()
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))
    cases = [c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s]
    assert sorted(c.name for c in cases) == ["lossy-restart", "partition", "udp-loss"]
    assert all(c.is_skipped and "interrupted" in c.result[0].message for c in cases)
    assert "interrupted: stopping every run" in output


def test_pytest_runs_the_scenario_cases_side_by_side(engine, node_image, tmp_path):
    """The scenarios from pytest, as people who keep their tests there run them: two cases on two
    pytest-xdist workers, each in its own project, both passing, and each worker's own check
    finds nothing left behind (`make test` runs the scenarios through `lab test` instead)."""
    cases = [f"tests/scenarios/test_scenarios.py::test_scenario[{name}]" for name in ("udp-only", "tcp-only")]
    junit = tmp_path / "pytest.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
         "--junitxml", str(junit), *cases],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "LAB_HOME": str(ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "LEFTOVERS" not in result.stdout
    workers = [re.search(rf"\[(gw\d)\] \[ *\d+%\] PASSED {re.escape(case)}", result.stdout) for case in cases]
    assert all(workers), result.stdout[-3000:]
    assert len({m.group(1) for m in workers}) == 2, "both cases ran on one worker"
    ran = [c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s]
    assert sorted(c.name for c in ran) == ["test_scenario[tcp-only]", "test_scenario[udp-only]"]
    assert all(c.is_passed for c in ran)
