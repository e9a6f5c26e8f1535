"""Scenario files the lab must refuse before anything starts: exit 2, one line naming the file
and the field. Each of these used to pass validation and fail later (or with a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ScenarioError
from lab.scenario import Scenario, load_scenario
from lab.shaper.impairment import Impairment as ShaperImpairment
from lab.shaper.impairment import ImpairmentError

BIG = "x" * 65_508  # one byte more than a UDP datagram carries


def lab_run(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab", "run", str(path)], capture_output=True, text=True, timeout=60)


def refused(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("body,where,allowed", [
    # not UTF-8: the line and the key it sets, whatever byte is wrong
    (b"description: caf\xe9\n", "line 1: description: ", "not UTF-8 text (byte 0xe9)"),
    (b"description: x\nclients:\n  messages: [ok, \xff]\n", "line 3: messages: ", "not UTF-8 text (byte 0xff)"),
    # impairments the shaper refuses
    (b"description: x\nserver: {impair: {reorder: 0.2}}\n", "server.impair.reorder: ", "needs delay_ms > 0"),
    (b"description: x\nserver: {impair: {rate: 7kbit}}\n", "server.impair.rate: ", "must be at least 8kbit (got '7kbit')"),
    # a UDP message longer than one datagram
    (b"description: x\nclients: {messages: [" + BIG.encode() + b"]}\n", "clients.messages.0: ",
     "at most 65507 bytes"),
    (b"description: x\nclients: {message_size: 65508, proto: [udp]}\n", "clients.message_size: ",
     "at most 65507 bytes"),
])
def test_lab_run_refuses_with_exit_2_and_one_line_naming_file_and_field(tmp_path, body, where, allowed):
    path = tmp_path / "bad.yaml"
    path.write_bytes(body)
    result = lab_run(path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(f"lab: {path}: {where}") and result.stderr.count("\n") == 1, result.stderr
    assert allowed in result.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_non_ascii_utf8_still_loads(tmp_path):
    scenario = load_scenario(write(tmp_path, "description: café\nclients: {messages: [你好]}\n"))
    assert scenario.description == "café" and scenario.clients.messages == ["你好"]


@pytest.mark.parametrize("clients,field", [
    ("{message_size: 65508}", "clients.message_size"),
    ("{messages: ['" + "é" * 32_754 + "']}", "clients.messages.0"),  # 65508 bytes in UTF-8, half as many characters
    # the second copy goes out as `#2 ` + the text: 65505 + 3 bytes
    ("{messages: ['" + "y" * 65_505 + "', '" + "y" * 65_505 + "']}", "clients.messages.1"),
    ("{proto: [tcp], messages: ['" + BIG + "'], each: {client2: {proto: [udp]}}}", "clients.each.client2: messages.0"),
])
def test_udp_messages_must_fit_one_datagram(tmp_path, clients, field):
    message = refused(write(tmp_path, f"description: x\nclients: {clients}\n"))
    assert f"{field}: a UDP datagram carries at most 65507 bytes; send it over proto: [tcp] only" in message


def test_the_largest_datagram_and_any_tcp_size_pass(tmp_path):
    fits = load_scenario(write(tmp_path, "description: x\nclients: {messages: ['" + "é" * 32_753 + "z']}\n"))
    assert len(fits.clients.messages[0].encode()) == 65_507
    tcp = load_scenario(write(tmp_path, "description: x\nclients: {proto: [tcp], message_size: 1000000}\n"))
    assert tcp.clients.message_size == 1_000_000
    once = load_scenario(write(tmp_path, "description: x\nclients: {messages: ['" + "y" * 65_505 + "', 'z']}\n"))
    assert once.clients.messages[1] == "z"


IMPAIRMENTS = [
    {"delay_ms": 100, "jitter_ms": 20}, {"loss": 0.1}, {"reorder": 0.2}, {"delay_ms": 5, "reorder": 0.2},
    {"rate": "7kbit"}, {"rate": "8kbit"}, {"rate": "1.5mbit"}, {"rate": "fast"}, {"rate": "1 mbit"},
    {"delay_ms": 10, "jitter_ms": 11}, {"delay_ms": 60_001}, {"corrupt": 1.01}, {"duplicate": -0.1},
]


@pytest.mark.parametrize("values", IMPAIRMENTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v))
def test_scenario_accepts_an_impairment_exactly_when_the_shaper_does(tmp_path, values):
    text = ", ".join(f"{k}: {v}" for k, v in values.items())
    path = write(tmp_path, f"description: x\nclients: {{count: 2, each: {{client2: {{impair: {{{text}}}}}}}}}\n")
    try:
        ShaperImpairment.from_dict(values)
    except ImpairmentError as exc:
        message = refused(path)
        assert f"clients.each.client2.impair.{exc.field}: {exc.rule_text(str)}" in message
    else:
        assert load_scenario(path).client("client2").impair.model_dump(exclude_defaults=True) == values


def test_a_fault_impairment_is_checked_by_the_same_rules(tmp_path):
    message = refused(write(tmp_path, "description: x\nserver: {impair: {}}\n"
                                      "faults: [{at: 1, action: impair, target: server, impair: {jitter_ms: 5}}]\n"))
    assert "faults.0.impair.jitter_ms: must not exceed delay_ms (0): jitter is +/- around the delay (got 5.0)" in message


@pytest.mark.parametrize("fault,allowed", [
    ("{at: 1, action: kill, target: node2}", "faults.0.target: node2 names a swarm node; a node takes only action "
     "disconnect with a duration (cut it off the other nodes, then put it back), not kill"),
    ("{at: 1, action: disconnect, target: node2}", "faults.0.target: node2 names a swarm node; a node takes only "
     "action disconnect with a duration (cut it off the other nodes, then put it back), and this one has none"),
    ("{at: 1, action: disconnect, target: nodes}", "faults.0.target: 'nodes' is not a service; use one of client1, "
     "server (or a swarm node, node1, node2, ..., for disconnect)"),
])
def test_a_fault_names_a_node_only_to_cut_it_off_for_a_while(tmp_path, fault, allowed):
    path = write(tmp_path, f"description: x\nclients: {{count: 1}}\nfaults: [{fault}]\n")
    assert allowed in refused(path)


def test_a_node_cut_with_a_duration_loads_and_a_service_keeps_its_name():
    scenario = Scenario.model_validate({"name": "n", "description": "x", "faults": [
        {"at": 1, "action": "disconnect", "target": "node2", "duration": 3}]})
    assert [i for i, _ in scenario.node_faults()] == [0]
    assert not scenario.is_node("client1") and not scenario.is_node("server")
