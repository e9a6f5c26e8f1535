"""Impairments and expectations measured on the real engine, side by side in one run:
an impaired client against an unimpaired one, so the difference is the impairment."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from lab.expect import client_messages, percentile
from lab.home import project_root
from lab.run import run_scenario
from lab.scenario import load_scenario

from .conftest import run_lab

SIDE_BY_SIDE = """\
description: >-
  client1 (UDP) and client3 (TCP) behind 60 ms of delay and 30% loss on their outgoing
  packets; client2 (UDP) and client4 (TCP) untouched
clients:
  count: 4
  proto: [udp]
  message_count: 60
  interval: 0.02
  timeout: 0.4
  retries: 0
  max_loss: 0.9
  each:
    client1: {impair: {delay_ms: 60, loss: 0.3}}
    client3: {impair: {delay_ms: 60, loss: 0.3}, proto: [tcp], timeout: 10, message_count: 20}
    client4: {proto: [tcp], timeout: 10, message_count: 20}
"""


@pytest.fixture(scope="module")
def side_by_side(engine, node_image, tmp_path_factory):
    directory = tmp_path_factory.mktemp("impair")
    path = directory / "side-by-side.yaml"
    path.write_text(SIDE_BY_SIDE)
    result = run_scenario(load_scenario(path), engine, directory / "runs", project_root(), source=path)
    events = [json.loads(line) for line in (result.directory / "events.jsonl").read_text().splitlines()]
    return result, events


def rtt_p(events, client, proto, p):
    rtts = [m.reply["rtt_ms"] for m in client_messages(events, proto=proto, services=[client]) if m.intact]
    return percentile(rtts, p)


def loss(events, client, proto):
    messages = client_messages(events, proto=proto, services=[client])
    return sum(1 for m in messages if not m.intact) / len(messages)


def test_delay_raises_rtt_by_about_the_declared_delay(side_by_side):
    result, events = side_by_side
    assert result.verdict == "passed", result.error
    # The delay is in every round trip; the loss adds a retransmission (200 ms or more) to about
    # a third of TCP's. The lower quartile sees the delay alone; the median can land on a
    # retransmitted message (with 20 messages, often enough to make a flaky test).
    for proto, impaired, plain in (("udp", "client1", "client2"), ("tcp", "client3", "client4")):
        added = rtt_p(events, impaired, proto, 25) - rtt_p(events, plain, proto, 25)
        assert 45 <= added <= 120, f"{proto}: rtt rose by {added:.1f} ms for a declared 60 ms"
    # And the loss does show in TCP as lateness: its slowest round trip waited for a retransmission.
    assert rtt_p(events, "client3", "tcp", 100) - rtt_p(events, "client4", "tcp", 100) > 120


def test_loss_is_near_the_declared_rate_and_only_where_declared(side_by_side):
    _, events = side_by_side
    measured = loss(events, "client1", "udp")
    assert 0.12 <= measured <= 0.50, f"declared 30% loss, measured {measured:.0%}"
    assert loss(events, "client2", "udp") == 0
    assert loss(events, "client3", "tcp") == 0  # TCP retransmits: late, never lost


def test_shaper_says_what_it_applied_and_the_echo_container_stayed_unprivileged(side_by_side, engine):
    result, events = side_by_side
    applied = [e for e in events if e["role"] == "shaper" and e["event"] == "applied"]
    assert sorted(a["service"] for a in applied) == ["client1-shaper", "client3-shaper"]
    assert {a["backend"] for a in applied} <= {"netem", "userspace"}
    compose = (result.directory / "compose.yaml").read_text()
    assert "network_mode: service:client1-shaper" in compose
    manifest = json.loads((result.directory / "manifest.json").read_text())
    # The client shares the shaper's network namespace, so both carry one IP.
    containers = manifest["containers"]
    ip = {c["service"]: c["ip"] for c in containers.values()}
    assert ip["client1"] == ip["client1-shaper"] and ip["client1"]


def test_a_failed_expectation_exits_1_and_lab_test_writes_junit(engine, node_image, tmp_path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "too-fast.yaml").write_text(
        "description: nothing is this fast\nclients: {count: 1, proto: [udp]}\n"
        "expect:\n  - {check: rtt, max_ms: 0.001}\n  - {check: echoed_intact}\n"
    )
    (scenarios / "fine.yaml").write_text("description: just works\nclients: {count: 1, proto: [tcp]}\n")
    env = {"LAB_SCENARIOS": str(scenarios)}
    result = run_lab("run", "too-fast", "--out", str(tmp_path / "runs"), env_extra=env)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "pass" in result.stdout

    junit = tmp_path / "junit.xml"
    result = run_lab("test", "--out", str(tmp_path / "runs"), "--junit", str(junit), env_extra=env)
    assert result.returncode == 1
    suites = ET.parse(junit).getroot()  # <testsuites>, one <testsuite> per run
    assert suites.get("tests") == "2" and suites.get("failures") == "1"
    failure = suites.find("testsuite/testcase[@name='too-fast']/failure")
    assert failure is not None and "rtt" in failure.text and "run directory" in failure.text
    assert suites.find("testsuite/testcase[@name='fine']") is not None
    assert suites.find("testsuite/testcase[@name='fine']/failure") is None
    assert len(list((tmp_path / "runs").iterdir())) == 4 - 1  # 3 run directories and junit.xml
