"""A scenario's `placement:`: what the model accepts and refuses (exit 2, naming the file, the
field and what is allowed), how the swarm engine places each service, that it refuses a node the
swarm lacks before anything starts, and that one host ignores it and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_run_logic import RecordedProgress, engine, fast_polls, run  # noqa: F401 - fixtures

from lab.compose import render
from lab.engine.swarm.engine import SwarmEngine
from lab.engine.swarm.stack import place, to_stack
from lab.errors import EngineError, ScenarioError, UsageError
from lab.labels import PLACEMENT_LABEL, ROLE_LABEL
from lab.scenario import Scenario, load_scenario

NODES = ["node1", "node2", "node3"]


def write(tmp_path: Path, placement: str, clients: int = 3) -> Path:
    path = tmp_path / "placed.yaml"
    path.write_text(f"description: x\nclients: {{count: {clients}}}\nplacement: {placement}\n", encoding="utf-8")
    return path


def scenario_with(placement: dict | None, clients: int = 3) -> Scenario:
    return Scenario.model_validate({"name": "placed", "description": "d", "clients": {"count": clients},
                                    **({"placement": placement} if placement is not None else {})})


def constraints(placement: dict | None, nodes=NODES, clients: int = 3) -> dict[str, list[str] | None]:
    stack = to_stack(render(scenario_with(placement, clients), run_id="r1", owner="h:1"), nodes=nodes,
                     endpoint_mode="dnsrr")
    return {name: (s["deploy"].get("placement") or {}).get("constraints") for name, s in stack["services"].items()}


def on(node: str) -> list[str]:
    return [f"node.hostname == {node}"]


# ---- the model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, server, per_client", [
    ("{server: node1, clients: spread}", "node1", [None, None, None]),
    ("{server: any}", "any", [None, None, None]),
    ("{clients: node2}", None, ["node2", "node2", "node2"]),
    ("{server: worker-a.example.org, clients: {client1: node2, client3: node3}}", "worker-a.example.org",
     ["node2", None, "node3"]),
    ("{}", None, [None, None, None]),
])
def test_placement_accepts_a_named_node_or_any_for_the_server_and_spread_one_node_or_a_mapping_for_clients(
        tmp_path, text, server, per_client):
    placement = load_scenario(write(tmp_path, text)).placement
    assert placement.server == server
    assert [placement.node_of_client(f"client{i}") for i in (1, 2, 3)] == per_client


def test_a_scenario_without_placement_has_none_and_renders_no_placement_label():
    scenario = scenario_with(None)
    assert scenario.placement is None
    assert not any(PLACEMENT_LABEL in s.get("labels", {}) for s in render(scenario, run_id="r1")["services"].values())


@pytest.mark.parametrize("text, where, allowed", [
    ("{server: spread}", "placement.server: ", "a node's hostname (e.g. node1) or any (got 'spread')"),
    ("{server: 'node_1'}", "placement.server: ", "a node's hostname (e.g. node1) or any (got 'node_1')"),
    ("{server: 1}", "placement.server: ", "a node's hostname (e.g. node1) or any (got 1)"),
    ("{clients: any}", "placement.clients: ", "spread, a node's hostname (e.g. node2) for all clients, or a mapping"),
    ("{clients: [node1, node2]}", "placement.clients: ", "spread, a node's hostname (e.g. node2) for all clients"),
    ("{clients: {client2: -bad}}", "placement.clients.client2: ", "a node's hostname (e.g. node2) (got '-bad')"),
    ("{clients: {client1: spread}}", "placement.clients.client1: ", "a node's hostname (e.g. node2) (got 'spread')"),
    ("{clients: {}}", "placement.clients: ", "an empty mapping places no client"),
    ("{clients: {client9: node2}}", "placement.clients.client9: ", "no such client; clients are client1, client2, client3"),
    ("{nodes: 3}", "placement.nodes: ", "unknown field"),
    ("node1", "placement: ", "Input should be a valid dictionary"),
])
def test_lab_run_refuses_a_bad_placement_with_exit_2_and_one_line_naming_file_field_and_what_is_allowed(
        tmp_path, text, where, allowed):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError):
        load_scenario(path)
    result = subprocess.run([sys.executable, "-m", "lab", "run", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"lab: {path}: {where}") and result.stderr.count("\n") == 1, result.stderr
    assert allowed in result.stderr
    assert "Traceback" not in result.stderr


def test_fewer_clients_than_a_placement_names_is_a_clear_error():
    with pytest.raises(ScenarioError, match="--clients 1 does not fit scenario placed: placement.clients.client2: no such"):
        scenario_with({"clients": {"client2": "node2"}}, clients=2).with_clients(1)


# ---- where the swarm engine puts each service -------------------------------------------------------

def test_without_placement_the_server_takes_the_first_node_and_clients_spread_over_the_others():
    assert constraints(None) == {"server": on("node1"), "client1": on("node2"), "client2": on("node3"),
                                 "client3": on("node2")}


def test_a_named_server_node_and_clients_on_one_node():
    assert constraints({"server": "node1", "clients": "node2"}) == {
        "server": on("node1"), "client1": on("node2"), "client2": on("node2"), "client3": on("node2")}


def test_clients_spread_over_the_nodes_other_than_the_named_servers():
    assert constraints({"server": "node2"}, clients=4) == {
        "server": on("node2"), "client1": on("node1"), "client2": on("node3"), "client3": on("node1"),
        "client4": on("node3")}


def test_a_server_placed_anywhere_has_no_constraint_and_clients_spread_over_every_node():
    assert constraints({"server": "any"}) == {"server": None, "client1": on("node1"), "client2": on("node2"),
                                              "client3": on("node3")}


def test_per_client_nodes_and_the_unlisted_clients_spread():
    assert constraints({"clients": {"client2": "node1"}}) == {
        "server": on("node1"), "client1": on("node2"), "client2": on("node1"), "client3": on("node3")}


def test_a_node_the_swarm_lacks_is_an_error_naming_it_and_the_nodes_it_has():
    services = {"server": {"labels": {ROLE_LABEL: "server", PLACEMENT_LABEL: "node9"}}}
    with pytest.raises(EngineError, match="service server is placed on node node9, .* its nodes: node1, node2"):
        place(services, ["node1", "node2"])


# ---- refused before anything starts ----------------------------------------------------------------

def test_the_swarm_engine_refuses_nodes_it_does_not_have_naming_the_field_and_its_nodes(monkeypatch, tmp_path):
    swarm = SwarmEngine("tcp://manager.invalid:2375")
    monkeypatch.setattr(swarm, "ready_nodes", lambda: ["node1", "node2"])
    scenario = load_scenario(write(tmp_path, "{server: node3, clients: {client1: node2, client2: nodeX}}"))
    with pytest.raises(UsageError) as refused:
        swarm.scenario_for(scenario)
    message = str(refused.value)
    assert refused.value.exit_code == 2
    assert "placement.server: the swarm has no ready, active node 'node3' (its nodes: node1, node2)" in message
    assert "placement.clients.client2: the swarm has no ready, active node 'nodeX'" in message
    assert "client1" not in message


def test_the_swarm_engine_asks_for_its_nodes_only_when_the_scenario_names_one(monkeypatch):
    swarm = SwarmEngine("tcp://manager.invalid:2375")
    monkeypatch.setattr(swarm, "ready_nodes", lambda: pytest.fail("asked the manager"))
    for placement in (None, {"server": "any"}, {"clients": "spread"}):
        assert swarm.scenario_for(scenario_with(placement)).capture is False
    monkeypatch.setattr(swarm, "ready_nodes", lambda: ["node1", "node2"])
    assert swarm.scenario_for(scenario_with({"server": "node1", "clients": "node2"})).placement.server == "node1"


def test_one_host_runs_a_placed_scenario_and_says_in_one_line_that_it_ignores_the_placement(engine, tmp_path):  # noqa: F811
    progress = RecordedProgress()
    result, _ = run(engine, tmp_path, progress=progress, placement={"server": "node1", "clients": "spread"})
    assert result.verdict == "passed", result.error
    assert [m for m in progress.messages if "placement" in m] == [
        "placement: ignored: this engine runs every container on one host (--engine swarm places them)"]
    quiet = RecordedProgress()
    run(engine, tmp_path / "plain", progress=quiet)
    assert not [m for m in quiet.messages if "placement" in m]
