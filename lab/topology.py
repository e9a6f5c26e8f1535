"""Networks and routers of a scenario: the model (`networks:`, `routers:`, hosts' `networks:`)
and the address plan a renderer needs, as pure functions.

A scenario without `networks:` is one flat bridge, as it always was. With them, every host
(server, each client, each router) is attached to named networks, each IPv4, IPv6 or both. A
router joins two or more networks and forwards between them; it may masquerade the traffic
that leaves one of its networks (source NAT) or forward a port of its own to the server
(destination NAT). `plan_layout` gives every host a fixed address on each of its networks, so
that routes, NAT rules and the clients' server address are known before anything starts:
`lab run` picks free subnets (`choose_subnets`), plain compose uses the scenario's fixed ones.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Family = Literal["ipv4", "ipv6"]
NETWORK_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Where `lab run` looks for free subnets: far from Docker's default pools (172.17-31, 192.168).
POOL_V4 = ipaddress.ip_network("10.128.0.0/9")
# Unique local addresses (RFC 4193) are never routed outside a site: the lab's IPv6 stays inside.
POOL_V6 = ipaddress.ip_network("fd5c::/16")
# Plain compose's fixed subnets, one per network in declaration order.
FIXED_V4 = "10.78.{index}.0/24"
FIXED_V6 = "fd5c:1ab:0:{index}::/64"
# First host addresses of a subnet that the lab never hands out (Docker's gateway takes .1).
RESERVED_HOSTS = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkDef(_Model):
    """One named network: `ipv4`, `ipv6` or both, with optional fixed subnets."""

    ipv4: bool = True
    ipv6: bool = False
    subnet: str | None = Field(default=None, description="IPv4 subnet, e.g. 10.78.1.0/24")
    subnet6: str | None = Field(default=None, description="IPv6 subnet, e.g. fd5c:1ab:0:1::/64")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str | None) -> str | None:
        if value is not None:
            _parse(value, 4, 28, "an IPv4 network of /28 or larger, e.g. 10.78.1.0/24")
        return value

    @field_validator("subnet6")
    @classmethod
    def _subnet6(cls, value: str | None) -> str | None:
        if value is not None:
            _parse(value, 6, 120, "an IPv6 network of /120 or larger, e.g. fd5c:1ab:0:1::/64")
        return value

    @model_validator(mode="after")
    def _families(self) -> NetworkDef:
        if not (self.ipv4 or self.ipv6):
            raise ValueError("a network needs ipv4, ipv6 or both")
        if self.subnet and not self.ipv4:
            raise ValueError("subnet is the IPv4 subnet; this network has ipv4: false (use subnet6)")
        if self.subnet6 and not self.ipv6:
            raise ValueError("subnet6 needs ipv6: true")
        return self

    @property
    def families(self) -> list[Family]:
        return [f for f, on in (("ipv4", self.ipv4), ("ipv6", self.ipv6)) if on]


def _parse(value: str, version: int, longest: int, allowed: str) -> None:
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(f"subnet must be {allowed}") from None
    if network.version != version or network.prefixlen > longest:
        raise ValueError(f"subnet must be {allowed}")


class PortForward(_Model):
    """Destination NAT: what arrives at the router's `port` goes to the server's port."""

    port: Annotated[int, Field(ge=1, le=65535)]
    proto: list[Literal["tcp", "udp"]] = ["tcp", "udp"]


class RouterSpec(_Model):
    """A router: an interface on each of its networks, forwarding between them."""

    networks: Annotated[list[str], Field(min_length=2)]
    masquerade: list[str] = Field(default=[], description="networks whose outgoing traffic takes the router's address")
    forward: list[PortForward] = Field(default=[], description="router ports forwarded to the server")

    @model_validator(mode="after")
    def _own_networks(self) -> RouterSpec:
        if len(set(self.networks)) != len(self.networks):
            raise ValueError("each network once")
        for name in self.masquerade:
            if name not in self.networks:
                raise ValueError(f"masquerade: {name!r} is not one of this router's networks ({', '.join(self.networks)})")
        return self


# ---- checks across the scenario --------------------------------------------------------------

def check_topology(networks: dict[str, NetworkDef] | None, routers: dict[str, RouterSpec],
                   hosts: dict[str, list[str] | None], server_networks: list[str] | None,
                   families: dict[str, list[Family] | None], port: int) -> None:
    """Every name a host or router uses exists, every client can reach the server, and each
    host's addresses fit its networks. Raises ValueError naming the field."""
    if networks is None:
        used = [name for name, nets in hosts.items() if nets is not None]
        if routers or used or server_networks is not None:
            what = "routers" if routers else f"{used[0] if used else 'server'}.networks"
            raise ValueError(f"{what}: declare the networks first, e.g. `networks: {{lan: {{}}, dmz: {{}}}}`")
        return
    if not networks:
        raise ValueError("networks: declare at least one network (leave it out for the default one)")
    for name in networks:
        if not NETWORK_NAME.match(name):
            raise ValueError(f"networks.{name}: a network name is 1-12 lowercase letters and digits, starting with a letter")
    known = ", ".join(networks)
    taken = {"server", *hosts}
    for rname, router in routers.items():
        if rname in taken or not re.match(r"^[a-z][a-z0-9-]{0,30}$", rname) or rname.endswith(("-net", "-shaper")):
            raise ValueError(f"routers.{rname}: a router's name is lowercase letters, digits and dashes, "
                             f"unlike any host (taken: server, client1...)")
        for i, net in enumerate(router.networks):
            if net not in networks:
                raise ValueError(f"routers.{rname}.networks.{i}: no network {net!r}; networks are {known}")
        if router.forward and not any(net in _server_nets(server_networks, networks) for net in router.networks):
            raise ValueError(f"routers.{rname}.forward: the router must share a network with the server to forward to it")
    for where, nets in [("server", server_networks), *((f"clients.each.{h}", n) for h, n in hosts.items())]:
        for i, net in enumerate(nets or []):
            if net not in networks:
                raise ValueError(f"{where}.networks.{i}: no network {net!r}; networks are {known}")
        if nets is not None and (not nets or len(set(nets)) != len(nets)):
            raise ValueError(f"{where}.networks: one or more networks, each once")
    server_nets = _server_nets(server_networks, networks)
    for host, nets in hosts.items():
        routes = server_routes(host, nets or [next(iter(networks))], server_nets, networks, routers,
                               families.get(host), port)
        if isinstance(routes, str):
            raise ValueError(f"clients.each.{host}: {routes}")
        ports = {f"{r.family} at port {r.forwarded_port or port}" for r in routes}
        if len({r.forwarded_port for r in routes}) > 1:
            raise ValueError(f"clients.each.{host}.family: the server is at different ports over each family "
                             f"({', '.join(sorted(ports))}); a client talks to one port: give one family")


def _server_nets(server_networks: list[str] | None, networks: dict[str, NetworkDef]) -> list[str]:
    return server_networks or [next(iter(networks))]


@dataclass(frozen=True)
class ServerRoute:
    """How a client reaches the server: over which network and family, directly, routed
    through a router, or at a router's forwarded port."""

    network: str  # the client's network the traffic leaves on
    family: Family
    server_network: str
    router: str | None = None
    forwarded_port: int | None = None  # set when the client targets the router's forwarded port

    @property
    def nat(self) -> bool:
        return self.forwarded_port is not None


def server_routes(host: str, nets: list[str], server_nets: list[str], networks: dict[str, NetworkDef],
                  routers: dict[str, RouterSpec], families: list[Family] | None, port: int) -> list[ServerRoute] | str:
    """The way to the server over each of a client's families (one way, in the default family,
    when it names none), or a sentence saying why one of them has none."""
    routes = []
    for family in families or [None]:
        route = server_route(host, nets, server_nets, networks, routers, family, port)
        if isinstance(route, str):
            return route
        routes.append(route)
    return routes


def server_route(host: str, nets: list[str], server_nets: list[str], networks: dict[str, NetworkDef],
                 routers: dict[str, RouterSpec], family: Family | None, port: int) -> ServerRoute | str:
    """The way from a client's networks to the server (a shared network first, then one router
    hop), or a sentence saying why there is none."""

    def fits(net: str, other: str) -> Family | None:
        common = [f for f in networks[net].families if f in networks[other].families]
        if family is not None:
            return family if family in common else None
        return common[0] if common else None

    for net in nets:
        if net in server_nets and (f := fits(net, net)):
            return ServerRoute(net, f, net)
    for rname, router in routers.items():
        for net in nets:
            if net not in router.networks:
                continue
            for snet in server_nets:
                if snet in router.networks and (f := fits(net, snet)):
                    forwarded = next((fw.port for fw in router.forward), None)
                    return ServerRoute(net, f, snet, rname, forwarded)
    wanted = f" over {family}" if family else ""
    return (f"cannot reach the server{wanted}: it shares no network with networks {', '.join(nets)} "
            "and no router joins them (one router hop at most)")


# ---- addresses ---------------------------------------------------------------------------------

def choose_subnets(networks: dict[str, NetworkDef], used: Iterable[str],
                   rng: random.Random | None = None) -> dict[str, dict[Family, str]]:
    """Free subnets for a run's networks: the fixed ones given, else random ones from the lab's
    pools that overlap nothing in `used` (the engine's networks) nor each other."""
    rng = rng or random.Random()
    taken = [ipaddress.ip_network(s) for s in used]
    chosen: dict[str, dict[Family, str]] = {}
    for name, net in networks.items():
        chosen[name] = {}
        for fam, fixed, pool, prefix in (("ipv4", net.subnet, POOL_V4, 24), ("ipv6", net.subnet6, POOL_V6, 64)):
            if fam not in net.families:
                continue
            if fixed:
                subnet = ipaddress.ip_network(fixed)
            else:
                subnet = _free_subnet(pool, prefix, taken, rng)
            taken.append(subnet)
            chosen[name][fam] = str(subnet)
    return chosen


def _free_subnet(pool, prefix: int, taken: list, rng: random.Random):
    count = 2 ** (prefix - pool.prefixlen)
    for _ in range(1000):
        offset = rng.randrange(count) * 2 ** (pool.max_prefixlen - prefix)
        candidate = ipaddress.ip_network((int(pool.network_address) + offset, prefix))
        if not any(candidate.overlaps(t) for t in taken if t.version == candidate.version):
            return candidate
    raise ValueError(f"no free /{prefix} left in {pool}")


def fixed_subnets(networks: dict[str, NetworkDef]) -> dict[str, dict[Family, str]]:
    """Plain compose's subnets: the scenario's own, else one fixed subnet per network."""
    subnets: dict[str, dict[Family, str]] = {}
    for index, (name, net) in enumerate(networks.items(), start=1):
        subnets[name] = {}
        if net.ipv4:
            subnets[name]["ipv4"] = net.subnet or FIXED_V4.format(index=index)
        if net.ipv6:
            subnets[name]["ipv6"] = net.subnet6 or FIXED_V6.format(index=index)
    return subnets


@dataclass
class Layout:
    """Every host's fixed address on each of its networks, and the subnets themselves."""

    subnets: dict[str, dict[Family, str]]
    addresses: dict[str, dict[str, dict[Family, str]]] = field(default_factory=dict)  # host -> net -> family -> ip

    def address(self, host: str, network: str, family: Family) -> str:
        return self.addresses[host][network][family]

    def nat_addresses(self, routers: dict[str, RouterSpec]) -> set[str]:
        """The router addresses a server may see in place of a masqueraded client's own."""
        found: set[str] = set()
        for rname, router in routers.items():
            if router.masquerade:
                for net in router.networks:
                    found.update(self.addresses[rname][net].values())
        return found


def plan_layout(subnets: dict[str, dict[Family, str]], hosts: dict[str, list[str]]) -> Layout:
    """Addresses in each subnet in the order hosts are given (routers first, by convention),
    after Docker's gateway; ValueError when a subnet is too small for its hosts."""
    layout = Layout(subnets)
    next_index: dict[tuple[str, Family], int] = {}
    for host, nets in hosts.items():
        layout.addresses[host] = {}
        for net in nets:
            layout.addresses[host][net] = {}
            for fam, subnet in subnets[net].items():
                network = ipaddress.ip_network(subnet)
                index = next_index.get((net, fam), RESERVED_HOSTS + 1)
                if index >= network.num_addresses - 1:
                    raise ValueError(f"networks.{net}: subnet {subnet} is too small for its {len(hosts)} hosts")
                next_index[(net, fam)] = index + 1
                layout.addresses[host][net][fam] = str(network.network_address + index)
    return layout
