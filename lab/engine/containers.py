"""Containers and networks of a run through the docker SDK: list, logs, fault actions, exec, the
network's facts, and the throwaway probe container of `lab doctor`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.engine.connection import DockerConnection, docker_module, sdk_call
from lab.engine.interface import ContainerInfo
from lab.errors import EngineError
from lab.labels import MANAGED_LABEL, NETWORK, ROLE_LABEL, SERVICE_LABEL, session_labels

PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

# Lifecycle fault actions, as SDK calls on a container (a short grace: the programs exit fast).
LIFECYCLE = {
    "stop": lambda c: c.stop(timeout=3),
    "start": lambda c: c.start(),
    "kill": lambda c: c.kill(),
    "restart": lambda c: c.restart(timeout=3),
    "pause": lambda c: c.pause(),
    "unpause": lambda c: c.unpause(),
}


# Docker 20.10 on these hosts mishandles many containers leaving one network at once: it can lose
# count of the network's endpoints (the network then cannot be removed until the daemon
# restarts), or deadlock its network code and stop answering (seen with 200 containers exiting
# together, under bare compose too). Compose stops a project's containers all at once (it ignores
# COMPOSE_PARALLEL_LIMIT for stop and down), so the lab stops them itself, this many at a time.
LEAVING_AT_ONCE = 8
# The order a project's containers stop in, by role, as compose would (dependents first): the
# clients, then what they talk to, then the namespaces those run in, and the capture last so the
# wire view holds every goodbye. A role not named here stops with the second wave.
STOP_WAVES = (("client", "finished"), ("server", "router", "sockets"), ("shaper", "netns"), ("capture",))


def stop_waves(talked_out: bool) -> tuple[tuple[str, ...], ...]:
    """The waves for a teardown. Once every client has said its conversation is over
    (`talked_out`), nothing is left to say between them and the server or routers: those stop
    in one wave. The namespaces they run in still go after them (a holder stopping while the
    containers in its namespace leave too is where a 20.10 daemon once deadlocked here), and
    the capture last, to see the last goodbyes."""
    if not talked_out:
        return STOP_WAVES
    return (*STOP_WAVES[0], *STOP_WAVES[1]), *STOP_WAVES[2:]


class Containers(DockerConnection):
    """The SDK side of `Engine`: containers and networks."""

    def __init__(self) -> None:
        super().__init__()
        self._aliases: dict[tuple[str, str], list[str]] = {}  # what a disconnect took away

    def containers(self, project: str) -> list[ContainerInfo]:
        """The project's containers, running or not."""
        return self.containers_with_label(f"{PROJECT_LABEL}={project}")

    @sdk_call
    def containers_with_label(self, label: str) -> list[ContainerInfo]:
        """Containers with a label, running or not, from one list call (no per-container inspect:
        cheap enough to poll, and a container removed meanwhile cannot make it fail)."""
        listed = self.client.api.containers(all=True, filters={"label": label})
        return [info_from_list(entry) for entry in listed]

    @sdk_call
    def container_logs(self, container_id: str) -> bytes:
        """Everything a container printed (stdout and stderr), as collected by Docker."""
        docker = docker_module()
        try:
            return self.client.containers.get(container_id).logs(stdout=True, stderr=True)
        except docker.errors.NotFound:
            return b""

    def container_output(self, container_id: str, stdout: bool = True, stderr: bool = True) -> Iterator[bytes]:
        """What Docker's log store kept of a container's output, streamed line by line, each line
        prefixed with Docker's timestamp (`docker logs --timestamps`)."""
        docker = docker_module()
        import requests

        try:
            chunks = self.client.api.logs(container_id, stdout=stdout, stderr=stderr, stream=True,
                                          follow=False, timestamps=True)
            yield from _whole_lines(chunks)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"docker: container output: {exc}") from None

    @sdk_call
    def log_limits(self, container_id: str) -> str | None:
        """How much of a container's output Docker's log store keeps (`max-size 10m x 3`), if capped."""
        docker = docker_module()
        try:
            config = self.client.api.inspect_container(container_id)["HostConfig"].get("LogConfig") or {}
        except docker.errors.NotFound:
            return None
        options = config.get("Config") or {}
        if "max-size" not in options:
            return None
        return f"{config.get('Type')} log driver keeps max-size {options['max-size']} x {options.get('max-file', '1')}"

    @sdk_call
    def image_of(self, container_id: str) -> str | None:
        docker = docker_module()
        try:
            return self.client.containers.get(container_id).attrs.get("Image")
        except docker.errors.NotFound:
            return None

    @sdk_call
    def stop_project(self, project: str, grace: float, talked_out: bool = False) -> None:
        """Stop a project's running containers in waves (`stop_waves`), at most `LEAVING_AT_ONCE`
        at a time (SIGTERM, then SIGKILL after `grace` seconds). A role no wave names stops with
        the server."""
        docker = docker_module()
        roles_by_wave = stop_waves(talked_out)
        waves: list[list[str]] = [[] for _ in roles_by_wave]
        unnamed = next(i for i, roles in enumerate(roles_by_wave) if "server" in roles)
        for info in self.containers(project):
            if info.status in ("running", "paused", "restarting"):
                rank = next((i for i, roles in enumerate(roles_by_wave) if info.role in roles), unnamed)
                waves[rank].append(info.id)

        def stop(container_id: str) -> None:
            try:
                self.client.api.stop(container_id, timeout=max(1, round(grace)))
            except docker.errors.NotFound:
                pass  # gone meanwhile: nothing left to stop

        with ThreadPoolExecutor(max_workers=LEAVING_AT_ONCE) as pool:
            for wave in waves:
                list(pool.map(stop, wave))  # each wave whole before the next; errors raise here

    @sdk_call
    def act(self, container_id: str, action: str, network: str | None = None) -> None:
        """Apply a fault action to a container: stop, start, kill, restart, pause, unpause,
        disconnect (from the run's network), reconnect (with the aliases it had)."""
        container = self.client.containers.get(container_id)
        if action in LIFECYCLE:
            LIFECYCLE[action](container)
        elif action == "disconnect":
            settings = container.attrs["NetworkSettings"]["Networks"].get(network) or {}
            # Docker adds the short id itself; the service names are what clients resolve.
            self._aliases[(container_id, network)] = [
                a for a in settings.get("Aliases") or [] if not container_id.startswith(a)
            ]
            self.client.networks.get(network).disconnect(container, force=True)
        elif action == "reconnect":
            aliases = self._aliases.pop((container_id, network), None)
            self.client.networks.get(network).connect(container, aliases=aliases)
        else:
            raise EngineError(f"unknown fault action {action!r}")

    @sdk_call
    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        result = self.client.containers.get(container_id).exec_run(command)
        return result.exit_code, result.output.decode("utf-8", "replace")

    def network_name(self, project: str) -> str:
        return f"{project}_{NETWORK}"

    @sdk_call
    def network_subnet(self, project: str) -> str | None:
        docker = docker_module()
        try:
            net = self.client.networks.get(self.network_name(project))
        except docker.errors.NotFound:
            return None
        configs = (net.attrs.get("IPAM") or {}).get("Config") or []
        return configs[0].get("Subnet") if configs else None

    @sdk_call
    def used_subnets(self) -> list[str]:
        """Every subnet of every network on the engine, so a run can pick free ones."""
        subnets = []
        for net in self.client.api.networks():
            subnets += [c["Subnet"] for c in (net.get("IPAM") or {}).get("Config") or [] if c.get("Subnet")]
        return subnets

    def host_firewall(self, image: str, script: str) -> tuple[int, str]:
        """Run a shell script in the host's network namespace with NET_ADMIN (and NET_RAW for
        legacy iptables) only: the lab's scoped host rules (lab/hostrules.py)."""
        return self.run_throwaway(image, ["sh", "-c", script], ["NET_ADMIN", "NET_RAW"], network_mode="host")

    @sdk_call
    def run_throwaway(self, image: str, command: list[str], cap_add: list[str], timeout: float = 60,
                      mounts: dict[str, str] | None = None, environment: dict[str, str] | None = None,
                      network_mode: str = "none") -> tuple[int, str]:
        """Run a short-lived, labelled container with no network of ours; return (status, output).

        `mounts` maps host directories to read-only container paths."""
        container = self.client.containers.create(
            image,
            command,
            user="0:0",
            cap_drop=["ALL"],
            cap_add=cap_add,
            network_mode=network_mode,
            volumes={host: {"bind": path, "mode": "ro"} for host, path in (mounts or {}).items()},
            environment=environment or {},
            labels={MANAGED_LABEL: "true", f"{MANAGED_LABEL}-throwaway": "true", **session_labels()},
        )
        try:
            container.start()
            status = container.wait(timeout=timeout).get("StatusCode", 1)
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            container.remove(force=True)
        return status, output

    @sdk_call
    def data_root(self) -> str:
        """Where the engine keeps images and containers (for the disk-space check)."""
        return self.client.info().get("DockerRootDir", "/var/lib/docker")


def info_from_list(entry: dict[str, Any]) -> ContainerInfo:
    """A ContainerInfo from one row of the container list API."""
    labels = entry.get("Labels") or {}
    state = entry.get("State", "unknown")
    ip = None
    for name, net in ((entry.get("NetworkSettings") or {}).get("Networks") or {}).items():
        if name.endswith(f"_{NETWORK}") and net.get("IPAddress"):
            ip = net["IPAddress"]
    exit_code = None
    if state in ("exited", "dead"):
        # The list's status reads "Exited (137) 2 seconds ago".
        match = re.search(r"\((-?\d+)\)", entry.get("Status", ""))
        exit_code = int(match.group(1)) if match else None
    return ContainerInfo(
        name=(entry.get("Names") or ["/?"])[0].lstrip("/"),
        service=labels.get(SERVICE_LABEL) or labels.get(COMPOSE_SERVICE_LABEL, ""),
        role=labels.get(ROLE_LABEL, ""),
        status=state,
        exit_code=exit_code,
        ip=ip,
        id=entry["Id"],
        labels=labels,
    )


def _whole_lines(stream: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines from chunks that may cut lines anywhere (Docker's log stream frames)."""
    pending = b""
    for chunk in stream:
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending
