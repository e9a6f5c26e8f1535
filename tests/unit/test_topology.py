"""Networks and routers: the model's rules, the address plan, the compose rendering and the
host rules a routed run adds and finds again."""

import ipaddress
import random
from pathlib import Path

import pytest

from lab import compose_topology as topo
from lab.compose import render
from lab.errors import ScenarioError
from lab.hostrules import Mark, add_script, parse_rules, remove_script
from lab.scenario import load_scenario
from lab.topology import NetworkDef, choose_subnets, fixed_subnets, plan_layout

ROUTED = """\
description: two client subnets and a server subnet joined by one router
networks: {left: {}, right: {}, dmz: {}}
routers: {gw: {networks: [left, right, dmz]}}
server: {networks: [dmz]}
clients:
  count: 3
  networks: [left]
  each: {client3: {networks: [right]}}
"""


def scenario_of(tmp_path: Path, text: str, name: str = "topo"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_scenario(path)


def test_without_networks_the_rendering_is_one_flat_network(tmp_path):
    compose = render(scenario_of(tmp_path, "description: flat\n"))
    assert list(compose["networks"]) == ["lab"]
    assert not any(name.endswith("-net") for name in compose["services"])
    assert "--server" in (cmd := compose["services"]["client1"]["command"]) and cmd[cmd.index("--server") + 1] == "server"


def test_routed_clients_target_the_server_address_and_route_through_the_router(tmp_path):
    s = scenario_of(tmp_path, ROUTED)
    services = render(s)["services"]
    gw = services["gw"]
    # IPv4 forwarding is off until the router's program has its rules in (lab/netns/forwarding.py).
    assert gw["sysctls"] == {"net.ipv4.ip_forward": "0"}
    assert "--forward" in gw["command"]
    assert set(gw["networks"]) == {"left", "right", "dmz"}
    assert gw["networks"]["left"]["ipv4_address"] == "10.78.1.2"
    server_ip = services["server-net"]["networks"]["dmz"]["ipv4_address"]
    cmd = services["client3"]["command"]
    assert cmd[cmd.index("--server") + 1] == server_ip
    # client3 is on `right`: its helper routes through the router's address there.
    helper = services["client3-net"]
    assert helper["command"][-2:] == ["--route", gw["networks"]["right"]["ipv4_address"]]
    assert helper["cap_add"] == ["NET_ADMIN"]
    # The echo programs never get a capability: they join the helper's namespace.
    for name in ("server", "client1", "client3"):
        assert services[name]["cap_drop"] == ["ALL"] and "cap_add" not in services[name]
        assert services[name]["network_mode"] == f"service:{name}-net"
    assert services["client1"]["depends_on"]["gw"] == {"condition": "service_healthy"}


def test_every_address_is_unique_and_inside_its_subnet(tmp_path):
    s = scenario_of(tmp_path, ROUTED)
    subnets = choose_subnets(s.networks, [], random.Random(1))
    t = topo.topology_for(s, subnets, "lab-abc123")
    seen = set()
    for host, nets in t.layout.addresses.items():
        for net, by_family in nets.items():
            for address in by_family.values():
                assert ipaddress.ip_address(address) in ipaddress.ip_network(subnets[net]["ipv4"]), (host, net)
                assert address not in seen
                seen.add(address)


def test_run_subnets_avoid_the_engines_and_each_other():
    networks = {n: NetworkDef() for n in ("a", "b", "c")}
    used = [f"10.{i}.0.0/16" for i in range(128, 256)][:127]  # all of the pool's /16s but 10.255
    chosen = choose_subnets(networks, used, random.Random(7))
    picked = [ipaddress.ip_network(c["ipv4"]) for c in chosen.values()]
    assert all(p.subnet_of(ipaddress.ip_network("10.255.0.0/16")) for p in picked)
    assert len({str(p) for p in picked}) == 3


def test_a_subnet_too_small_for_its_hosts_is_refused():
    with pytest.raises(ValueError, match="too small"):
        plan_layout({"n": {"ipv4": "10.0.0.0/29"}}, {f"h{i}": ["n"] for i in range(7)})


def test_dual_stack_networks_get_both_subnets_and_an_ipv6_capable_server(tmp_path):
    s = scenario_of(tmp_path, "description: x\nnetworks: {lan: {ipv6: true}}\nclients: {each: {client2: {family: ipv6}}}\n")
    compose = render(s)
    lan = compose["networks"]["lan"]
    assert lan["enable_ipv6"] is True
    assert [c["subnet"] for c in lan["ipam"]["config"]] == list(fixed_subnets(s.networks)["lan"].values())
    assert compose["services"]["server"]["command"][compose["services"]["server"]["command"].index("--host") + 1] == "::"
    cmd = compose["services"]["client2"]["command"]
    assert ":" in cmd[cmd.index("--server") + 1]  # an IPv6 address


@pytest.mark.parametrize(
    "body, message",
    [
        ("routers: {gw: {networks: [a, b]}}\n", "declare the networks first"),
        ("networks: {lan: {}}\nserver: {networks: [wan]}\n", "server.networks.0: no network 'wan'"),
        ("networks: {a: {}, b: {}}\nserver: {networks: [b]}\n", "cannot reach the server"),
        ("networks: {a: {}, b: {}}\nrouters: {gw: {networks: [a, c]}}\n", "routers.gw.networks.1: no network 'c'"),
        ("networks: {a: {}, b: {}}\nrouters: {gw: {networks: [a, b], masquerade: [c]}}\n", "masquerade: 'c'"),
        ("networks: {a: {ipv4: false}}\n", "needs ipv4, ipv6 or both"),
        ("networks: {a: {subnet: 'fd00::/64'}}\n", "an IPv4 network"),
        ("networks: {Bad_Name: {}}\n", "networks.Bad_Name"),
        ("networks: {a: {}}\nnetwork: {subnet: 10.1.0.0/24}\n", "either `network:`"),
        ("clients: {family: ipv6}\n", "needs `networks:`"),
        ("networks: {a: {}}\nclients: {family: ipv6}\n", "cannot reach the server over ipv6"),
        ("networks: {a: {}, b: {}}\nrouters: {server: {networks: [a, b]}}\n", "routers.server"),
        ("clients: {source_port: 40000, sessions: 2}\n", "clients.source_port: one source port serves one session"),
    ],
)
def test_bad_topologies_name_the_field(tmp_path, body, message):
    with pytest.raises(ScenarioError, match="topo.yaml") as err:
        scenario_of(tmp_path, "description: x\n" + body)
    assert message in str(err.value)


def test_masquerade_and_port_forward_become_the_routers_nat_rules(tmp_path):
    s = scenario_of(tmp_path, """\
description: x
networks: {home: {}, wan: {}, office: {}}
routers:
  nat: {networks: [home, wan], masquerade: [home]}
  door: {networks: [wan, office], forward: [{port: 8080, proto: [tcp]}]}
server: {networks: [office]}
clients: {count: 2, networks: [wan]}
""")
    services = render(s)["services"]
    sub = fixed_subnets(s.networks)
    home = sub["home"]["ipv4"]
    assert services["nat"]["command"][-6:] == [
        # Behind the masquerade, nothing leaves untranslated: neither what conntrack cannot place
        # nor a tracked flow without NAT.
        "--filter", f"FORWARD -s {home} ! -d {home} -m conntrack --ctstate INVALID -j DROP",
        "--filter", f"FORWARD -s {home} ! -d {home} -m conntrack --ctstatus CONFIRMED ! --ctstate SNAT -j DROP",
        "--nat", f"POSTROUTING -s {home} ! -d {home} -j MASQUERADE"]
    door_wan = services["door"]["networks"]["wan"]["ipv4_address"]
    server = services["server-net"]["networks"]["office"]["ipv4_address"]
    assert services["door"]["command"][-1] == (f"PREROUTING -d {door_wan} -p tcp --dport 8080 "
                                               f"-j DNAT --to-destination {server}:19200")
    # A client on wan talks to the router's forwarded port, not to the server's own address.
    cmd = services["client2"]["command"]
    assert cmd[cmd.index("--server") + 1] == door_wan and cmd[cmd.index("--port") + 1] == "8080"


def test_host_rules_are_scoped_to_the_runs_bridges_and_found_again():
    mark = Mark("20261125-1-routed-abc123", "host:42", "s1")
    script = add_script(["lab-ab12cd-0", "lab-ab12cd-1"], mark)
    assert "iptables -w -I DOCKER-USER -i lab-ab12cd-0 -o lab-ab12cd-0 -m comment --comment " \
           "'socketlab run=20261125-1-routed-abc123 owner=host:42 session=s1' -j ACCEPT" in script
    assert "-D DOCKER-USER" in remove_script(["lab-ab12cd-0"], mark)
    ours = '--comment "socketlab run=20261125-1-routed-abc123 owner=host:42 session=s1" -j ACCEPT'
    listing = "\n".join([
        "-N DOCKER-USER",
        f"-A DOCKER-USER -i lab-ab12cd-1 -o lab-ab12cd-1 -m comment {ours}",
        f"-A DOCKER-USER -i lab-ab12cd-0 -o lab-ab12cd-0 -m comment {ours}",
        '-A DOCKER-USER -i br-x -o br-x -m comment --comment "someone else" -j ACCEPT',
        "-A DOCKER-USER -j RETURN",
    ])
    assert parse_rules(listing) == {mark: {"lab-ab12cd-0", "lab-ab12cd-1"}}


# ---- the NAT join: no conntrack here, so content, port and time join the two views ------------

def _event(role, event, service, ts, **fields):
    return {"v": 1, "ts": f"2026-11-25T10:00:{ts:09.6f}Z", "role": role, "event": event, "service": service,
            "host": service, "proto": "tcp", **fields}


def _nat_events(second_port: int, declared: bool = True):
    """Two clients behind one NAT, both on source port 5000, sending the same first text; the
    router keeps client1's port and gives client2 `second_port`."""
    events = [
        _event("client", "connected", "client1", 1.0, local="10.0.1.3:5000", peer="10.0.2.10:19200"),
        _event("client", "connected", "client2", 1.2, local="10.0.1.4:5000", peer="10.0.2.10:19200"),
        _event("client", "sent", "client1", 1.01, seq=1, text="same time"),
        _event("client", "sent", "client2", 3.21, seq=1, text="same time"),
        _event("server", "accepted", "server", 1.005, peer="10.0.2.2:5000", conn=1),
        _event("server", "received", "server", 1.02, peer="10.0.2.2:5000", conn=1, text="same time"),
        _event("server", "accepted", "server", 1.205, peer=f"10.0.2.2:{second_port}", conn=2),
        _event("server", "received", "server", 3.22, peer=f"10.0.2.2:{second_port}", conn=2, text="same time"),
    ]
    if declared:
        events.insert(0, {**_event("netns", "applied", "nat", 0.5, nat=["masquerade"],
                                   addresses=["10.0.1.2", "10.0.2.2"]), "proto": None})
    return events


def test_a_declared_nat_explains_the_translated_address_and_the_remapped_port():
    from lab.logs import join_views

    rows = {c.client: c for c in join_views(_nat_events(second_port=61000))}
    assert set(rows) == {"client1", "client2"}  # no server-only row left over
    assert (rows["client1"].server_saw, rows["client1"].flag) == ("10.0.2.2:5000", "nat")
    assert (rows["client2"].server_saw, rows["client2"].flag) == ("10.0.2.2:61000", "nat")
    assert rows["client2"].client_port == 5000


def test_the_same_first_text_is_told_apart_by_time_when_no_port_matches():
    from lab.logs import join_views

    events = _nat_events(second_port=61000)
    for e in events:  # neither keeps its port now: only time tells them apart
        if e.get("peer") == "10.0.2.2:5000":
            e["peer"] = "10.0.2.2:62000"
    rows = {c.client: c for c in join_views(events)}
    assert rows["client1"].server_saw == "10.0.2.2:62000"  # heard 10 ms after client1 sent
    assert rows["client2"].server_saw == "10.0.2.2:61000"


def test_without_a_declared_nat_the_same_difference_is_an_address_mismatch():
    from lab.logs import join_views

    rows = join_views(_nat_events(second_port=61000, declared=False))
    assert {c.flag for c in rows} == {"address-mismatch"}


def test_the_forwarding_request_is_an_rtnetlink_newlink_with_the_ipv4_conf():
    import socket
    import struct

    from lab.netns.forwarding import acknowledgement, forwarding_request

    msg = forwarding_request(7, sequence=3)
    length, kind, flags, sequence, _pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, sequence) == (len(msg), 16, 0x5, 3)
    family, _type, index = struct.unpack_from("=BxHi", msg, 16)
    assert (family, index) == (socket.AF_UNSPEC, 7)
    # IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { FORWARDING = 1 } } }, each header 4 bytes.
    attrs = msg[32:]
    assert [struct.unpack_from("=HH", attrs, at) for at in (0, 4, 8, 12)] == [(20, 26), (16, 2), (12, 1), (8, 1)]
    assert struct.unpack_from("=I", attrs, 16) == (1,)
    error = struct.pack("=IHHIIi", 36, 2, 0, 3, 0, -1)
    assert acknowledgement(error) == 1 and acknowledgement(struct.pack("=IHHIIi", 36, 2, 0, 3, 0, 0)) == 0


DUAL = """\
description: x
networks: {lan: {ipv6: true}, dmz: {ipv6: true}}
routers: {gw: {networks: [lan, dmz]}}
server: {networks: [dmz]}
clients:
  count: 3
  networks: [lan]
  family: [ipv4, ipv6]
  each: {client2: {family: ipv6}, client3: {family: [ipv6, ipv4]}}
"""


def test_a_client_of_both_families_gets_the_servers_address_of_each_in_order(tmp_path):
    s = scenario_of(tmp_path, DUAL)
    assert s.client("client1").family == ["ipv4", "ipv6"]
    assert s.client("client2").family == ["ipv6"]  # one family reads as a list of one
    services = render(s)["services"]
    dmz = fixed_subnets(s.networks)["dmz"]

    def servers(client):
        cmd = services[client]["command"]
        return cmd[cmd.index("--server") + 1].split(",")

    server4 = str(ipaddress.ip_network(dmz["ipv4"]).network_address + 3)  # after the gateway and gw
    server6 = str(ipaddress.ip_network(dmz["ipv6"]).network_address + 3)
    assert servers("client1") == [server4, server6]
    assert servers("client2") == [server6]
    assert servers("client3") == [server6, server4]
    # its route helper routes both families through gw
    gw = services["gw"]["networks"]["lan"]
    helper = services["client1-net"]["command"]
    assert [helper[i + 1] for i, a in enumerate(helper) if a == "--route"] == [gw["ipv4_address"], gw["ipv6_address"]]


@pytest.mark.parametrize("body, message", [
    ("networks: {a: {ipv6: true}}\nclients: {family: [ipv4, ipv4]}\n", "clients.family: Value error, each family once"),
    ("networks: {a: {ipv6: true}}\nclients: {family: []}\n", "clients.family: Value error, at least one of ipv4, ipv6"),
    ("networks: {a: {ipv6: true}}\nclients: {family: [ipv4, ipv5]}\n", "clients.family.1: Input should be 'ipv4' or 'ipv6'"),
    ("networks: {a: {}}\nclients: {family: [ipv4, ipv6]}\n", "cannot reach the server over ipv6"),
    ("clients: {family: [ipv4, ipv6]}\n", "clients.family: needs `networks:`"),
    ("networks: {a: {ipv6: true}}\nclients: {family: [ipv4, ipv6], program: {command: [python3, x.py]}}\n",
     "clients.family: a learner's program talks to the one address"),
])
def test_bad_family_lists_name_the_field_and_what_is_allowed(tmp_path, body, message):
    with pytest.raises(ScenarioError, match="topo.yaml") as err:
        scenario_of(tmp_path, "description: x\n" + body)
    assert message.replace("Value error, ", "") in str(err.value)


def test_families_reached_at_different_ports_are_refused(tmp_path):
    body = """\
description: x
networks: {lan: {ipv6: true}, dmz: {ipv6: true}, v6: {ipv4: false, ipv6: true}}
routers:
  door: {networks: [lan, dmz], forward: [{port: 8080}]}
server: {networks: [dmz, v6]}
clients: {networks: [lan, v6], family: [ipv4, ipv6]}
"""
    with pytest.raises(ScenarioError) as err:
        scenario_of(tmp_path, body)
    assert "family: the server is at different ports over each family" in str(err.value)


def test_rendered_files_say_what_plain_compose_needs_and_lacks():
    """Routers: the host rules to add and remove by hand; faults: that they need `lab run`."""
    from lab.home import project_root
    from lab.rendering import expected_files

    root = project_root()
    for path, text in expected_files(root, root / "scenarios").items():
        if path.name == "compose.yaml":
            continue
        scenario = load_scenario(root / "scenarios" / path.name)
        header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        has_rules = "iptables -I DOCKER-USER" in header and "iptables -D DOCKER-USER" in header
        assert has_rules == bool(scenario.routers), path.name
        assert ("need `lab run`" in header) == bool(scenario.faults), path.name
