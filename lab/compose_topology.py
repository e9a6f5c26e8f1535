"""Compose rendering of a scenario's networks and routers (the model is lab/topology.py).

`compose.render` asks this module, only for a scenario that declares `networks:`:
- the compose `networks:` mapping: each network internal, with its subnets and a bridge name
  of the lab's own (`lab-<run token>-<n>`), so host-level rules can name the run's bridges before
  anything starts (lab/hostrules.py);
- each host's attachments, with a fixed address per network;
- the routers: one service each (`role: router`), its NAT rules applied by `python3 -m lab.netns`
  with NET_ADMIN, nothing else, which turns IPv4 forwarding on only after them (IPv6 forwarding
  comes from a namespaced sysctl: the kernel offers no other unprivileged switch);
- the route helper `<svc>-net` of every host that needs a route through a router: it owns the
  host's network namespace, sets the routes, and the echo program (and its shaper, if any)
  joins it, so the echo program itself never gets NET_ADMIN;
- each client's server address: the server's own, or a router's forwarded port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from lab.readiness import ready_when
from lab.scenario import Scenario
from lab.topology import Family, Layout, ServerRoute, choose_subnets, fixed_subnets, plan_layout, server_routes
from lab.wire.service import bridge_name

NET_READY_FILE = "/tmp/net-ready"


@dataclass
class Topology:
    """A scenario's networks resolved to addresses for one rendering."""

    scenario: Scenario
    layout: Layout
    token: str  # the bridges' common stem (lab.wire.service.bridge_name): `<token>-<network index>`

    @property
    def networks(self):
        return self.scenario.networks

    def host_networks(self, host: str) -> list[str]:
        s = self.scenario
        first = [next(iter(s.networks))]
        if host == "server":
            return s.server.networks or first
        if host in s.routers:
            return s.routers[host].networks
        return s.client(host).networks or first

    def routes_to_server(self, client: str) -> list[ServerRoute]:
        """One way to the server per family the client talks over (one when it names none)."""
        s = self.scenario
        routes = server_routes(client, self.host_networks(client), self.host_networks("server"), s.networks,
                               s.routers, s.client(client).family, s.server.port)
        assert not isinstance(routes, str), routes  # the model's check refused the scenario otherwise
        return routes

    def server_target(self, client: str) -> tuple[list[str], int]:
        """The addresses a client sends to (one per family, in the scenario's order) and the
        port, the same for each (the model refuses a client whose families differ in port)."""
        addresses, port = [], self.scenario.server.port
        for route in self.routes_to_server(client):
            if route.forwarded_port is not None:
                addresses.append(self.layout.address(route.router, route.network, route.family))
                port = route.forwarded_port
            else:
                addresses.append(self.layout.address("server", route.server_network, route.family))
        return addresses, port

    def bridge(self, network: str) -> str:
        return f"{self.token}-{list(self.networks).index(network)}"

    def has_ipv6(self, host: str) -> bool:
        return any("ipv6" in by_family for by_family in self.layout.addresses[host].values())

    def uses_ipv6(self) -> bool:
        return any(n.ipv6 for n in self.networks.values())

    def gateways(self, host: str) -> list[str]:
        """The router addresses a host's default routes go through, one per family; none when
        nothing it talks to is behind a router. A client needs one when it reaches the server
        through a router (not at a forwarded port, which is on its own network); the server
        needs one back to the clients a router forwards without masquerading them. So, as on
        the internet, nothing routes into a masqueraded network."""
        s = self.scenario
        vias: dict[Family, str] = {}

        def via(router: str, network: str) -> None:
            for fam, address in self.layout.addresses[router][network].items():
                vias.setdefault(fam, address)

        if host == "server":
            for client in s.client_names():
                for route in self.routes_to_server(client):
                    if route.router and route.network not in s.routers[route.router].masquerade:
                        via(route.router, route.server_network)
        elif host in s.client_names():
            for route in self.routes_to_server(host):
                if route.router and route.forwarded_port is None:
                    via(route.router, route.network)
        return list(vias.values())


def topology_for(scenario: Scenario, subnets: dict[str, dict[Family, str]] | None, token: str) -> Topology:
    """Addresses for every host: routers first, then the server, then the clients."""
    subnets = subnets or fixed_subnets(scenario.networks)
    t = Topology(scenario, Layout(subnets), token)
    hosts = {name: t.host_networks(name) for name in [*scenario.routers, "server", *scenario.client_names()]}
    t.layout = plan_layout(subnets, hosts)
    return t


def networks_mapping(t: Topology, labels: dict[str, str]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for name, net in t.networks.items():
        spec: dict[str, Any] = {
            "internal": True,
            "driver_opts": {"com.docker.network.bridge.name": t.bridge(name)},
            "labels": dict(labels),
        }
        if net.ipv6:
            spec["enable_ipv6"] = True
        spec["ipam"] = {"config": [{"subnet": subnet} for subnet in t.layout.subnets[name].values()]}
        mapping[name] = spec
    return mapping


def attachments(t: Topology, host: str, aliases: list[str]) -> dict[str, Any]:
    """A host's compose `networks:` entry: each network with the host's fixed addresses."""
    result: dict[str, Any] = {}
    for net in t.host_networks(host):
        entry: dict[str, Any] = {}
        for fam, address in t.layout.addresses[host][net].items():
            entry["ipv4_address" if fam == "ipv4" else "ipv6_address"] = address
        if aliases:
            entry["aliases"] = list(aliases)
        result[net] = entry
    return result


def router_service(t: Topology, name: str, base: dict[str, Any]) -> dict[str, Any]:
    """The router `name` as a compose service, built on `base` (image and labels)."""
    spec = dict(base)
    # Off until the program's rules are in force (lab/netns/forwarding.py says why).
    sysctls = {"net.ipv4.ip_forward": "0"}
    if t.uses_ipv6():
        sysctls["net.ipv6.conf.all.forwarding"] = "1"
    spec.update(
        command=["python3", "-m", "lab.netns", "--name", name, "--ready-file", NET_READY_FILE, "--forward",
                 *nat_args(t, name)],
        environment={"LAB_NAME": name},
        sysctls=sysctls,
        **helper_hardening(["NET_ADMIN", "NET_RAW"]),
        healthcheck=ready_when(NET_READY_FILE),
        networks=attachments(t, name, []),
    )
    return spec


def route_helper(t: Topology, host: str, base: dict[str, Any], aliases: list[str]) -> dict[str, Any]:
    """`<host>-net`: owns the host's namespace and sets its routes through the routers."""
    spec = dict(base)
    vias = [arg for via in t.gateways(host) for arg in ("--route", via)]
    spec.update(
        command=["python3", "-m", "lab.netns", "--name", f"{host}-net", "--ready-file", NET_READY_FILE, *vias],
        environment={"LAB_NAME": f"{host}-net"},
        **helper_hardening(["NET_ADMIN"]),
        healthcheck=ready_when(NET_READY_FILE),
        networks=attachments(t, host, aliases),
    )
    return spec


def nat_args(t: Topology, router: str) -> list[str]:
    """The router's rules as `--nat`/`--nat6` options (iptables `-t nat -A` arguments), each
    masquerade after its guards (`--filter`/`--filter6`, filter-table `-A` arguments), so that
    nothing from a masqueraded network ever leaves untranslated: a packet connection tracking
    calls INVALID never passes the NAT table, and a restarted router was seen to track a flow
    picked up mid-stream without NAT (a confirmed entry that is not SNAT'd). A new connection
    is not confirmed yet when it is filtered, and is masqueraded after."""
    s = t.scenario
    spec = s.routers[router]
    args: list[str] = []
    for net in spec.masquerade:
        for fam, subnet in t.layout.subnets[net].items():
            guard = "--filter" if fam == "ipv4" else "--filter6"
            args += [guard, f"FORWARD -s {subnet} ! -d {subnet} -m conntrack --ctstate INVALID -j DROP"]
            args += [guard, f"FORWARD -s {subnet} ! -d {subnet} -m conntrack --ctstatus CONFIRMED "
                            f"! --ctstate SNAT -j DROP"]
            args += [_flag(fam), f"POSTROUTING -s {subnet} ! -d {subnet} -j MASQUERADE"]
    server_nets = t.host_networks("server")
    for forward in spec.forward:
        for net in spec.networks:
            if net in server_nets:
                continue
            for fam, address in t.layout.addresses[router][net].items():
                snet = next((n for n in server_nets if n in spec.networks and fam in t.layout.subnets[n]), None)
                if snet is None:
                    continue
                server = t.layout.address("server", snet, fam)
                to = f"[{server}]:{s.server.port}" if fam == "ipv6" else f"{server}:{s.server.port}"
                for proto in forward.proto:
                    args += [_flag(fam), f"PREROUTING -d {address} -p {proto} --dport {forward.port} "
                                         f"-j DNAT --to-destination {to}"]
    return args


def _flag(family: Family) -> str:
    return "--nat" if family == "ipv4" else "--nat6"


def helper_hardening(caps: list[str]) -> dict[str, Any]:
    """Root inside its container with only the network capabilities its one job needs."""
    return {
        "user": "0:0",
        "cap_drop": ["ALL"],
        "cap_add": caps,
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": ["/tmp", "/run"],
        "mem_limit": "64m",
        "pids_limit": 32,
        "stop_grace_period": "3s",
    }


def is_ipv6(address: str) -> bool:
    return ipaddress.ip_address(address).version == 6


def run_subnets(scenario: Scenario, engine) -> dict[str, dict[Family, str]] | None:
    """Free subnets for a run's networks, away from every network the engine has now."""
    if scenario.networks is None:
        return None
    from lab.errors import LabError

    try:
        used = engine.used_subnets()
    except LabError:
        used = []  # deploy will say what is wrong with the engine
    return choose_subnets(scenario.networks, used)


def routed_bridges(scenario: Scenario, run_id: str | None) -> list[str]:
    """The bridges whose frames a run's routers forward: all of them, when it has routers."""
    if scenario.networks is None or not scenario.routers:
        return []
    return [f"{bridge_name(run_id)}-{i}" for i in range(len(scenario.networks))]
