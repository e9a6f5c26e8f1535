"""The capture helper as a compose service: a pure function, like the rest of the rendering.

The helper shares the host's network namespace so it can open the run's bridges, which the lab
names itself (`lab-<run token>`, and `lab-<run token>-<n>` for each network of a topology;
Docker's default `br-<id>` is only known after the network exists). It records those
interfaces, each into its own file, and nothing else. Its privileges are what tcpdump needs
on Debian and no more (docs/wire.md, "Privileges").
"""

from __future__ import annotations

from typing import Any

from lab.readiness import ready_when

SERVICE = "capture"
ROLE = "capture"
READY_FILE = "/tmp/capture-ready"
MOUNT = "/capture"
PCAP_NAME = "lab.pcap"
CAPTURE_DIR = "capture"  # in the run directory (and next to a plain compose file)
PLAIN_BRIDGE = "lab-compose"  # plain compose: one project at a time (its subnet is fixed anyway)
BRIDGE_OPTION = "com.docker.network.bridge.name"
PROFILE = "capture"


def bridge_name(run_id: str | None) -> str:
    """The bridge of a run's network: `lab-` and the run id's random token (at most 15 chars, Linux's limit)."""
    if not run_id:
        return PLAIN_BRIDGE
    token = run_id.rsplit("-", 1)[-1][:10]
    return f"lab-{token}"


def pcap_name(network: str | None) -> str:
    """A capture's file name: `lab.pcap` for a run's one network, `<network>.pcap` for each
    network of a topology."""
    return PCAP_NAME if network is None else f"{network}.pcap"


def capture_service(node: dict[str, Any], captures: list[tuple[str, str]], *, group: int = 0,
                    plain: bool = False) -> dict[str, Any]:
    """The `capture` service, from a node spec (image and labels) already made for it.

    `captures`: (bridge, file name) for each network to record, one tcpdump each.

    `group` is the gid the helper writes the pcap with (the run directory's owner's, so they
    can read and delete it); `plain` puts it under the `capture` profile and its output
    directory under `$LAB_CAPTURE_DIR`.
    """
    host_dir = "${LAB_CAPTURE_DIR:-./" + CAPTURE_DIR + "}" if plain else "./" + CAPTURE_DIR
    spec = dict(node)
    spec.update(
        command=["python3", "-m", "lab.capture",
                 *(arg for bridge, name in captures for arg in ("--interface", bridge, "--output", f"{MOUNT}/{name}")),
                 "--ready-file", READY_FILE, "--name", SERVICE],
        environment={"LAB_NAME": SERVICE},
        # Root in the container, so tcpdump may open the interface; NET_RAW for the packet socket,
        # SETGID for tcpdump's `-Z root` (a no-op initgroups). No NET_ADMIN: on the host's network
        # namespace that would be far more than this job needs.
        user=f"0:{group}",
        network_mode="host",
        cap_drop=["ALL"],
        cap_add=["NET_RAW", "SETGID"],
        security_opt=["no-new-privileges:true"],
        read_only=True,
        tmpfs=["/tmp"],
        volumes=[f"{host_dir}:{MOUNT}"],
        mem_limit="128m",
        pids_limit=12 + 4 * len(captures),  # per capture: a tcpdump and the helper's two threads
        healthcheck=ready_when(READY_FILE),
        # Stopped after the clients (they depend on it); time enough to write its counters.
        stop_grace_period="5s",
    )
    if plain:
        spec["profiles"] = [PROFILE]
    return spec


def capture_dependency(plain: bool) -> dict[str, Any]:
    """What each client's `depends_on` gets: start only once packets are being recorded (the
    helper starts beside the server, not before it, so it adds no step to the start). Plain
    compose runs without the profile too, so there the dependency is optional."""
    condition: dict[str, Any] = {"condition": "service_healthy"}
    if plain:
        condition["required"] = False
    return {SERVICE: condition}
