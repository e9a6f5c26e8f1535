"""A routed run's host rules: in force while it runs, removed by Ctrl-C's teardown, and by
`lab clean` after a crash."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lab.compose import node_image
from lab.hostrules import list_rules

from .conftest import run_lab, start_lab

ROUTED = """\
description: one client reaching the server through a router, slowly enough to be caught mid-run
networks: {left: {}, dmz: {}}
routers: {gw: {networks: [left, dmz]}}
server: {networks: [dmz]}
clients: {count: 1, networks: [left], proto: [tcp], message_count: 200, interval: 0.2}
"""


def rules_of(engine, run_id: str) -> set[str]:
    return {bridge for mark, bridges in list_rules(engine, node_image()).items() if mark.run == run_id
            for bridge in bridges}


def start_routed_run(tmp_path: Path):
    scenario = tmp_path / "routed-slow.yaml"
    scenario.write_text(ROUTED)
    out = tmp_path / "runs"
    proc = start_lab("run", str(scenario), "--out", str(out))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        found = next(iter(out.glob("*/manifest.json")), None)
        if found:
            return proc, found.parent
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no run directory within 90 s")


def wait_rules(engine, run_id: str, present: bool, timeout: float = 90) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rules = rules_of(engine, run_id)
        if bool(rules) == present:
            return rules
        time.sleep(0.5)
    raise AssertionError(f"the run's DOCKER-USER rules {'never appeared' if present else 'are still there'}")


def test_ctrl_c_removes_the_runs_host_rules(engine, node_image, tmp_path):
    proc, directory = start_routed_run(tmp_path)
    try:
        bridges = wait_rules(engine, directory.name, present=True)
        assert len(bridges) == 2 and all(b.startswith("lab-") for b in bridges)
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert rules_of(engine, directory.name) == set()


def test_lab_clean_removes_the_host_rules_of_a_killed_run(engine, node_image, tmp_path):
    proc, directory = start_routed_run(tmp_path)
    try:
        wait_rules(engine, directory.name, present=True)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no chance to clean up
        proc.communicate(timeout=30)
    assert rules_of(engine, directory.name), "the kill should have left the rules behind"
    result = run_lab("clean")
    assert result.returncode == 0, result.stderr
    assert "DOCKER-USER rule" in result.stdout, result.stdout
    assert rules_of(engine, directory.name) == set()
