"""No record lost whatever Docker keeps: runs against an explicit, small per-service log cap.

The cap is set in the run's compose file (json-file, max-size 100k x 2, like a production daemon's
10m x 3 but smaller), so the test does not depend on the host's daemon settings. The flood is
0.6 to 1 MB per container: well past the cap, and a run still takes about 10 s on an idle machine.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import lab.run
from lab.engine import DockerEngine
from lab.run import run_scenario
from lab.scenario import load_scenario

from .conftest import ROOT

LOG_CAP = {"driver": "json-file", "options": {"max-size": "100k", "max-file": "2"}}
FLOOD = """\
description: a flood of records well past Docker's log cap
clients:
  count: 2
  proto: [tcp]
  message_count: 600
  message_size: 512
  interval: 0
capture: false  # the packets are not what is tested here
timeout: 300
"""


class KeptByDocker(DockerEngine):
    """The real engine, noting how many lines Docker's log store still has of each container
    just before the run removes them."""

    kept: dict[str, int]

    def project(self, name, file):
        return CountedRemoval(super().project(name, file), lambda: self.note_kept(name))

    def note_kept(self, project: str) -> None:
        self.kept = {c.service: sum(1 for _ in self.container_output(c.id)) for c in self.containers(project)}


class CountedRemoval:
    """A project that calls `before` just before it is removed."""

    def __init__(self, project, before) -> None:
        self.project, self.before = project, before

    def __getattr__(self, name):
        return getattr(self.project, name)

    def remove(self) -> None:
        self.before()
        self.project.remove()


@pytest.fixture
def capped(monkeypatch):
    """Every service of the run's compose file gets the small log cap."""
    original = lab.run.render

    def render(*args, **kwargs):
        compose = original(*args, **kwargs)
        for service in compose["services"].values():
            service["logging"] = LOG_CAP
        return compose

    monkeypatch.setattr(lab.run, "render", render)


def flood_run(tmp_path: Path):
    scenario_file = tmp_path / "flood.yaml"
    scenario_file.write_text(FLOOD)
    engine = KeptByDocker().require()
    result = run_scenario(load_scenario(scenario_file), engine, tmp_path / "runs", ROOT, source=scenario_file)
    return result, engine


def events(directory: Path):
    with open(directory / "events.jsonl", encoding="utf-8") as fh:
        yield from map(json.loads, fh)


def test_a_flood_past_the_log_cap_loses_nothing(engine, node_image, capped, tmp_path):
    result, witness = flood_run(tmp_path)
    assert result.verdict == "passed", result.error
    manifest = json.loads((result.directory / "manifest.json").read_text())
    streams = manifest["streams"]
    assert len(streams) == 3 and all(s["complete"] and s["starts"] == 1 for s in streams.values()), streams
    server = next(s for name, s in streams.items() if "-server-" in name)
    # Docker's own copy really did lose most of it: the records file is what kept it whole.
    assert witness.kept["server"] < server["records"] / 2, (witness.kept, server["records"])

    summaries, received = {}, Counter()
    for record in events(result.directory):
        if record["role"] == "client" and record["event"] == "summary":
            summaries[record["service"]] = record
        elif record["role"] == "server" and record["event"] == "received":
            received[record["peer"]] += record["bytes"]
    assert set(summaries) == {"client1", "client2"}
    # Each client's own count matches every byte the server logged from it.
    for row in result.conversations:
        summary = summaries[row.client]
        assert summary["sent"] == summary["echoed"] == row.sent == row.echoed == 600
        assert received[row.server_saw] == 600 * 512


def test_without_the_records_file_the_lost_records_fail_the_run_and_are_named(engine, node_image, capped, tmp_path,
                                                                              monkeypatch):
    # The programs cannot open their records files (as with an image from before them): only
    # Docker's capped copy is left, and the run must say what it lost instead of passing.
    original = lab.run.prepare_records

    def read_only(directory, services):
        original(directory, services)
        for path in (directory / "records").iterdir():
            path.chmod(0o444)

    monkeypatch.setattr(lab.run, "prepare_records", read_only)
    result, _ = flood_run(tmp_path)
    assert result.verdict == "failed"
    assert "records lost: " in result.error
    assert "-server-1 lost " in result.error and "including its start" in result.error, result.error
    assert "json-file log driver keeps max-size 100k x 2" in result.error
    manifest = json.loads((result.directory / "manifest.json").read_text())
    server = next(s for name, s in manifest["streams"].items() if "-server-" in name)
    assert server["missing"] > 0 and server["start_missing"] and not server["complete"]
