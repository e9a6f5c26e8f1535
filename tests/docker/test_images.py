"""The offline base is built from nothing on every run: a warm cache must not hide a broken fallback."""

from __future__ import annotations

import secrets

from lab.compose import node_image as node_image_ref
from lab.images import build_offline_base


def test_offline_base_builds_from_debian_packages(engine):
    ref = f"socketlab/base-throwaway:{secrets.token_hex(4)}"
    try:
        build_offline_base(engine, ref, progress=lambda _m: None)
        output = engine.client.containers.run(
            ref,
            ["sh", "-c", "python3 -c 'import asyncio, json, ssl, sqlite3; print(\"stdlib ok\")' && tc -V && "
                         "iptables --version && tcpdump --version && useradd --help >/dev/null && echo tools ok"],
            remove=True, network_mode="none",
        ).decode()
        assert "stdlib ok" in output and "iptables v" in output and "tools ok" in output
    finally:
        engine.client.images.remove(ref, force=True)
    assert engine.image_id(ref) is None


def test_node_image_runs_as_non_root_with_only_stdlib_code(engine, node_image):
    output = engine.client.containers.run(
        node_image_ref(), ["sh", "-c", "id -u; ls -I __pycache__ /opt/lab/lab; python3 -m lab.echo --help | head -1"],
        remove=True, network_mode="none", cap_drop=["ALL"],
    ).decode()
    lines = output.splitlines()
    assert lines[0] == "10001"
    # The in-container packages (tests/unit/test_import_boundary.py) and nothing else of the lab.
    assert lines[1:-1] == ["__init__.py", "capture", "echo", "learner", "netns", "records", "shaper"]
    assert lines[-1].startswith("usage: python3 -m lab.echo")
    assert "scenario.py" not in output and "engine.py" not in output
