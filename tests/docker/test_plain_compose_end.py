"""The README's plain-compose command for any shipped scenario ends by itself, exit 0."""

from __future__ import annotations

import secrets
import subprocess

from .conftest import ROOT


def test_plain_compose_command_ends_by_itself_with_exit_0(node_image, engine):
    """The README's `docker compose up --exit-code-from finished finished`, for a shipped scenario."""
    project = f"labtest-{secrets.token_hex(3)}"
    base = ["docker", "compose", "-p", project, "-f", str(ROOT / "scenarios/compose/udp-only.yaml")]
    try:
        result = subprocess.run([*base, "up", "--exit-code-from", "finished", "finished"], capture_output=True,
                                text=True, timeout=240, cwd=ROOT)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "clients finished and succeeded" in result.stdout
    finally:
        subprocess.run([*base, "down", "-v", "--remove-orphans", "-t", "1"], capture_output=True, timeout=120, cwd=ROOT)
