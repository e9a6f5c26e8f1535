"""Rendering scenarios as compose files: hardening, network, shaper sidecars, labels."""

import yaml

from lab.compose import RECORDS_TARGET, RECORDS_VARIABLE, all_wait_at_barrier, render, to_yaml
from lab.labels import MANAGED_LABEL, RUN_DIR_LABEL, RUN_LABEL
from lab.readiness import UP_FILE, UP_MOUNT, watched_by_the_lab
from lab.scenario import Scenario


def scenario(**data):
    return Scenario.model_validate({"name": "t", "description": "x", **data})


def test_every_echo_container_is_unprivileged_and_limited():
    compose = render(scenario())
    for name, service in compose["services"].items():
        if name == "capture":
            continue  # the capture helper: tests/unit/test_wire_service.py
        assert service["cap_drop"] == ["ALL"], name
        assert "cap_add" not in service, name
        assert service["read_only"] is True and service["mem_limit"] and service["pids_limit"] > 0
        assert "no-new-privileges:true" in service["security_opt"]
        assert "user" not in service  # the image's non-root user
        assert "ports" not in service


def test_network_is_internal_with_a_fixed_subnet_for_plain_compose_only():
    plain = render(scenario())["networks"]["lab"]
    assert plain["internal"] is True and plain["ipam"]["config"][0]["subnet"] == "10.77.0.0/24"
    run = render(scenario(), run_id="r1")["networks"]["lab"]
    assert run["internal"] is True and "ipam" not in run  # Docker picks a free subnet: runs never collide
    assert run["labels"][RUN_LABEL] == "r1"


def test_clients_wait_for_a_healthy_server_and_finished_waits_for_all_clients():
    compose = render(scenario(clients={"count": 4}))
    services = compose["services"]
    assert [n for n in services if n.startswith("client")] == ["client1", "client2", "client3", "client4"]
    assert services["client2"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert services["finished"]["depends_on"] == {
        f"client{i}": {"condition": "service_completed_successfully"} for i in range(1, 5)
    }
    assert "server" in services["server"]["networks"]["lab"]["aliases"]


def test_client_options_reach_the_command_line():
    compose = render(scenario(clients={"messages": ["a b", "c"], "retries": 3, "sessions": 4, "reconnect_for": 10}))
    command = compose["services"]["client1"]["command"]
    assert command[:4] == ["python3", "-m", "lab.echo", "client"]
    assert "--message=a b" in command
    assert command[command.index("--retries") + 1] == "3"
    assert command[command.index("--sessions") + 1] == "4"
    assert "--reconnect" in command


def test_an_impaired_service_sits_behind_a_shaper_that_owns_the_namespace():
    compose = render(scenario(server={"impair": {"delay_ms": 100, "jitter_ms": 20}},
                              clients={"count": 2, "each": {"client2": {"impair": {"loss": 0.1}}}}))
    services = compose["services"]
    shaper = services["server-shaper"]
    assert shaper["cap_add"] == ["NET_ADMIN", "NET_RAW"] and shaper["cap_drop"] == ["ALL"]
    assert shaper["networks"]["lab"]["aliases"] == ["server"]  # clients still reach "server"
    assert "--delay-ms" in shaper["command"] and "100" in shaper["command"]
    server = services["server"]
    assert server["network_mode"] == "service:server-shaper" and "networks" not in server
    assert server["depends_on"]["server-shaper"]["condition"] == "service_healthy"
    assert "cap_add" not in server
    assert "client1-shaper" not in services
    assert services["client2"]["network_mode"] == "service:client2-shaper"
    assert "--loss" in services["client2-shaper"]["command"]


def test_labels_mark_everything_for_cleanup():
    compose = render(scenario(), run_id="r9", owner="host:1")
    for service in compose["services"].values():
        assert service["labels"][MANAGED_LABEL] == "true" and service["labels"][RUN_LABEL] == "r9"
    assert compose["networks"]["lab"]["labels"][MANAGED_LABEL] == "true"


def test_yaml_round_trips():
    compose = render(scenario(), build_context=".")
    assert yaml.safe_load(to_yaml(compose)) == compose


def test_publish_only_when_asked():
    compose = render(scenario(publish=["19200:19200"]))
    assert compose["services"]["server"]["ports"] == ["19200:19200"]


def test_runs_have_no_finished_service_plain_compose_does():
    assert "finished" in render(scenario())["services"]
    assert "finished" not in render(scenario(), run_id="r1")["services"]


def test_messages_survive_compose_interpolation_and_option_parsing():
    command = render(scenario(clients={"messages": ["costs $5 ${HOME}", "--help"]}))["services"]["client1"]["command"]
    assert "--message=costs $$5 $${HOME}" in command and "--message=--help" in command


def test_each_program_of_a_run_appends_to_its_own_records_file_plain_compose_has_none(tmp_path):
    impaired = scenario(server={"impair": {"delay_ms": 5}})
    run = render(impaired, run_id="r1", run_dir=tmp_path)
    assert sorted(run["services"]) == ["capture", "client1", "client2", "client3", "server", "server-shaper"]
    for name, service in run["services"].items():
        assert service["environment"][RECORDS_VARIABLE] == RECORDS_TARGET
        assert service["environment"]["LAB_NAME"] == name
        assert {"type": "bind", "source": str(tmp_path / "records" / f"{name}.jsonl"),
                "target": RECORDS_TARGET} in service["volumes"]
        assert service["labels"][RUN_DIR_LABEL] == str(tmp_path)
    for service in render(impaired)["services"].values():
        assert RECORDS_VARIABLE not in service.get("environment", {})
        assert not any(isinstance(v, dict) and v.get("target") == RECORDS_TARGET for v in service.get("volumes", []))


def test_no_rendered_health_check_probes_more_often_than_every_2_s():
    """Docker 20.10 probes for as long as a container lives, each probe an exec costing the
    engine about 80 ms of CPU (benchmarks/probe_cost.py): every probed service of every shipped
    scenario (servers, shapers, watchers, routers, capture) waits at least 2 s between probes."""
    from lab.home import project_root

    files = sorted((project_root() / "scenarios" / "compose").glob("*.yaml"))
    probed = {}
    for path in files:
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            if "healthcheck" in service:
                probed[f"{path.stem}/{name}"] = service["healthcheck"]["interval"]
    assert len(files) > 10 and any(k.endswith("/capture") for k in probed) and any("router" in k for k in probed)
    too_often = {k: v for k, v in probed.items() if not (v.endswith("s") and not v.endswith("ms") and float(v[:-1]) >= 2)}
    assert too_often == {}


def test_the_lab_watches_readiness_only_where_nothing_talks_before_its_release():
    assert all_wait_at_barrier(scenario(server={"impair": {"delay_ms": 5}}))
    learner = scenario(server={"program": {"path": "server.py"}}, clients={"count": 2})
    assert not all_wait_at_barrier(learner)
    assert not all_wait_at_barrier(scenario(clients={"count": 2, "program": {"path": "client.py"}}))
    # A learner's server writes no ready file: its probe asks the socket table and stays.
    services = render(learner, run_id="r1", control_dir="/runs/r1/control")["services"]
    assert watched_by_the_lab(services, "/runs/r1/control/up") == ["capture", "server-sockets"]
    assert services["server"]["healthcheck"]["test"][:4] == ["CMD", "python3", "-m", "lab.learner"]
    assert services["client1"]["depends_on"]["server"]["condition"] == "service_healthy"


def test_a_watched_service_writes_its_ready_file_into_its_own_host_directory():
    services = render(scenario(server={"impair": {"delay_ms": 5}}, capture=True), run_id="r1",
                      control_dir="/runs/r1/control")["services"]
    probes = {name: spec["healthcheck"]["test"][3] for name, spec in services.items() if "healthcheck" in spec}
    assert set(probes) == {"server", "server-shaper", "capture"}
    assert sorted(watched_by_the_lab(services, "/runs/r1/control/up")) == sorted(probes)
    for name, path in probes.items():
        spec = services[name]
        assert "healthcheck" not in spec and path not in spec["command"]
        assert spec["command"][spec["command"].index("--ready-file") + 1] == UP_FILE
        assert {"type": "bind", "source": f"/runs/r1/control/up/{name}", "target": UP_MOUNT} in spec["volumes"]
    conditions = [cond["condition"] for spec in services.values() for cond in spec.get("depends_on", {}).values()]
    assert conditions and set(conditions) == {"service_started"}
