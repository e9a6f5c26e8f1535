"""The swarm engine's pure parts: a run's compose file as a stack, placement, and what the engine
refuses before a run starts (exit 2, naming what and why). The real swarm is in
tests/docker/test_swarm.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fake_engine import FakeEngine

from lab.compose import render
from lab.engine.docker_engine import DockerEngine
from lab.engine.swarm.cluster import Cluster, Node
from lab.engine.swarm.engine import SwarmEngine, SwarmStack
from lab.engine.swarm.stack import place, to_stack
from lab.errors import EngineError, UsageError
from lab.labels import ROLE_LABEL
from lab.run import run_scenario
from lab.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def stack_of(name: str, nodes=("node1", "node2", "node3"), mode="dnsrr", clients: int | None = None):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    if clients:
        scenario = scenario.with_clients(clients)
    return to_stack(render(scenario, run_id="r1", owner="h:1"), nodes=list(nodes),
                    endpoint_mode=mode)


def test_basic_as_a_stack_puts_the_server_on_node1_and_spreads_the_clients_over_the_others():
    stack = stack_of("basic", clients=4)
    placed = {name: s["deploy"]["placement"]["constraints"] for name, s in stack["services"].items()}
    assert placed == {"server": ["node.hostname == node1"], "client1": ["node.hostname == node2"],
                      "client2": ["node.hostname == node3"], "client3": ["node.hostname == node2"],
                      "client4": ["node.hostname == node3"]}


def test_a_stack_keeps_commands_labels_and_hardening_and_drops_what_swarm_lacks():
    compose = render(load_scenario(SCENARIOS / "basic.yaml"), run_id="r1", owner="h:1")
    stack = to_stack(compose, nodes=["a"], endpoint_mode="vip")
    assert "finished" not in stack["services"]
    server, rendered = stack["services"]["server"], compose["services"]["server"]
    assert server["command"] == rendered["command"]
    assert server["image"] == rendered["image"]  # the run's node image, as rendered
    assert server["cap_drop"] == ["ALL"] and server["read_only"] is True
    assert server["volumes"] == [{"type": "tmpfs", "target": "/tmp"}]  # the short tmpfs form is ignored by stacks
    assert server["deploy"]["labels"][ROLE_LABEL] == "server" and server["labels"] == rendered["labels"]
    assert server["deploy"]["endpoint_mode"] == "vip"
    assert server["deploy"]["restart_policy"] == {"condition": "none"}
    assert server["deploy"]["resources"] == {"limits": {"memory": rendered["mem_limit"]}}
    assert not {"depends_on", "build", "tmpfs", "mem_limit", "pids_limit"} & set(stack["services"]["client1"])
    assert rendered["cpu_shares"] and "cpu_shares" not in server  # `docker stack deploy` refuses it
    network = stack["networks"]["lab"]
    assert network["driver"] == "overlay" and network["attachable"] and network["internal"]
    assert "ipam" not in network


def test_bind_mounts_of_this_host_do_not_reach_the_nodes_but_named_volumes_do():
    compose = {"services": {"server": {"labels": {ROLE_LABEL: "server"}, "volumes": [
        "./records:/records", "/abs:/x", {"type": "bind", "source": "/y", "target": "/y"}, "data:/data"]}}}
    stack = to_stack(compose, nodes=["n"], endpoint_mode="dnsrr")
    assert stack["services"]["server"]["volumes"] == ["data:/data"]


def test_one_node_takes_everything_and_no_node_is_an_error():
    services = {"server": {"labels": {ROLE_LABEL: "server"}}, "client1": {"labels": {ROLE_LABEL: "client"}}}
    assert place(services, ["solo"]) == {"server": "solo", "client1": "solo"}
    with pytest.raises(EngineError, match="no node"):
        place(services, [])


def test_no_capture_helper_on_a_swarm():
    compose = render(load_scenario(SCENARIOS / "basic.yaml"), run_id="r1", owner="h:1")
    assert "capture" in compose["services"]
    assert "capture" not in to_stack(compose, nodes=["n"], endpoint_mode="dnsrr")["services"]


def test_a_shaper_sidecar_cannot_become_a_stack():
    with pytest.raises(EngineError, match="cannot share another service's network namespace"):
        stack_of("high-latency")


@pytest.mark.parametrize("name, named", [
    ("high-latency", "impairments (server): the shaper sidecar shares its service's network namespace"),
    ("partition", "fault disconnect of client2: a swarm task cannot leave an overlay network"),
    ("lossy-restart", "fault impair of server: no shaper on swarm"),
    ("client-crash", "fault kill of client3: needs the node's daemon, and only the manager is reachable"),
    ("routed", "named networks and routers: the swarm engine runs single-network scenarios"),
])
def test_the_swarm_engine_refuses_what_swarm_cannot_do_naming_it_and_why(name, named):
    engine = SwarmEngine("tcp://manager.invalid:2375")  # no connection is made to refuse
    with pytest.raises(UsageError) as refused:
        engine.scenario_for(load_scenario(SCENARIOS / f"{name}.yaml"))
    assert refused.value.exit_code == 2
    assert named in str(refused.value) and f"scenario {name}" in str(refused.value)


@pytest.mark.parametrize("name", ["basic", "tcp-only", "udp-only", "iterative", "server-restart", "large-messages"])
def test_the_swarm_engine_takes_scenarios_without_impairments_or_partitions_with_capture_off(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.capture
    taken = SwarmEngine("tcp://manager.invalid:2375").scenario_for(scenario)
    assert taken.capture is False and taken.model_dump(exclude={"capture"}) == scenario.model_dump(exclude={"capture"})


def test_wire_expectations_are_refused_on_a_swarm():
    scenario = Scenario.model_validate({"name": "w", "description": "d",
                                        "expect": [{"check": "retransmissions", "max": 0}]})
    with pytest.raises(UsageError, match="expectations retransmissions: they read the wire view"):
        SwarmEngine("tcp://manager.invalid:2375").scenario_for(scenario)


def test_a_refused_scenario_stops_before_the_run_directory_exists(tmp_path):
    def refuse() -> None:
        raise UsageError("cannot")

    engine = FakeEngine(on={"scenario_for": refuse})
    scenario = Scenario.model_validate({"name": "s", "description": "d"})
    with pytest.raises(UsageError):
        run_scenario(scenario, engine, tmp_path / "runs", tmp_path)
    assert not (tmp_path / "runs").exists()
    assert engine.calls == ["scenario_for"]


def test_doctor_names_an_unreachable_swarm_manager_and_how_to_get_one(monkeypatch):
    from lab.doctor import swarm_checks

    monkeypatch.setenv("LAB_SWARM_HOST", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    checks = {c.name: c for c in swarm_checks(host_image_id=None)}
    manager = checks["swarm manager"]
    assert not manager.ok and manager.blocking
    assert "cannot reach the Docker engine at tcp://127.0.0.1:9" in manager.detail
    assert "lab cluster up" in manager.fix and "LAB_SWARM_HOST" in manager.fix


def cut_scenario(duration=4, target="node3") -> Scenario:
    return Scenario.model_validate({"name": "cut", "description": "d", "capture": False, "faults": [
        {"at": 1, "action": "restart", "target": "server"},
        {"at": 2, "action": "disconnect", "target": target, "duration": duration}]})


class FakeCluster(Cluster):
    """A lab cluster of three nodes whose node containers run nothing: each command is noted."""

    def __init__(self) -> None:
        super().__init__("lab-cluster-t")
        self.ran: list[tuple[str, str]] = []

    def nodes(self) -> list[Node]:
        return [Node(n, f"lab-cluster-t-node{n}", f"node{n}", "running", f"172.30.0.{n + 1}") for n in (1, 2, 3)]

    def exec_on_node(self, hostname: str, command: list[str]) -> tuple[int, str]:
        self.ran.append((hostname, command[-1]))
        return 0, ""


def test_a_node_cut_is_refused_on_a_swarm_the_lab_did_not_make_naming_the_field_and_why():
    with pytest.raises(UsageError) as refused:
        SwarmEngine("tcp://manager.invalid:2375").scenario_for(cut_scenario())
    assert refused.value.exit_code == 2
    assert ("faults.1.target: disconnect of node node3: the lab cuts off only the nodes of a `lab cluster` it "
            "made") in str(refused.value) and "cannot cut a real machine's cable" in str(refused.value)


def test_a_node_cut_is_refused_on_one_host():
    with pytest.raises(UsageError) as refused:
        DockerEngine().scenario_for(cut_scenario())
    assert refused.value.exit_code == 2
    assert "faults.1.target: node3 is a swarm node, and one host has no nodes to cut off" in str(refused.value)


def test_a_lab_cluster_takes_a_short_cut_of_its_own_node_and_refuses_a_long_one_or_a_missing_node():
    engine = SwarmEngine("tcp://manager.invalid:2375", FakeCluster())
    assert engine.scenario_for(cut_scenario()).faults[1].target == "node3"
    with pytest.raises(UsageError, match=r"faults.1.duration: 11 s is more than 10 s; a node cut off longer may be "
                                         r"marked down by the manager"):
        engine.scenario_for(cut_scenario(duration=11))
    with pytest.raises(UsageError, match=r"faults.1.target: lab cluster lab-cluster-t has no node node4 "
                                         r"\(its nodes: node1, node2, node3\)"):
        engine.scenario_for(cut_scenario(target="node4"))


def test_cutting_a_node_drops_its_traffic_with_every_other_node_and_the_run_puts_it_back_at_the_latest_on_stop():
    cluster = FakeCluster()
    engine = SwarmEngine("tcp://manager.invalid:2375", cluster)
    engine.act_on_node("node3", "disconnect")
    (node, script), = cluster.ran
    assert node == "node3"
    for peer in ("172.30.0.2", "172.30.0.3"):  # node1, node2; never the host, the gateway
        assert f"-A LAB-CUT -s {peer} -j DROP" in script and f"-A LAB-CUT -d {peer} -j DROP" in script
    assert "172.30.0.4" not in script and "172.30.0.1 " not in script
    assert "-I INPUT 1 -j LAB-CUT" in script and "-I OUTPUT 1 -j LAB-CUT" in script
    engine.mend_all()  # what the stack's stop does first
    assert cluster.ran[1][0] == "node3" and "-X LAB-CUT" in cluster.ran[1][1]
    engine.mend_all()
    assert len(cluster.ran) == 2  # put back once


def test_a_failed_cut_names_the_node_and_what_its_firewall_said():
    cluster = FakeCluster()
    cluster.exec_on_node = lambda hostname, command: (4, "iptables: Permission denied\n")
    with pytest.raises(EngineError, match="cutting off node node2 failed \\(exit status 4\\): iptables: Permission denied"):
        SwarmEngine("tcp://manager.invalid:2375", cluster).act_on_node("node2", "disconnect")


def test_stopping_a_run_puts_back_a_node_still_cut_off_before_it_stops_the_tasks(monkeypatch, tmp_path):
    cluster = FakeCluster()
    engine = SwarmEngine("tcp://manager.invalid:2375", cluster)
    engine.act_on_node("node2", "disconnect")  # a run that timed out mid-cut
    monkeypatch.setattr(engine, "containers", lambda project: [])
    SwarmStack("lab-cut-1", tmp_path / "compose.yaml", engine).stop()
    assert [(node, "-X LAB-CUT" in script) for node, script in cluster.ran] == [("node2", False), ("node2", True)]


def test_a_stack_is_resolved_once_however_many_threads_ask_at_once(tmp_path, monkeypatch):
    """`lab run` resolves the stack in the background while it deploys: the deploy must wait for
    that resolution, never read a stack file still being written."""
    import lab.engine.swarm.engine as swarm_engine

    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {server: {image: x}}\n")
    made = []

    def slow_stack(compose, nodes, endpoint_mode):
        made.append(nodes)
        time.sleep(0.2)  # a resolution still under way when the others ask
        return {"services": {"server": {"image": "x", "deploy": {"labels": {}}}}}

    monkeypatch.setattr(swarm_engine, "to_stack", slow_stack)
    engine = SwarmEngine("tcp://manager.invalid:2375")
    monkeypatch.setattr(engine, "ready_nodes", lambda: ["node1"])
    monkeypatch.setattr(engine, "endpoint_mode", lambda: "dnsrr")
    stack = SwarmStack("lab-x", compose, engine)
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(stack.resolved_config())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(made) == 1 and len(texts) == 3 and len(set(texts)) == 1
    assert (tmp_path / "stack.yaml").read_text() == texts[0]
