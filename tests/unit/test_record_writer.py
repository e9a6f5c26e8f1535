"""The record writer numbers every record and, under `lab run`, also keeps them in a file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

from lab.records.writer import RecordWriter

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import sys, threading
from lab.records.writer import RecordWriter
writer = RecordWriter(role="server", host="server")
writer.emit("tcp", "listening", local="0.0.0.0:19200")
print("a stray line on stderr", file=sys.stderr)
writer.emit("tcp", "accepted", peer="10.77.0.5:4000")
raise RuntimeError("boom")
"""


def test_records_are_numbered_in_the_order_they_leave_whichever_thread_writes():
    out = io.StringIO()
    writer = RecordWriter(role="client", host="c", stream=out)

    def burst():
        for _ in range(500):
            writer.emit("tcp", "sent")

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["n"] for r in records] == list(range(1, 2001))
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)
    # The collector reads v, n and ts from the front of the line (lab/collect.py).
    assert out.getvalue().startswith('{"v":2,"n":1,"ts":"')


def run_program(env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **env_extra}
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=30)


def test_the_records_file_gets_every_record_and_the_stderr_lines_in_order(tmp_path):
    path = tmp_path / "server.jsonl"
    path.touch()
    done = run_program({"LAB_RECORDS": str(path)})
    assert done.returncode == 1
    stdout = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["event"] for r in stdout] == ["listening", "accepted"]  # stdout as before
    assert "RuntimeError: boom" in done.stderr and "a stray line" in done.stderr  # stderr as before
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["event"] == "listening"
    assert lines[1] == "a stray line on stderr"
    assert json.loads(lines[2])["n"] == 2
    assert lines[3] == "Traceback (most recent call last):" and lines[-1] == "RuntimeError: boom"


def test_a_records_file_that_cannot_be_opened_is_said_on_stdout(tmp_path):
    done = run_program({"LAB_RECORDS": str(tmp_path / "missing-dir" / "server.jsonl")})
    stdout = [json.loads(line) for line in done.stdout.splitlines()]
    assert stdout[0]["event"] == "error" and stdout[0]["reason"] == "records-file"
    assert "missing-dir" in stdout[0]["detail"]
    assert [r["n"] for r in stdout] == [1, 2, 3]
