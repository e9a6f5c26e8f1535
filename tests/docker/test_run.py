"""`lab run` end to end on the real engine: the run directory, concurrency, Ctrl-C, crashes."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest

from lab.engine import DockerEngine
from lab.labels import RUN_LABEL

from .conftest import only_run_dir, run_lab, start_lab

SLOW_SCENARIO = """\
description: a long conversation, to be interrupted
clients:
  count: 2
  proto: [tcp]
  message_count: 200
  interval: 0.25
timeout: 120
"""


def run_resources(engine: DockerEngine, run_id: str) -> tuple[list, list]:
    containers = engine.containers_with_label(f"{RUN_LABEL}={run_id}")
    networks = engine.client.networks.list(filters={"label": f"{RUN_LABEL}={run_id}"})
    return containers, networks


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def read_events(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines() if line.strip()]


def check_complete_basic_run(directory: Path) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["verdict"] == "passed", manifest.get("error")
    assert manifest["scenario"] == "basic"
    assert "services:" in manifest["compose_config"]
    assert manifest["images"]["node"].startswith("sha256:")
    assert manifest["versions"]["engine"] and manifest["versions"]["compose"]
    assert manifest["started"] < manifest["ended"]

    records = sorted(p.name for p in (directory / "records").iterdir())
    assert records == ["capture.jsonl", "client1.jsonl", "client2.jsonl", "client3.jsonl", "server.jsonl"]
    server_records = (directory / "records" / "server.jsonl").read_text()
    assert '"event":"summary"' in server_records  # collected after a clean stop, so nothing was cut
    assert all(s["complete"] and s["starts"] == 1 for s in manifest["streams"].values()), manifest["streams"]

    events = read_events(directory)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    # No container is probed: the lab saw the capture and the server get ready, and released
    # the clients only then.
    assert "healthcheck" not in manifest["compose_config"]
    ready = [e["ts"] for e in events if e["event"] in ("capturing", "listening")]
    talked = [e["ts"] for e in events if e["role"] == "client" and e["event"] in ("connected", "sent")]
    assert len(ready) == 3 and max(ready) < manifest["released"] < min(talked)
    assert all(e.get("container") and e.get("role") and e.get("service") for e in events)
    assert all(e.get("ip") for e in events if e["role"] == "client")

    with open(directory / "clients.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["client"], r["proto"]) for r in rows) == [
        (f"client{i}", proto) for i in (1, 2, 3) for proto in ("tcp", "udp")
    ]
    for row in rows:
        # The lab's central fact: the client's own view equals the server's view of it.
        assert row["flag"] == "ok"
        assert row["server_saw"] == f"{row['client_ip']}:{row['client_port']}"
        assert int(row["sent"]) == int(row["echoed"]) == 4


def test_lab_run_basic_writes_a_complete_run_directory(engine, node_image, tmp_path):
    result = run_lab("run", "basic", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    directory = only_run_dir(tmp_path)
    check_complete_basic_run(directory)
    for i in (1, 2, 3):
        assert f"client{i}" in result.stdout
    assert "passed" in result.stdout

    runs = run_lab("runs", "--out", str(tmp_path))
    assert directory.name in runs.stdout and "passed" in runs.stdout

    logs = run_lab("logs", "--out", str(tmp_path), "--client", "client2", "--proto", "tcp", "--json")
    picked = [json.loads(line) for line in logs.stdout.splitlines()]
    assert picked and {e["service"] for e in picked} == {"client2", "server", "wire"}
    assert {e["client"] for e in picked if e["role"] == "wire"} == {"client2"}  # its packets only
    client_local = next(e["local"] for e in picked if e["event"] == "connected")
    assert any(e["event"] == "accepted" and e["peer"] == client_local for e in picked)
    timeline = run_lab("logs", "--out", str(tmp_path))
    assert "accepted" in timeline.stdout and "connected" in timeline.stdout


def test_two_runs_at_once_do_not_collide(engine, node_image, tmp_path):
    first, second = start_lab("run", "basic", "--out", str(tmp_path)), start_lab("run", "basic", "--out", str(tmp_path))
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    dirs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(dirs) == 2
    projects = set()
    for directory in dirs:
        check_complete_basic_run(directory)
        projects.add(json.loads((directory / "manifest.json").read_text())["project"])
    assert len(projects) == 2


def start_slow_run(tmp_path: Path):
    """`lab run` of a long scenario in the background; returns (process, its run directory)."""
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW_SCENARIO)
    out = tmp_path / "runs"
    proc = start_lab("run", str(scenario), "--out", str(out))
    directory = wait_for(lambda: next(iter(out.glob("*/manifest.json")), None), 60, "the run directory").parent
    return proc, directory


def clients_talking(engine: DockerEngine, run_id: str) -> int:
    """How many of the run's clients have had an echo back."""
    return sum(c.role == "client" and b'"event":"reply"' in engine.container_logs(c.id)
               for c in run_resources(engine, run_id)[0])


@pytest.mark.parametrize("moment", ["while starting", "mid-conversation"])
def test_ctrl_c_cleans_up_and_keeps_partial_logs(engine, node_image, tmp_path, moment):
    proc, directory = start_slow_run(tmp_path)
    run_id = directory.name
    try:
        if moment == "while starting":
            # As soon as compose has created anything: the run is half up.
            wait_for(lambda: run_resources(engine, run_id)[0] or run_resources(engine, run_id)[1], 60,
                     "the first container or network")
        else:
            wait_for(lambda: clients_talking(engine, run_id) == 2, 60, "both clients' first echo")
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    containers, networks = run_resources(engine, run_id)
    assert containers == [] and networks == [], "Ctrl-C left resources behind"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["verdict"] == "interrupted" and manifest["ended"]
    assert (directory / "events.jsonl").exists() and (directory / "clients.csv").exists()
    if moment == "mid-conversation":
        events = read_events(directory)
        assert any(e["event"] == "reply" and e["role"] == "client" for e in events)
        assert any(e["event"] == "accepted" and e["role"] == "server" for e in events)
        assert all(s["complete"] for s in manifest["streams"].values()) and len(manifest["streams"]) == 4
        assert (directory / "clients.csv").read_text().count("\n") >= 3


def test_lab_clean_salvages_and_removes_what_a_killed_run_left(engine, node_image, tmp_path):
    proc, directory = start_slow_run(tmp_path)
    run_id = directory.name
    try:
        wait_for(lambda: clients_talking(engine, run_id), 120, "a client's first echo")
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no chance to clean up
        # Not reaped yet: a zombie owner counts as dead.
        wait_for(lambda: Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z", 10,
                 "the killed run to become a zombie")
        assert run_resources(engine, run_id)[0], "the kill should have left containers behind"
        assert json.loads((directory / "manifest.json").read_text())["verdict"] == "running"
        result = run_lab("clean")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    project = json.loads((directory / "manifest.json").read_text())["project"]
    assert result.returncode == 0, result.stderr
    assert f"salvaged {run_id}" in result.stdout, result.stdout
    assert f"removed {project}: " in result.stdout and f"network {project}_lab" in result.stdout
    containers, networks = run_resources(engine, run_id)
    assert containers == [] and networks == []
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["verdict"] == "abandoned" and manifest["ended"]
    assert manifest["streams"] and all(s["missing"] == 0 for s in manifest["streams"].values()), manifest["streams"]
    events = read_events(directory)
    # Stopped before collecting: every program's summary is there, the server's too.
    assert {e["service"] for e in events if e["event"] == "summary"} == {"server", "client1", "client2", "capture"}
    assert any(e["event"] == "accepted" and e["role"] == "server" for e in events)
    assert (directory / "clients.csv").read_text().count("\n") >= 3


def test_bad_scenario_file_exits_2_before_touching_docker(engine, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nserver: {mode: forking}\n")
    result = run_lab("run", str(bad), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert f"{bad}: server.mode" in result.stderr and "'iterative', 'threaded' or 'async'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_doctor_passes_and_names_the_impairment_backend(engine, node_image):
    result = run_lab("doctor")
    assert result.returncode == 0, result.stdout
    assert "docker engine" in result.stdout and "compose v2" in result.stdout
    assert "impairments" in result.stdout
    assert "userspace backend" in result.stdout or "kernel netem (tc qdisc netem)" in result.stdout
