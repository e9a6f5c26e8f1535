"""The capture helper in the rendered compose files: privileges, the bridge it records, start order."""

from lab.compose import render
from lab.scenario import Scenario
from lab.wire.service import BRIDGE_OPTION, bridge_name


def scenario(**data):
    return Scenario.model_validate({"name": "t", "description": "x", **data})


def test_the_capture_helper_has_only_what_tcpdump_needs_on_the_host_network():
    capture = render(scenario(), run_id="20261125-085536-basic-823b5d", capture_group=1000)["services"]["capture"]
    assert capture["network_mode"] == "host"
    assert capture["cap_drop"] == ["ALL"] and capture["cap_add"] == ["NET_RAW", "SETGID"]
    assert "no-new-privileges:true" in capture["security_opt"] and capture["read_only"] is True
    assert capture["user"] == "0:1000"  # root for tcpdump, the run directory owner's group for the file
    assert capture["command"][capture["command"].index("--interface") + 1] == "lab-823b5d"
    assert capture["volumes"] == ["./capture:/capture"]
    assert "profiles" not in capture  # `lab run` always records unless told not to


def test_the_network_bridge_gets_the_name_the_helper_records():
    run = render(scenario(), run_id="20261125-085536-basic-823b5d")
    assert run["networks"]["lab"]["driver_opts"] == {BRIDGE_OPTION: "lab-823b5d"}
    assert len(bridge_name("20261125-085536-a-very-long-scenario-name-823b5d")) <= 15  # Linux's limit


def test_the_clients_start_only_once_packets_are_recorded():
    services = render(scenario(clients={"count": 2, "each": {"client2": {"impair": {"loss": 0.1}}}}),
                      run_id="r-1a2b3c")["services"]
    for name in ("client1", "client2"):
        assert services[name]["depends_on"]["capture"] == {"condition": "service_healthy"}
    assert services["client2"]["depends_on"]["client2-shaper"] == {"condition": "service_healthy"}
    assert "capture" not in services["server"].get("depends_on", {})  # they start side by side


def test_plain_compose_records_only_with_the_profile():
    services = render(scenario())["services"]
    assert services["capture"]["profiles"] == ["capture"]
    assert services["client1"]["depends_on"]["capture"] == {"condition": "service_healthy", "required": False}
    assert services["capture"]["volumes"] == ["${LAB_CAPTURE_DIR:-./capture}:/capture"]


def test_capture_false_renders_no_helper():
    services = render(scenario(capture=False), run_id="r-1a2b3c")["services"]
    assert "capture" not in services and list(services["client1"]["depends_on"]) == ["server"]


def test_a_topology_records_every_network_each_into_its_own_file():
    nat = scenario(networks={"home": {}, "internet": {}},
                   routers={"nat": {"networks": ["home", "internet"], "masquerade": ["home"]}},
                   server={"networks": ["internet"]}, clients={"count": 2, "networks": ["home"]})
    rendered = render(nat, run_id="20261125-085536-nat-823b5d")
    command = rendered["services"]["capture"]["command"]
    pairs = [(command[i + 1], command[i + 3]) for i, arg in enumerate(command) if arg == "--interface"]
    bridges = {name: net["driver_opts"][BRIDGE_OPTION] for name, net in rendered["networks"].items()}
    assert pairs == [(bridges["home"], "/capture/home.pcap"), (bridges["internet"], "/capture/internet.pcap")]
    assert rendered["services"]["capture"]["cap_add"] == ["NET_RAW", "SETGID"]  # no more for two networks
    flat = render(scenario(), run_id="20261125-085536-basic-823b5d")["services"]["capture"]["command"]
    assert flat[flat.index("--output") + 1] == "/capture/lab.pcap"
