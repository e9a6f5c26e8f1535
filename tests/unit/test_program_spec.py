"""`program:` in a scenario: paths are checked against the scenario's tree, errors name the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.compose import render
from lab.errors import ScenarioError
from lab.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def scenario(folder: Path, body: str) -> Path:
    path = folder / "s.yaml"
    path.write_text("description: a learner's program\n" + body)
    return path


@pytest.fixture
def outside(tmp_path):
    """A scenario folder inside tmp_path, with a program beside it and a secret outside it."""
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "server.py").write_text("print('hi')\n")
    (folder / "app").mkdir()
    (folder / "app" / "main.py").write_text("print('app')\n")
    (tmp_path / "secret.py").write_text("print('secret')\n")
    return folder


def test_a_program_path_becomes_absolute_and_renders_as_a_read_only_mount(outside):
    s = load_scenario(scenario(outside, "server: {program: {path: server.py, args: [--port, '$1']}}\n"
                                        "clients: {count: 1, program: {path: app}}\n"))
    assert s.server.program.path == str(outside / "server.py")
    compose = render(s, run_id="r1", owner="h:1")["services"]
    assert compose["server"]["volumes"] == [f"{outside / 'server.py'}:/program/server.py:ro"]
    assert compose["server"]["command"][-4:] == ["--", "/program/server.py", "--port", "$$1"]
    assert compose["client1"]["volumes"] == [f"{outside / 'app'}:/program/app:ro"]
    # The watcher owns each learner host's namespace; the program joins it, without capabilities.
    assert compose["server"]["network_mode"] == "service:server-sockets"
    assert compose["server-sockets"]["cap_drop"] == ["ALL"] and "cap_add" not in compose["server-sockets"]
    assert compose["server-sockets"]["networks"] == {"lab": {"aliases": ["server"]}}


@pytest.mark.parametrize(("body", "message"), [
    ("server: {program: {path: nothere.py}}", "server.program.path: 'nothere.py' does not exist"),
    ("server: {program: {path: ../secret.py}}", "leads outside"),
    ("clients: {each: {client2: {program: {path: ../secret.py}}}}", "clients.each.client2.program.path"),
    ("server: {program: {path: server.py, command: [ls]}}", "either path"),
    ("server: {program: {}}", "either path"),
    ("clients: {program: {path: .}}", "a folder without main.py"),
])
def test_bad_program_paths_name_the_field(outside, body, message):
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_scenario(scenario(outside, body + "\n"))


def test_a_symlink_out_of_the_tree_is_refused(outside, tmp_path):
    (outside / "link.py").symlink_to(tmp_path / "secret.py")
    with pytest.raises(ScenarioError, match="through a symlink"):
        load_scenario(scenario(outside, "server: {program: {path: link.py}}\n"))


def test_a_file_the_containers_cannot_read_is_refused(outside):
    os.chmod(outside / "server.py", 0o600)
    with pytest.raises(ScenarioError, match="not readable by the lab's containers"):
        load_scenario(scenario(outside, "server: {program: {path: server.py}}\n"))


def test_the_cli_exits_2_with_one_line_for_a_bad_path(outside):
    path = scenario(outside, "server: {program: {path: ../secret.py}}\n")
    proc = subprocess.run([sys.executable, "-m", "lab", "run", str(path)], capture_output=True, text=True,
                          env={**os.environ, "LAB_HOME": str(ROOT)}, timeout=60)
    assert proc.returncode == 2
    assert "server.program.path" in proc.stderr and "Traceback" not in proc.stderr


def test_shipped_tutorial_scenarios_mount_the_examples_from_the_checkout():
    s = load_scenario(ROOT / "scenarios" / "tutorial-fixed.yaml")
    plain = render(s, build_context="../..")["services"]
    assert plain["server"]["volumes"] == ["../../examples/tutorial/fixed/tcp_server.py:/program/tcp_server.py:ro"]
