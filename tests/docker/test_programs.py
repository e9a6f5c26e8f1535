"""A learner's own programs on the real engine: one that crashes, one that hangs, one that floods.

Each run must end within the scenario's timeout, keep what the program printed (bounded, with a
note of what was cut), tear everything down, and say what happened.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.home import project_root
from lab.run import run_scenario
from lab.scenario import load_scenario


def run(tmp_path: Path, engine, client_program: str, extra: str = "", timeout: int = 40):
    (tmp_path / "client.py").write_text(client_program)
    (tmp_path / "s.yaml").write_text(
        "description: a learner's client against the lab's echo server\n"
        f"clients: {{count: 1, proto: [tcp], program: {{path: client.py{extra}}}}}\n"
        f"timeout: {timeout}\n"
    )
    scenario = load_scenario(tmp_path / "s.yaml")
    result = run_scenario(scenario, engine, tmp_path / "runs", project_root(), source=tmp_path / "s.yaml")
    events = [json.loads(line) for line in (result.directory / "events.jsonl").read_text().splitlines()]
    mine = [e for e in events if e.get("role") == "program" and e.get("host") == "client1"]
    assert not engine.containers(json.loads((result.directory / "manifest.json").read_text())["project"])
    return result, mine


def test_a_crashing_program_keeps_its_traceback_and_fails_the_run(tmp_path, engine, node_image):
    program = "import socket\ns = socket.create_connection(('server', 19200))\nprint('connected from', s.getsockname())\n" \
              "raise SystemExit(f'giving up on {s.getsockname()}') from ValueError('bad reply')\n"
    result, mine = run(tmp_path, engine, program)
    assert result.verdict == "failed" and result.clients == {"client1": 1}
    stderr = [e["text"] for e in mine if e["event"] == "output" and e["stream"] == "stderr"]
    assert any("giving up on" in line for line in stderr)
    assert [e["code"] for e in mine if e["event"] == "exited"] == [1]
    # Its own view came through even so: the socket it printed, and what the server accepted.
    (row,) = [c for c in result.conversations if c.client == "client1"]
    assert row.flag == "ok" and row.server_saw == f"{row.client_ip}:{row.client_port}"


def test_a_hanging_program_ends_with_the_scenario_timeout(tmp_path, engine, node_image):
    result, mine = run(tmp_path, engine, "import time\nprint('waiting forever', flush=True)\ntime.sleep(3600)\n",
                       timeout=8)
    assert result.verdict == "timeout"
    assert [e["text"] for e in mine if e["event"] == "output"] == ["waiting forever"]
    exited = [e for e in mine if e["event"] == "exited"]
    assert exited and exited[0]["signal"] == "SIGTERM"  # the launcher passed the stop on and reported it


def test_a_flooding_program_is_cut_at_its_limit_with_a_note(tmp_path, engine, node_image):
    program = "import sys\nfor i in range(300000):\n    sys.stdout.write(f'{i:08d} ' + 'y' * 90 + '\\n')\n"
    result, mine = run(tmp_path, engine, program, extra=", output_limit: 65536")
    kept = [e for e in mine if e["event"] == "output"]
    (cut,) = [e for e in mine if e["event"] == "cut"]
    assert sum(e["bytes"] + 1 for e in kept) <= 65536 and cut["lines"] == 300000 - len(kept)
    assert result.clients == {"client1": 0} and kept[0]["text"].startswith("00000000 ")
