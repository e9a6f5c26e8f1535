"""Plain `docker compose --profile capture` records the lab network too (about 20 s)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time

import pytest

from lab.wire.pcap import read_capture

from .conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("plain_compose_turn")]


def compose(project: str, *args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "compose", "-p", project, "-f", str(ROOT / "compose.yaml"), "--profile", "capture",
                           *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_the_capture_profile_writes_a_pcap_of_the_conversations(node_image, engine, tmp_path):
    out = tmp_path / "capture"
    out.mkdir()
    env = {**os.environ, "LAB_CAPTURE_DIR": str(out)}
    project = f"labtest-{secrets.token_hex(3)}"
    try:
        up = compose(project, "up", "-d", "--no-build", env=env)
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 60
        while not any(c.service == "finished" and c.status == "exited" for c in engine.containers(project)):
            assert time.monotonic() < deadline, "the clients did not finish within 60 s"
            time.sleep(0.3)
        assert compose(project, "stop", "-t", "3", env=env).returncode == 0
    finally:
        compose(project, "down", "-v", "--remove-orphans", "-t", "1", env=env)
    read = read_capture(out / "lab.pcap")
    assert read.damage is None
    flows = {(p.proto, p.src) for p in read.packets if p.dst.endswith(":19200")}
    assert {proto for proto, _ in flows} == {"tcp", "udp"} and len(flows) == 6  # 3 clients, each both protos
