"""Plain `docker compose` on the rendered file of every topology scenario, as a user runs it:
the host rules the file's header names first (as root), the header's `up` command, then `down`
and the header's removal. The clients finish, the joined records show the routing (the server
sees each client's own address, one per family for a dual-stack client) or the translation
(the server sees the router), and nothing is left behind: no container, no network, no
DOCKER-USER rule."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets

import pytest
import yaml

from lab.doctor import cannot_run_here, scenario_impairments
from lab.logs import join_views
from lab.scenario import load_scenario, scenario_names

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


def rendered_addresses(compose: dict, service: str) -> set[str]:
    """Every fixed address a rendered service (or its route helper) has, IPv4 and IPv6."""
    spec = compose["services"].get(f"{service}-net") or compose["services"][service]
    return {address for entry in spec["networks"].values()
            for key, address in entry.items() if key in ("ipv4_address", "ipv6_address")}


def command_option(compose: dict, service: str, option: str) -> str:
    command = compose["services"][service]["command"]
    return command[command.index(option) + 1]


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


# Every scenario with `networks:`. router-restart's fault needs `lab run` (its header says so):
# plain compose runs it without, so it is nat with other clients.
TOPOLOGIES = [name for name in scenario_names(ROOT / "scenarios")
              if load_scenario(ROOT / "scenarios" / f"{name}.yaml").networks is not None]


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_topology_scenarios_run_under_plain_compose_and_leave_nothing(name, node_image, engine, request):
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    if scenario_impairments(scenario):
        reason = cannot_run_here(scenario, request.getfixturevalue("impairment_probe"))
        if reason:
            pytest.skip(reason)
    path = ROOT / f"scenarios/compose/{name}.yaml"
    text = path.read_text()
    compose = yaml.safe_load(text)
    rules = header_rules(text)
    routers = [s for s, spec in compose["services"].items() if spec["labels"]["io.socketlab.role"] == "router"]
    assert set(rules) == ({"I", "D"} if routers else set()), "a routed file's header names the host rules"
    assert f"docker compose -f scenarios/compose/{name}.yaml up --exit-code-from finished finished" in text
    bridges = sorted(net["driver_opts"]["com.docker.network.bridge.name"] for net in compose["networks"].values())
    assert all(f"-i {b} -o {b} -j ACCEPT" in rules["I"] for b in bridges) if routers else True
    project = f"labtest-{secrets.token_hex(3)}"
    project_file = engine.project(project, path)
    try:
        if rules:
            as_root_on_host(engine, node_image, rules["I"])
        result = project_file.run("up", "--exit-code-from", "finished", "finished", check=False, timeout=240)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "clients finished and succeeded" in result.stdout
        records = collected(engine, project)
        containers = {c.service: c for c in engine.containers(project)}
    finally:
        project_file.run("down", "-v", "--remove-orphans", "-t", "1", check=False, timeout=120)
        if rules:
            as_root_on_host(engine, node_image, rules["D"])

    clients = sorted(s for s, c in containers.items() if c.role == "client")
    assert clients and all(containers[c].exit_code == 0 for c in clients)
    rows = [r for r in join_views(records) if r.client != "?"]
    # One conversation per client, protocol and server address (a dual-stack client has two).
    assert sorted((r.client, r.proto, ":" in r.client_ip) for r in rows) == sorted(
        (c, p, ":" in server) for c in clients for p in command_option(compose, c, "--proto").split(",")
        for server in command_option(compose, c, "--server").split(","))
    assert all(r.echoed == r.sent > 0 for r in rows), [r.row() for r in rows]
    masquerading = [r for r in routers if any("MASQUERADE" in arg for arg in compose["services"][r]["command"])]
    assert bool(masquerading) == (name in ("nat", "nat-same-port", "router-restart"))
    if masquerading:
        # Translated: the server saw the router's address on its own network, never the client's.
        server_side = rendered_addresses(compose, "server")
        outer = {a for a in rendered_addresses(compose, masquerading[0])
                 if any(ipaddress.ip_address(a) in ipaddress.ip_network(cfg["subnet"])
                        for net in compose["services"]["server"].get("networks") or
                        compose["services"]["server-net"]["networks"]
                        for cfg in compose["networks"][net]["ipam"]["config"])}
        assert outer and not outer & server_side
        assert all(r.flag == "nat" and host_of(r.server_saw) in outer for r in rows), [r.row() for r in rows]
    else:
        # Routed (or one network), untranslated: the server saw each client's own address.
        assert all(r.flag == "ok" and r.server_saw == r.own_address for r in rows), [r.row() for r in rows]
        assert all(r.client_ip in rendered_addresses(compose, r.client) for r in rows)
    # Each router applied its rules once: under plain compose nothing restarts it.
    for router in routers:
        (applied,) = [r for r in records if r.get("service") == router and r.get("event") == "applied"]
        assert ("masquerade" in (applied.get("nat") or [])) == (router in masquerading)
    assert ("Its faults (restart nat at 2 s) need `lab run`" in text) == (name == "router-restart")

    # Nothing left behind: no container, no network, no DOCKER-USER rule for the file's bridges.
    assert engine.containers(project) == []
    assert not [n for n in engine.client.networks.list() if n.name.startswith(f"{project}_")]
    if routers:
        listing = as_root_on_host(engine, node_image, RULES_LISTING)
        assert not [line for line in listing.splitlines() if any(f"-i {b} " in line for b in bridges)], listing
