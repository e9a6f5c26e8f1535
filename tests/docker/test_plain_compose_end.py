"""The README's plain-compose command for any shipped scenario ends by itself, exit 0."""

from __future__ import annotations

import secrets

from .conftest import ROOT


def test_plain_compose_command_ends_by_itself_with_exit_0(node_image, engine):
    """The README's `docker compose up --exit-code-from finished finished`, for a shipped scenario."""
    project = f"labtest-{secrets.token_hex(3)}"
    files = [ROOT / "scenarios/compose/udp-only.yaml"]
    try:
        result = engine.compose(project, files, "up", "--exit-code-from", "finished", "finished", check=False,
                                timeout=240, cwd=ROOT)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "clients finished and succeeded" in result.stdout
    finally:
        engine.compose(project, files, "down", "-v", "--remove-orphans", "-t", "1", check=False, timeout=120, cwd=ROOT)
