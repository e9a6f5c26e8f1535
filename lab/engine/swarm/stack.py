"""A run's compose file as a swarm stack: pure functions, no Docker.

The renderer (`lab/compose.py`) writes one compose file per run for any engine. A stack keeps its
services, commands, labels and hardening, and differs where swarm differs from compose:

- the network is an attachable overlay, `internal` (no egress), labelled like the project;
- each echo service is one task (`replicas: 1`, never restarted by swarm: a client that exits is
  done), placed on a node by hostname: where the scenario's `placement:` says, else the server
  on the first node and the clients spread over the others (`place`);
- `endpoint_mode` is `dnsrr` where the nodes' kernels have no IPVS (a VIP answers "no route to
  host" there) and `vip` where they do; the engine probes which;
- what swarm has no field for is dropped (`depends_on`: clients retry their connect; `build`,
  `restart`, `pids_limit`, `security_opt`, `cpu_shares`: `docker stack deploy` refuses it and
  swarm has no CPU weight, only limits and reservations), memory limits move under `deploy`, `tmpfs` becomes a
  tmpfs volume (a stack ignores the short form), and bind mounts of this host's paths go (the
  nodes do not have them);
- the `finished` helper of plain compose is not needed (the run polls the tasks), and there is no
  `capture` helper (it records a host's bridge; a swarm's packets cross the overlay).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import yaml

from lab.errors import EngineError
from lab.labels import NETWORK, PLACE_ANYWHERE, PLACEMENT_LABEL, RECORDS_VARIABLE, ROLE_LABEL

HELPERS = ("finished", "capture")  # plain compose's end marker; the capture of a host's bridge
DROPPED = ("build", "depends_on", "restart", "pids_limit", "mem_limit", "security_opt", "tmpfs", "volumes",
           "cpu_shares")


def place(services: dict[str, dict[str, Any]], nodes: list[str]) -> dict[str, str | None]:
    """Service -> node hostname, or None where the swarm chooses (a scenario's `placement: {server:
    any}`). What a scenario places (its `PLACEMENT_LABEL`) goes where it says; the rest by default:
    the server (and anything not a client) on the first node, unplaced clients round-robin over
    the nodes other than the server's (over every node when there is no other, or the server may
    go anywhere). A node the swarm does not offer is an error naming the ones it does."""
    if not nodes:
        raise EngineError("the swarm has no node that is ready and active")

    def declared(name: str) -> str | None:
        node = (services[name].get("labels") or {}).get(PLACEMENT_LABEL)
        if node is not None and node != PLACE_ANYWHERE and node not in nodes:
            raise EngineError(f"service {name} is placed on node {node}, which the swarm does not have ready "
                              f"and active; its nodes: {', '.join(nodes)}")
        return node

    clients = [name for name, s in services.items() if (s.get("labels") or {}).get(ROLE_LABEL) == "client"]
    server = declared("server") if "server" in services else None
    home = None if server == PLACE_ANYWHERE else (server or nodes[0])
    placement: dict[str, str | None] = {name: home for name in services if name not in clients}
    spread = [n for n in nodes if n != home] or nodes
    turn = 0
    for name in clients:
        placement[name] = declared(name)
        if placement[name] is None:
            placement[name] = spread[turn % len(spread)]
            turn += 1
    return placement


def to_stack(compose: dict[str, Any], *, nodes: list[str], endpoint_mode: str) -> dict[str, Any]:
    """The stack file for a run's compose mapping (see the module docstring)."""
    services = {name: s for name, s in (compose.get("services") or {}).items()
                if (s.get("labels") or {}).get(ROLE_LABEL) not in HELPERS}
    refuse_shared_namespaces(services.items())
    placement = place(services, nodes)
    stack_services = {}
    for name, service in services.items():
        out = {k: copy.deepcopy(v) for k, v in service.items() if k not in DROPPED}
        labels = dict(service.get("labels") or {})
        deploy: dict[str, Any] = {
            "mode": "replicated",
            "replicas": 1,
            "endpoint_mode": endpoint_mode,
            "restart_policy": {"condition": "none"},
            "labels": labels,  # on the service too: the engine finds a run's services by them
        }
        if placement[name] is not None:
            deploy["placement"] = {"constraints": [f"node.hostname == {placement[name]}"]}
        # Bind mounts name this host's paths (the run directory), which the nodes do not have;
        # the engine reads each task's output from its node instead.
        volumes = [v for v in service.get("volumes") or [] if not _is_bind(v)]
        if RECORDS_VARIABLE in (out.get("environment") or {}):
            # Its records file is one of those binds: the program writes stdout only, as under
            # plain compose.
            out["environment"] = {k: v for k, v in out["environment"].items() if k != RECORDS_VARIABLE}
        # A stack ignores the short `tmpfs:` form; the long volume form is honoured.
        tmpfs = service.get("tmpfs") or []
        volumes += [{"type": "tmpfs", "target": path} for path in ([tmpfs] if isinstance(tmpfs, str) else tmpfs)]
        if volumes:
            out["volumes"] = volumes
        if "mem_limit" in service:
            deploy["resources"] = {"limits": {"memory": service["mem_limit"]}}
        out["deploy"] = deploy
        stack_services[name] = out
    network = copy.deepcopy((compose.get("networks") or {}).get(NETWORK) or {})
    network.pop("ipam", None)  # the swarm's address pool gives each overlay its subnet
    network.update(driver="overlay", attachable=True, internal=True)
    return {"services": stack_services, "networks": {NETWORK: network}}


def _is_bind(volume: str | dict[str, Any]) -> bool:
    if isinstance(volume, dict):
        return volume.get("type") == "bind"
    return volume.split(":", 1)[0].startswith((".", "/", "$"))


def refuse_shared_namespaces(services: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Swarm services cannot join another service's network namespace (the shaper sidecar's
    pattern); the scenario check refuses impairments first, this is the last guard."""
    for name, service in services:
        if "network_mode" in service:
            raise EngineError(f"service {name}: swarm services cannot share another service's network "
                              f"namespace (network_mode: {service['network_mode']})")


def to_yaml(stack: dict[str, Any], header: str = "") -> str:
    """A stack file's text, in the order it was built (services first)."""
    return header + yaml.safe_dump(stack, sort_keys=False, allow_unicode=True, width=110)
