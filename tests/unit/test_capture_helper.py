"""The capture helper with a stand-in tcpdump: one tcpdump per interface, each stream in its own
file, ready only once every one listens, and each one's closing counters in its own record."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_TCPDUMP = """#!{python}
import signal, sys, time
interface = sys.argv[sys.argv.index("-i") + 1]
sys.stdout.buffer.write(b"pcap of " + interface.encode())
sys.stdout.flush()

def stop(*_):
    sys.stderr.write("4 packets captured\\n6 packets received by filter\\n2 packets dropped by kernel\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
sys.stderr.write(f"tcpdump: listening on {{interface}}, link-type EN10MB\\n")
sys.stderr.flush()
while True:
    time.sleep(1)
"""


def wait_for(predicate, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


@pytest.fixture
def fake_path(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tcpdump"
    tool.write_text(FAKE_TCPDUMP.format(python=sys.executable))
    tool.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_two_interfaces_two_files_ready_after_both_and_counters_for_each(tmp_path, fake_path):
    ready = tmp_path / "ready"
    outputs = [tmp_path / "home.pcap", tmp_path / "internet.pcap"]
    command = [sys.executable, "-m", "lab.capture", "--interface", "lo", "--output", str(outputs[0]),
               "--interface", "lo", "--output", str(outputs[1]), "--ready-file", str(ready), "--name", "capture"]
    env = {**os.environ, "PATH": fake_path, "PYTHONPATH": str(ROOT)}
    env.pop("LAB_RECORDS", None)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        wait_for(ready.exists)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["event"] for r in records] == ["capturing", "capturing", "summary", "summary"]
    summaries = [r for r in records if r["event"] == "summary"]
    assert [Path(r["file"]).name for r in summaries] == ["home.pcap", "internet.pcap"]
    assert all(r["kernel_dropped"] == 2 and r["captured"] == 4 and r["interface"] == "lo" for r in summaries)
    assert [p.read_bytes() for p in outputs] == [b"pcap of lo", b"pcap of lo"]


def test_an_output_per_interface_is_required(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab.capture", "--interface", "lo", "--interface", "lo",
                           "--output", str(tmp_path / "one.pcap")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "one --output per --interface" in proc.stderr
