"""The README's plain-compose command for a shipped scenario ends by itself with exit 0, and
declared impairments apply without `lab` (the shaper sidecars are in the rendered file)."""

from __future__ import annotations

import json
import secrets

import pytest

from lab.expect import percentile

from .conftest import ROOT

pytestmark = pytest.mark.usefixtures("plain_compose_turn")


@pytest.mark.parametrize("name", ["udp-only", "high-latency"])
def test_plain_compose_command_ends_by_itself_with_exit_0(name, node_image, engine):
    project = f"labtest-{secrets.token_hex(3)}"
    compose = engine.project(project, ROOT / f"scenarios/compose/{name}.yaml")
    try:
        result = compose.run("up", "--exit-code-from", "finished", "finished", check=False, timeout=240)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "clients finished and succeeded" in result.stdout
        containers = {c.service: c for c in engine.containers(project)}
        replies = [
            json.loads(line)
            for c in containers.values() if c.role == "client"
            for line in engine.container_logs(c.id).decode().splitlines()
            if '"event":"reply"' in line
        ]
        rtt = percentile([r["rtt_ms"] for r in replies], 50)
        if name == "high-latency":
            assert "server-shaper" in containers
            assert 70 <= rtt <= 200, f"declared 100 ms of delay, rtt p50 {rtt:.1f} ms"
        else:
            assert rtt < 50, f"no impairment declared, rtt p50 {rtt:.1f} ms"
    finally:
        compose.run("down", "-v", "--remove-orphans", "-t", "1", check=False, timeout=120)
