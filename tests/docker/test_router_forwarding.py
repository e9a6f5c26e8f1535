"""A router turns IPv4 forwarding on only after its rules, and only with NET_ADMIN.

The rendered router starts with `net.ipv4.ip_forward=0` (lab/compose_topology.py); these run
the helper in a bare container of the node image so the switch itself is observed, not a flow.
"""

from __future__ import annotations

import json

import docker.errors

from lab.compose import node_image as node_image_ref

# The helper holds its namespace until SIGTERM; `timeout` sends it, then the switches are read.
SCRIPT = ("timeout -s TERM 3 python3 -m lab.netns --name r --forward; echo status=$?; "
          "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/lo/forwarding")


def _run(engine, caps: list[str]) -> list[str]:
    try:
        out = engine.client.containers.run(
            node_image_ref(), ["sh", "-c", SCRIPT], remove=True, network_mode="none", user="0:0",
            cap_drop=["ALL"], cap_add=caps, sysctls={"net.ipv4.ip_forward": "0"})
    except docker.errors.ContainerError as exc:  # pragma: no cover - the script always exits 0
        raise AssertionError(exc.stderr) from exc
    return out.decode().splitlines()


def test_forwarding_comes_on_after_the_rules_with_net_admin(engine, node_image):
    lines = _run(engine, ["NET_ADMIN"])
    applied = json.loads(lines[0])
    assert applied["event"] == "applied"
    assert applied["commands"][-1] == "ipv4 forwarding on"
    # The switch IPv4 forwarding follows is the interface's; the namespace-wide one stays off.
    assert applied["forwarding"]["ipv4:lo"] == "1" and applied["forwarding"]["ipv4"] == "0"
    assert lines[-2:] == ["0", "1"]


def test_without_net_admin_the_helper_says_so_and_fails(engine, node_image):
    lines = _run(engine, [])
    error = json.loads(lines[0])
    assert error["event"] == "error" and "Operation not permitted" in error["error"], error
    assert "status=1" in lines
    assert lines[-2:] == ["0", "0"]
