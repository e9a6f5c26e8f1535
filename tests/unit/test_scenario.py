"""The scenario model: shipped files load, bad files name the file, the field and what is allowed."""

from pathlib import Path

import pytest

from lab.errors import ScenarioError
from lab.home import project_root
from lab.rendering import render_committed
from lab.scenario import find_scenario, load_scenario, scenario_names

SCENARIOS = project_root() / "scenarios"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", scenario_names(SCENARIOS))
def test_shipped_scenarios_load(name):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.name == name
    assert scenario.description.strip()
    assert scenario.client_names()


def test_committed_compose_files_are_rendered_from_the_scenarios():
    stale = render_committed(project_root(), SCENARIOS, check=True)
    assert stale == [], f"run `lab render`: {stale}"


def test_minimal_scenario_gets_defaults(tmp_path):
    s = load_scenario(write(tmp_path, "mini", "description: just the defaults\n"))
    assert s.server.port == 19200 and s.server.mode == "async"
    assert s.client_names() == ["client1", "client2", "client3"]
    assert s.client("client2").interval == 0.5


@pytest.mark.parametrize(
    "body, field, allowed",
    [
        ("description: x\nclients: {count: 0}\n", "clients.count", "greater than or equal to 1"),
        ("description: x\nserver: {mode: forking}\n", "server.mode", "'iterative', 'threaded' or 'async'"),
        ("description: x\nserver: {proto: [tcp, sctp]}\n", "server.proto.1", "'tcp' or 'udp'"),
        ("description: x\nclients: {intervall: 1}\n", "clients.intervall", "unknown field"),
        ("description: x\nserver: {impair: {loss: 1.5}}\n", "server.impair.loss", "must be a fraction from 0 to 1"),
        ("description: x\nserver: {impair: {rate: fast}}\n", "server.impair.rate", "kbit"),
        ("description: x\nfaults: [{at: 1, action: explode, target: server}]\n", "faults.0.action", "'restart'"),
        ("description: x\nfaults: [{at: 1, action: stop, target: client9}]\n", "client9", "client1, client2, client3"),
        ("description: x\nclients: {each: {client7: {interval: 1}}}\n", "clients.each.client7", "no such client"),
        ("clients: {count: 2}\n", "description", "Field required"),
        # per-client overrides are checked at load, with the inherited values
        ("description: x\nclients: {each: {client2: {interval: -1}}}\n", "clients.each.client2.interval",
         "greater than or equal to 0"),
        ("description: x\nclients: {each: {client2: {proto: [udp, udp]}}}\n", "clients.each.client2",
         "each protocol once"),
        ("description: x\nclients: {each: {client2: {messages: [a], message_count: 3}}}\n", "clients.each.client2",
         "either messages, or message_count"),
        ("description: x\nclients: {each: {client2: {colour: red}}}\n", "clients.each.client2.colour", "unknown field"),
        # ports and subnet
        ("description: x\npublish: ['99999:1']\n", "publish", "ports 1-65535"),
        ("description: x\npublish: ['19200']\n", "publish", "HOST_PORT:CONTAINER_PORT"),
        ("description: x\nnetwork: {subnet: 10.77.0.0/30}\n", "network.subnet", "/28 or larger"),
        ("description: x\nnetwork: {subnet: fd00::/64}\n", "network.subnet", "IPv4"),
        ("description: x\nnetwork: {subnet: lab}\n", "network.subnet", "CIDR"),
    ],
)
def test_bad_field_names_file_field_and_what_is_allowed(tmp_path, body, field, allowed):
    path = write(tmp_path, "bad", body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert field in message
    assert allowed in message
    assert info.value.exit_code == 2


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "broken", "description: x\nclients:\n  count: [3\n")
    with pytest.raises(ScenarioError, match=r"broken.yaml: line \d+: not valid YAML"):
        load_scenario(path)


def test_name_must_match_file(tmp_path):
    with pytest.raises(ScenarioError, match="must match the file name"):
        load_scenario(write(tmp_path, "one", "name: two\ndescription: x\n"))


def test_unknown_scenario_name_lists_the_known_ones():
    with pytest.raises(ScenarioError) as info:
        find_scenario("no-such-thing", SCENARIOS)
    assert "basic" in str(info.value) and "no-such-thing" in str(info.value)


def test_per_client_override_inherits_the_rest(tmp_path):
    s = load_scenario(write(tmp_path, "o", """
description: x
clients:
  count: 2
  interval: 0.2
  each:
    client2: {proto: [udp], impair: {delay_ms: 50}}
"""))
    assert s.client("client1").proto == ["tcp", "udp"] and s.client("client1").impair is None
    c2 = s.client("client2")
    assert c2.proto == ["udp"] and c2.interval == 0.2 and c2.impair.delay_ms == 50


def test_with_clients_changes_only_the_count(tmp_path):
    s = load_scenario(write(tmp_path, "w", "description: x\nclients: {count: 2, interval: 0.1}\n"))
    more = s.with_clients(7)
    assert more.client_names()[-1] == "client7" and more.clients.interval == 0.1


def test_messages_and_generated_messages_are_exclusive(tmp_path):
    with pytest.raises(ScenarioError, match="either messages, or message_count"):
        load_scenario(write(tmp_path, "m", "description: x\nclients: {messages: [a], message_size: 10}\n"))


def test_impair_fault_needs_a_shaper(tmp_path):
    with pytest.raises(ScenarioError, match="no impairment helper"):
        load_scenario(write(tmp_path, "f",
                            "description: x\nfaults: [{at: 1, action: impair, target: server, impair: {loss: 0.3}}]\n"))


def test_jitter_cannot_exceed_delay(tmp_path):
    with pytest.raises(ScenarioError, match="jitter_ms"):
        load_scenario(write(tmp_path, "j", "description: x\nserver: {impair: {delay_ms: 10, jitter_ms: 20}}\n"))


def test_good_ports_and_subnet_load(tmp_path):
    s = load_scenario(write(tmp_path, "g", "description: x\npublish: ['127.0.0.1:19200:19200/udp', '8080:19200']\n"
                                           "network: {subnet: 10.99.0.0/24}\n"))
    assert s.publish[0].startswith("127.0.0.1") and s.network.subnet == "10.99.0.0/24"


def test_too_few_clients_for_the_scenario_is_a_scenario_error():
    scenario = load_scenario(SCENARIOS / "partition.yaml")
    with pytest.raises(ScenarioError, match=r"--clients 1 does not fit scenario partition: faults.0.target"):
        scenario.with_clients(1)
