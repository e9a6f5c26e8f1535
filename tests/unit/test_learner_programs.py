"""The learner's program launcher and the socket-table watcher, on loopback with real programs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lab.learner.procnet import read_tables
from lab.learner.watch import Watcher

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "examples" / "tutorial"


def launch(*args: str, timeout: float = 20, **kw) -> tuple[int, list[dict]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LAB_NAME="learner")
    proc = subprocess.run([sys.executable, "-m", "lab.learner", "run", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_output_lines_are_timestamped_records_in_order_and_the_exit_code_is_the_programs(tmp_path):
    program = tmp_path / "p.py"
    program.write_text("import sys\nprint('one')\nprint('two', file=sys.stderr)\nprint('三')\nsys.exit(3)\n")
    code, records = launch(str(program))
    assert code == 3
    output = [(r["stream"], r["line"], r["text"]) for r in records if r["event"] == "output"]
    assert ("stdout", 1, "one") in output and ("stdout", 2, "三") in output and ("stderr", 1, "two") in output
    assert [r["event"] for r in records][0] == "started" and records[-1]["event"] == "exited"
    assert records[-1]["code"] == 3 and all(r["role"] == "program" and r["host"] == "learner" for r in records)


def test_socket_calls_are_reported_with_the_address_the_program_asked_for(tmp_path):
    program = tmp_path / "p.py"
    program.write_text(textwrap.dedent("""
        import socket
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
        c = socket.socket()
        try:
            c.connect(("127.0.0.1", 1))
        except ConnectionRefusedError as exc:
            print("refused:", exc)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", ("127.0.0.1", 9))
    """))
    code, records = launch(str(program))
    calls = [(r["proto"], r["call"], r["address"]) for r in records if r["event"] == "socket"]
    assert ("tcp", "bind", "127.0.0.1:0") in calls
    assert ("tcp", "connect", "127.0.0.1:1") in calls
    assert ("udp", "sendto", "127.0.0.1:9") in calls
    assert code == 0


def test_a_crash_keeps_its_traceback_and_a_folder_runs_its_main(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "helper.py").write_text("def boom():\n    raise RuntimeError('bad input')\n")
    (tmp_path / "app" / "main.py").write_text("import helper\nprint('before')\nhelper.boom()\n")
    code, records = launch(str(tmp_path / "app"))
    assert code == 1
    stderr = " ".join(r["text"] for r in records if r["event"] == "output" and r["stream"] == "stderr")
    assert "RuntimeError: bad input" in stderr and "Traceback" in stderr


def test_a_flood_is_bounded_with_a_note_and_the_program_is_never_blocked(tmp_path):
    program = tmp_path / "p.py"
    program.write_text("import sys\nfor i in range(200000):\n    sys.stdout.write('x' * 99 + '\\n')\nprint('end')\n")
    code, records = launch("--output-limit", "10000", str(program), timeout=60)
    assert code == 0
    kept = [r for r in records if r["event"] == "output"]
    assert sum(r["bytes"] for r in kept) <= 10000 and len(kept) == 100
    (cut,) = [r for r in records if r["event"] == "cut"]
    assert cut["lines"] == 200001 - 100 and cut["bytes"] == 200000 * 100 + 4 - 10000


def test_a_command_in_the_image_runs_unaudited_with_stdin_given(tmp_path):
    code, records = launch("--stdin", "hello\n", "cat")
    assert code == 0
    assert [r["text"] for r in records if r["event"] == "output"] == ["hello"]
    assert not [r for r in records if r["event"] == "socket"]


def test_a_missing_program_is_an_error_record_not_a_traceback(tmp_path):
    code, records = launch(str(tmp_path / "nothing-here"))
    assert code == 127
    assert records[-1]["event"] == "error" and "nothing-here" in records[-1]["detail"]


def test_sigterm_reaches_the_program_and_its_signal_is_reported(tmp_path):
    program = tmp_path / "p.py"
    program.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "lab.learner", "run", str(program)], stdout=subprocess.PIPE,
                            text=True, env=env)
    lines = []
    while not any('"up"' in line for line in lines):
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=10)
    exited = json.loads(rest.splitlines()[-1])
    assert exited["event"] == "exited" and exited["signal"] == "SIGTERM" and proc.returncode == 128 + 15


class Collect:
    def __init__(self):
        self.records = []

    def emit(self, proto, event, **fields):
        self.records.append({"proto": proto, "event": event, **fields})


def test_the_watcher_sees_listen_queue_accept_and_close_of_real_sockets():
    sink = Collect()
    watcher = Watcher(sink)
    watcher.sample(read_tables())
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(100)
        addr = f"127.0.0.1:{server.getsockname()[1]}"
        watcher.sample(read_tables())
        client = socket.create_connection(server.getsockname())
        watcher.sample(read_tables())
        conn, peer = server.accept()
        watcher.sample(read_tables())
        client.close()
        conn.close()
        time.sleep(0.05)
        watcher.sample(read_tables())
    mine = [r for r in sink.records if addr in (r.get("local"), r.get("peer"))]
    events = [(r["event"], r.get("queued")) for r in mine if r["event"] in ("listen", "queued")]
    assert events[:2] == [("listen", 0), ("queued", 1)]
    owned = [r for r in mine if r["event"] == "owned"]
    assert owned and owned[0]["local"] == addr and owned[0]["peer"] == f"127.0.0.1:{peer[1]}"
    assert any(r["event"] in ("closed", "state") and r.get("peer") == addr for r in mine)


def test_the_watch_program_stops_on_sigterm_with_a_summary(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ready, out = tmp_path / "ready", tmp_path / "out"
    # Output to a file: this host's namespace may hold thousands of sockets, all reported at
    # the first sample, more than a pipe holds while nobody reads it.
    with out.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "lab.learner", "watch", "--interval", "0.005",
                                 "--ready-file", str(ready)], stdout=sink, text=True, env=env)
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    summary = json.loads(out.read_text().splitlines()[-1])
    assert proc.returncode == 0 and summary["event"] == "summary" and summary["samples"] >= 2
    assert TUTORIAL.is_dir()
