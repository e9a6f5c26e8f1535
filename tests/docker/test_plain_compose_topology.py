"""Plain `docker compose` on the rendered files of routed scenarios, as a user runs them: the
host rules the file's header names first (as root), the header's `up` command, then `down` and
the header's removal. The clients finish, the joined records show the routing (the server
sees each client's own address from another subnet) or the translation (the server sees the
router), and nothing is left behind: no container, no network, no DOCKER-USER rule."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets

import pytest
import yaml

from lab.logs import join_views

from .conftest import ROOT

pytestmark = pytest.mark.usefixtures("plain_compose_turn")

HOST_RULES = re.compile(r"^#\s+(iptables -(?P<op>[ID]) DOCKER-USER .*)$")
RULES_LISTING = "iptables -w -S DOCKER-USER; ip6tables -w -S DOCKER-USER 2>/dev/null || true"


def header_rules(text: str) -> dict[str, str]:
    """The header's two command lines: what to add before (`I`) and remove after (`D`)."""
    found = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = HOST_RULES.match(line)
        if match:
            found[match.group("op")] = match.group(1)
    return found


def as_root_on_host(engine, image: str, script: str) -> str:
    """A shell line run as root in the host's network namespace, where the user would run it
    (through the lab's own throwaway helper: the test does not call the host's iptables)."""
    status, output = engine.host_firewall(image, script)
    assert status == 0, f"{script}: status {status}: {output}"
    return output


def collected(engine, project: str) -> list[dict]:
    """Every container's records, tagged with its service as `lab run` tags them, in time order."""
    records = []
    for info in engine.containers(project):
        for line in engine.container_logs(info.id).decode("utf-8", "replace").splitlines():
            if line.startswith("{"):
                records.append({**json.loads(line), "service": info.service})
    return sorted(records, key=lambda r: r.get("ts", ""))


def rendered_addresses(compose: dict, service: str) -> dict[str, str]:
    """network -> the fixed IPv4 address a rendered service (or its route helper) has on it."""
    spec = compose["services"].get(f"{service}-net") or compose["services"][service]
    return {net: entry["ipv4_address"] for net, entry in spec["networks"].items()}


def command_option(compose: dict, service: str, option: str) -> str:
    command = compose["services"][service]["command"]
    return command[command.index(option) + 1]


# router-restart: its fault needs `lab run` (the header says so); plain compose runs it without.
@pytest.mark.parametrize("name", ["routed", "nat", "router-restart"])
def test_routed_scenarios_run_under_plain_compose_and_leave_nothing(name, node_image, engine):
    path = ROOT / f"scenarios/compose/{name}.yaml"
    text = path.read_text()
    compose = yaml.safe_load(text)
    rules = header_rules(text)
    assert set(rules) == {"I", "D"}, "the header must say which host rules to add and remove"
    assert f"docker compose -f scenarios/compose/{name}.yaml up --exit-code-from finished finished" in text
    bridges = sorted(net["driver_opts"]["com.docker.network.bridge.name"] for net in compose["networks"].values())
    assert all(f"-i {b} -o {b} -j ACCEPT" in rules["I"] for b in bridges)
    project = f"labtest-{secrets.token_hex(3)}"
    project_file = engine.project(project, path)
    try:
        as_root_on_host(engine, node_image, rules["I"])
        result = project_file.run("up", "--exit-code-from", "finished", "finished", check=False, timeout=240)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "clients finished and succeeded" in result.stdout
        records = collected(engine, project)
        containers = {c.service: c for c in engine.containers(project)}
    finally:
        project_file.run("down", "-v", "--remove-orphans", "-t", "1", check=False, timeout=120)
        as_root_on_host(engine, node_image, rules["D"])

    clients = sorted(s for s, c in containers.items() if c.role == "client")
    assert clients and all(containers[c].exit_code == 0 for c in clients)
    rows = [r for r in join_views(records) if r.client != "?"]
    assert {r.client for r in rows} == set(clients)
    assert {(r.client, r.proto) for r in rows} == {
        (c, p) for c in clients for p in command_option(compose, c, "--proto").split(",")}
    assert all(r.echoed == r.sent > 0 for r in rows), [r.row() for r in rows]
    server_nets = compose["services"]["server-net"]["networks"] if "server-net" in compose["services"] \
        else compose["services"]["server"]["networks"]
    server_subnets = [ipaddress.ip_network(cfg["subnet"]) for net in server_nets
                      for cfg in compose["networks"][net]["ipam"]["config"]]
    router = next(s for s, spec in compose["services"].items() if spec["labels"]["io.socketlab.role"] == "router")
    masquerading = any("MASQUERADE" in arg for arg in compose["services"][router]["command"])
    assert masquerading == (name != "routed")
    if masquerading:
        # Masqueraded: the server saw the router's address on its own network, never the client's.
        outer = {rendered_addresses(compose, router)[net] for net in server_nets}
        assert all(r.flag == "nat" for r in rows), [r.row() for r in rows]
        assert {r.server_saw.rsplit(":", 1)[0] for r in rows} == outer
        assert all(r.client_ip != r.server_saw.rsplit(":", 1)[0] for r in rows)
    else:
        # Routed, untranslated: the server saw each client's own address, from another subnet.
        assert all(r.flag == "ok" and r.server_saw == r.own_address for r in rows), [r.row() for r in rows]
        assert not any(ipaddress.ip_address(r.client_ip) in s for r in rows for s in server_subnets)
        assert {r.client_ip for r in rows} == {next(iter(rendered_addresses(compose, c).values())) for c in clients}
    # The router applied its rules once: under plain compose nothing restarts it.
    (applied,) = [r for r in records if r.get("service") == router and r.get("event") == "applied"]
    assert ("masquerade" in (applied.get("nat") or [])) == masquerading
    assert ("Its faults (restart nat at 2 s) need `lab run`" in text) == (name == "router-restart")

    # Nothing left behind: no container, no network, no DOCKER-USER rule for the file's bridges.
    assert engine.containers(project) == []
    assert not [n for n in engine.client.networks.list() if n.name.startswith(f"{project}_")]
    listing = as_root_on_host(engine, node_image, RULES_LISTING)
    assert not [line for line in listing.splitlines() if any(f"-i {b} " in line for b in bridges)], listing
