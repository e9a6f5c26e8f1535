"""Render a Scenario as a Compose file: a pure function from the model to a compose mapping.

The same renderer makes the committed files that plain `docker compose` uses (`compose.yaml`,
`scenarios/compose/*.yaml`, with a `build:` section) and the file of each `lab run` (image
only, unique labels, a network Docker sizes itself so that runs never collide).

Layout of a rendered project:
- `server`: the echo servers (TCP and/or UDP), unprivileged, healthy once listening.
- `client1..N`: the echo clients; each starts once the server is healthy.
- `<svc>-sockets`: only for a service running a learner's own program (`program:`): records
  the socket table of the service's network namespace, with no capability at all.
- `<svc>-shaper`: only for a service with an impairment. It owns the network namespace, holds
  NET_ADMIN, applies the impairment, and the echo container joins it with
  `network_mode: service:<svc>-shaper`, so the echo programs never get NET_ADMIN.
- `capture`: records the network's bridge into a pcap (lab/wire/service.py); the clients start
  once it is recording.
- `finished` (plain compose only): waits until every client has exited 0, so
  `up --exit-code-from finished finished` ends by itself with the clients' verdict.

Near 400 lines because every service above is drawn here, beside the sidecar placement they
share (`_attach`); networks and routers have their own module (compose_topology.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from lab import compose_topology as topo
from lab.echo.barrier import poll_interval
from lab.home import project_root
from lab.labels import (
    MANAGED_LABEL,
    NETWORK,
    OWNER_LABEL,
    PLACEMENT_LABEL,
    ROLE_LABEL,
    RUN_DIR_LABEL,
    RUN_LABEL,
    SCENARIO_LABEL,
    SERVICE_LABEL,
    SESSION_LABEL,
    session_labels,
)
from lab.programs.spec import Program
from lab.readiness import ready_when, ready_when_listening
from lab.records.writer import RECORDS_VARIABLE
from lab.scenario import ClientSpec, Impairment, Scenario
from lab.wire.service import BRIDGE_OPTION, bridge_name, capture_dependency, capture_service, pcap_name

DEFAULT_NODE_IMAGE = "socketlab/node:latest"
# Plain compose files name the image through a variable, so a second checkout (or a CI job
# beside a developer's) can build and use its own tag without touching the other's.
NODE_IMAGE_VARIABLE = "${LAB_NODE_IMAGE:-" + DEFAULT_NODE_IMAGE + "}"
BASE_IMAGE_VARIABLE = "${LAB_BASE_IMAGE:-socketlab/base:bookworm}"
# What `lab` builds the node image from, written into the image as a label (lab/images.py):
# empty when plain compose builds it.
CONTEXT_DIGEST_VARIABLE = "${LAB_CONTEXT_DIGEST:-}"
READY_FILE = "/tmp/lab-ready"
SHAPER_READY_FILE = "/tmp/shaper-ready"
WATCHER_READY_FILE = "/tmp/sockets-ready"
# `lab run` only: the run's control directory, mounted read-only into every client; the
# orchestrator creates START_FILE in it once every container is up (lab/echo/barrier.py).
CONTROL_MOUNT = "/lab/control"
START_FILE = f"{CONTROL_MOUNT}/go"
# ... and each client writes its own ready file (control/ready/<client> on the host) once it waits,
# and its exit status there once it has talked; it then stays until stopped or LEAVE_FILE exists.
READY_MOUNT = "/lab/ready"
LEAVE_FILE = f"{CONTROL_MOUNT}/leave"
# Where each program of a `lab run` appends its records: its own file of the run directory,
# bind-mounted (lab/collect.py). Plain compose has no such file: records go to stdout only.
RECORDS_TARGET = "/var/log/lab/records.jsonl"


def node_image() -> str:
    """The node image this process builds and runs: `$LAB_NODE_IMAGE`, or the default tag."""
    return os.environ.get("LAB_NODE_IMAGE") or DEFAULT_NODE_IMAGE


def render(
    scenario: Scenario,
    *,
    run_id: str | None = None,
    owner: str | None = None,
    build_context: str | None = None,
    capture_group: int = 0,
    subnets: dict[str, dict[str, str]] | None = None,
    control_dir: str | None = None,
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """The compose mapping for a scenario.

    `build_context` (relative to the compose file) adds a `build:` so plain compose builds the
    node image; `run_id`, `owner` and `run_dir` go into labels so `lab clean` can find what a run
    left and salvage its records. Without `run_id` the network gets the scenario's fixed subnet
    (plain compose). A scenario with `networks:` gets them with the given `subnets` (or fixed
    ones): lab/compose_topology.py. With the scenario's `capture` on, a `capture` helper records
    the network's bridge (in plain compose under the `capture` profile; with `networks:`, the
    server's first network's bridge); `capture_group` is the gid it writes the pcap with.
    `control_dir` (an absolute host path) puts the clients behind the start barrier. With
    `run_dir`, each service's program also appends its records to
    `<run_dir>/records/<service>.jsonl`, bind-mounted.
    """
    labels = {MANAGED_LABEL: "true", SCENARIO_LABEL: scenario.name}
    if run_id:
        labels[RUN_LABEL] = run_id
    if owner:
        labels[OWNER_LABEL] = owner
    if run_dir is not None:
        labels[RUN_DIR_LABEL] = str(run_dir)
    # Plain compose takes the session from the environment when it is set (the test suite).
    labels.update(session_labels() if run_id else {SESSION_LABEL: "${LAB_SESSION:-}"})

    def node(service: str, role: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"image": node_image() if run_id else NODE_IMAGE_VARIABLE}
        # One service builds the shared image; compose builds before it creates any container.
        if build_context is not None and service == "server":
            spec["build"] = {
                "context": build_context,
                "dockerfile": "images/node/Dockerfile",
                "args": {"BASE_IMAGE": BASE_IMAGE_VARIABLE, "CONTEXT_DIGEST": CONTEXT_DIGEST_VARIABLE},
            }
        spec["labels"] = {**labels, ROLE_LABEL: role, SERVICE_LABEL: service}
        return spec

    services: dict[str, Any] = {}
    t = None
    if scenario.networks is not None:
        t = topo.topology_for(scenario, subnets, bridge_name(run_id))
        for name in scenario.routers:
            services[name] = topo.router_service(t, name, node(name, "router"))
    server = node("server", "server")
    server.update(
        command=["python3", "-m", "lab.echo", "server", *server_args(scenario, dual_stack=bool(t and t.uses_ipv6()))],
        environment={"LAB_NAME": "server"},
        healthcheck=ready_when(READY_FILE),
        stop_grace_period="3s",
        cpu_shares=_weight_of_many(scenario),
        **_hardening(pids=1200 if scenario.server.mode == "threaded" else 256),
    )
    if scenario.publish:
        server["ports"] = list(scenario.publish)
    placement = scenario.placement
    if placement is not None and placement.server is not None:
        server["labels"][PLACEMENT_LABEL] = placement.server  # for an engine with nodes; compose ignores it
    if scenario.capture:
        # Every network, each into its own file: a router's two sides are told apart by file.
        captures = ([(t.bridge(net), pcap_name(net)) for net in t.networks] if t
                    else [(bridge_name(run_id), pcap_name(None))])
        services["capture"] = capture_service(node("capture", "capture"), captures, group=capture_group,
                                              plain=not run_id)
    if scenario.server.program:
        server["command"] = _program_command(scenario.server.program)
        _mount_program(server, scenario.server.program, build_context, run_id)
        server["healthcheck"] = ready_when_listening(scenario.server.port)
    _attach(services, server, "server", scenario.server.impair, node, aliases=["server"],
            watch=scenario.server.program is not None, topology=t)
    if "server-shaper" in services:
        services["server-shaper"]["cpu_shares"] = server["cpu_shares"]  # every packet to the server passes it

    for name in scenario.client_names():
        spec = scenario.client(name)
        client = node(name, "client")
        if placement is not None and placement.node_of_client(name):
            client["labels"][PLACEMENT_LABEL] = placement.node_of_client(name)
        target = t.server_target(name) if t else (["server"], scenario.server.port)
        command = ["python3", "-m", "lab.echo", "client", *client_args(scenario, spec, *target)]
        if spec.program:
            command = _program_command(spec.program)
            if spec.start_after:  # the echo client waits itself (--start-delay), a learner's program cannot
                command = ["sh", "-c", f'sleep {spec.start_after:g} && exec "$@"', "start-after", *command]
        elif control_dir:
            command += ["--start-file", START_FILE, "--start-deadline", f"{start_deadline(scenario):g}",
                        "--start-poll", f"{poll_interval(scenario.clients.count):g}",
                        "--ready-file", READY_MOUNT, "--leave-file", LEAVE_FILE]
            client.setdefault("volumes", []).extend([
                {"type": "bind", "source": control_dir, "target": CONTROL_MOUNT, "read_only": True},
                {"type": "bind", "source": f"{control_dir}/ready/{name}", "target": READY_MOUNT},
            ])
        client.update(
            command=command,
            environment={"LAB_NAME": name},
            # The clients start the traffic: once the capture records (it starts beside the server).
            depends_on={**{svc: {"condition": "service_healthy"} for svc in ["server", *scenario.routers]},
                        **(capture_dependency(plain=not run_id) if scenario.capture else {})},
            restart="no",
            **_hardening(pids=64 + 2 * spec.sessions),
        )
        if spec.program:
            _mount_program(client, spec.program, build_context, run_id)
        _attach(services, client, name, spec.impair, node, aliases=[], watch=spec.program is not None, topology=t)

    if not run_id:
        # Plain compose only: `lab run` watches the clients itself (and `up -d` would otherwise
        # block until they are all done, before any fault could be applied).
        finished = node("finished", "finished")
        finished.update(
            command=["python3", "-c", f"print('all {scenario.clients.count} clients finished and succeeded')"],
            depends_on={name: {"condition": "service_completed_successfully"} for name in scenario.client_names()},
            network_mode="none",
            **_hardening(pids=16),
        )
        services["finished"] = finished

    if run_dir is not None:
        for name, spec in services.items():
            _records_to_file(spec, run_dir / "records" / f"{name}.jsonl")

    if t is not None:
        return {"services": services, "networks": topo.networks_mapping(t, labels)}
    # A bridge name of the lab's own, so the capture helper can find it before it exists.
    network: dict[str, Any] = {"internal": True, "labels": dict(labels),
                               "driver_opts": {BRIDGE_OPTION: bridge_name(run_id)}}
    if not run_id:
        network["ipam"] = {"config": [{"subnet": scenario.network.subnet}]}
    return {"services": services, "networks": {NETWORK: network}}


def _program_command(program: Program) -> list[str]:
    """A learner's program instead of the echo program, run by the launcher (`$$` is compose's `$`)."""
    return [part.replace("$", "$$") for part in program.launcher_command()]


def _mount_program(spec: dict[str, Any], program: Program, build_context: str | None, run_id: str | None) -> None:
    """The program's file or folder, mounted read-only (for plain compose: from the checkout,
    relative to the compose file)."""
    spec["pids_limit"] = 256
    if program.path:
        source = program.path
        if not run_id and build_context is not None:
            source = f"{build_context}/{os.path.relpath(program.path, project_root())}"
        spec["volumes"] = [f"{source}:{program.mount_target()}:ro"]


def _attach(
    services: dict[str, Any], spec: dict[str, Any], name: str, impair: Impairment | None, node, aliases: list[str],
    watch: bool = False, topology: topo.Topology | None = None,
) -> None:
    """Put a service on the lab network(s), directly or through its sidecars. The first sidecar
    owns the network namespace: the route helper `<name>-net` on a topology that needs routes
    (lab/compose_topology.py), else the shaper, else the socket-table watcher; the others and
    the service join it, and the service starts once every sidecar is healthy (so nothing it
    does goes unseen)."""
    holder: str | None = None
    helpers: list[str] = []

    def placement() -> dict[str, Any]:
        """A new sidecar's place: on the networks if it is the first, else in the holder's namespace."""
        if holder is None:
            if topology is not None:
                return {"networks": topo.attachments(topology, name, aliases or [name])}
            return {"networks": {NETWORK: {"aliases": aliases or [name]}}}
        return {"network_mode": f"service:{holder}", "depends_on": {holder: {"condition": "service_healthy"}}}

    if topology is not None and topology.gateways(name):
        holder = f"{name}-net"
        services[holder] = topo.route_helper(topology, name, node(holder, "netns"), aliases or [name])
        helpers.append(holder)
    if impair is not None:
        shaper_name = f"{name}-shaper"
        shaper = node(shaper_name, "shaper")
        shaper.update(
            command=[
                "python3", "-m", "lab.shaper", "run", "--dev", "eth0",
                "--name", shaper_name, "--ready-file", SHAPER_READY_FILE, *impair.shaper_args(),
                *(["--ipv6"] if topology is not None and topology.has_ipv6(name) else []),
            ],
            environment={"LAB_NAME": shaper_name},
            # Root inside the container, but with only the network capabilities it needs.
            user="0:0",
            cap_drop=["ALL"],
            cap_add=["NET_ADMIN", "NET_RAW"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs=["/tmp", "/run"],
            mem_limit="128m",
            pids_limit=64,
            healthcheck=ready_when(SHAPER_READY_FILE),
            stop_grace_period="3s",
            **placement(),
        )
        services[shaper_name] = shaper
        holder = holder or shaper_name
        helpers.append(shaper_name)
    if watch:
        watcher = _watcher(services, name, node, placement())
        holder = holder or watcher
        helpers.append(watcher)
    if holder is None:
        if topology is not None:
            spec["networks"] = topo.attachments(topology, name, aliases)
        else:
            spec["networks"] = {NETWORK: {"aliases": aliases} if aliases else {}}
    else:
        spec["network_mode"] = f"service:{holder}"
        depends = dict(spec.get("depends_on", {}))
        depends.update({helper: {"condition": "service_healthy"} for helper in helpers})
        spec["depends_on"] = depends
    services[name] = spec


def _watcher(services: dict[str, Any], name: str, node, placement: dict[str, Any]) -> str:
    """The socket-table watcher of a service running a learner's program: no capability at all
    (the tables of its own namespace are readable by anyone in it)."""
    watcher_name = f"{name}-sockets"
    watcher = node(watcher_name, "sockets")
    watcher.update(
        command=["python3", "-m", "lab.learner", "watch", "--ready-file", WATCHER_READY_FILE],
        environment={"LAB_NAME": name},
        healthcheck=ready_when(WATCHER_READY_FILE),
        stop_grace_period="3s",
        **_hardening(pids=16),
        **placement,
    )
    services[watcher_name] = watcher
    return watcher_name


def _weight_of_many(scenario: Scenario) -> int:
    """CPU weight of a container that serves every client (the server, a shaper in front of it).

    Each container gets the same share of a busy CPU by default, so with 500 clients waking at
    once the server would get 1/501 of it and its echoes would time out. Weighted as all the
    clients together (capped at the kernel's maximum), it keeps half the CPU when they contend."""
    return min(1024 * scenario.clients.count, 262144)


def _records_to_file(spec: dict[str, Any], path: Path) -> None:
    spec["environment"] = {**spec.get("environment", {}), RECORDS_VARIABLE: RECORDS_TARGET}
    spec["volumes"] = [*spec.get("volumes", []), {"type": "bind", "source": str(path), "target": RECORDS_TARGET}]


def _hardening(pids: int) -> dict[str, Any]:
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "mem_limit": "128m",
        "pids_limit": pids,
    }


def server_args(scenario: Scenario, dual_stack: bool = False) -> list[str]:
    s = scenario.server
    return [
        "--proto", ",".join(s.proto),
        "--port", str(s.port),
        "--mode", s.mode,
        "--host", "::" if dual_stack else "0.0.0.0",
        "--idle-timeout", f"{s.idle_timeout:g}",
        "--ready-file", READY_FILE,
    ]


def barrier_clients(scenario: Scenario) -> list[str]:
    """The clients that wait at the start barrier of a run: the lab's own echo clients (a
    learner's program knows nothing of it, and starts as soon as its container does)."""
    return [name for name in scenario.client_names() if not scenario.client(name).program]


def all_wait_at_barrier(scenario: Scenario) -> bool:
    """Does nothing of the scenario talk before the lab releases the clients? Then the lab, not
    health checks, may tell when the server and the helpers are ready (lab/readiness.py)."""
    return not scenario.server.program and len(barrier_clients(scenario)) == scenario.clients.count


def start_deadline(scenario: Scenario) -> float:
    """How long a client waits for the start barrier: the slowest bring-up seen here took about
    0.3 s per container, so 2 s each and two minutes besides is room enough, yet a client whose
    orchestrator was killed does not wait for ever."""
    services = ["server", *scenario.client_names()]
    containers = len(services) + sum(1 for name in services if scenario.impair_of(name) is not None)
    return 120 + 2 * containers


def client_args(scenario: Scenario, spec: ClientSpec, servers: list[str] | None = None,
                port: int | None = None) -> list[str]:
    """The echo client's options; `servers` are the addresses it talks to in turn (a dual-stack
    client names the server's IPv4 and IPv6 address)."""
    args = [
        "--server", ",".join(servers or ["server"]),
        "--port", str(port or scenario.server.port),
        "--proto", ",".join(spec.proto),
        "--interval", f"{spec.interval:g}",
        "--timeout", f"{spec.timeout:g}",
        "--connect-timeout", "30",
    ]
    if spec.messages is not None:
        for message in spec.messages:
            # `=` keeps a message like "--help" a value; `$$` is compose's literal `$`.
            args.append("--message=" + message.replace("$", "$$"))
    if spec.message_count is not None:
        args += ["--count", str(spec.message_count)]
    if spec.message_size is not None:
        args += ["--size", str(spec.message_size)]
    if "udp" in spec.proto:
        args += ["--retries", str(spec.retries)]
    if spec.max_loss:
        args += ["--max-loss", f"{spec.max_loss:g}"]
    if spec.sessions > 1:
        args += ["--sessions", str(spec.sessions)]
    if spec.reconnect_for:
        args += ["--reconnect", "--reconnect-for", f"{spec.reconnect_for:g}"]
    if spec.source_port:
        args += ["--source-port", str(spec.source_port)]
    if spec.start_after:
        args += ["--start-delay", f"{spec.start_after:g}"]
    return args


class _Dumper(yaml.SafeDumper):
    """Lists of plain values on one line (commands read as commands), the rest in block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(item, (str, int, float, bool)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def to_yaml(compose: dict[str, Any], header: str = "") -> str:
    """Compose YAML text (compose derives the project name from the directory or `-p`)."""
    text = yaml.dump(compose, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return header + text
