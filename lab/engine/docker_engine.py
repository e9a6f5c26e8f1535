"""`DockerEngine`: the `Engine` of this host's Docker Engine with Compose v2, assembled from its
parts (compose for a project's lifecycle, the SDK for containers, images and leftovers)."""

from __future__ import annotations

from pathlib import Path

from lab.engine.compose_cli import COMPOSE_COMMAND, ComposeProject, compose_version
from lab.engine.containers import Containers
from lab.engine.images import Images
from lab.engine.resources import LabelledResources
from lab.errors import EngineUnavailable, UsageError


class DockerEngine(Containers, Images, LabelledResources):
    """Docker Engine + Compose v2 on this host."""

    shares_host_files = True  # every container runs here: binds of the run directory reach them
    places_on_nodes = False  # one host: a scenario's `placement:` has nothing to choose from

    def __init__(self, compose_command: tuple[str, ...] = COMPOSE_COMMAND) -> None:
        super().__init__()
        self.compose_command = tuple(compose_command)

    def require(self) -> DockerEngine:
        """Fail early, in one line, when the engine or Compose v2 is missing."""
        self.client  # noqa: B018 - connects and pings
        if self.compose_version() is None:
            raise EngineUnavailable("Docker Compose v2 (`docker compose`) is not available")
        return self

    def engine_version(self) -> str:
        """The Docker Engine's version; EngineUnavailable when it cannot be reached."""
        return self.client.version().get("Version", "?")

    def compose_version(self) -> str | None:
        """Compose v2's version, or None when `docker compose` is missing or is v1. Asked once
        per engine object: a run needs it at its start and again for its manifest."""
        if not hasattr(self, "_compose_version"):
            self._compose_version = compose_version(self.compose_command)
        return self._compose_version

    def versions(self) -> dict[str, str | None]:
        return {"engine": self.engine_version(), "compose": self.compose_version()}

    def scenario_for(self, scenario):
        """Docker with compose runs every scenario the model accepts, as it is, except a fault
        on a swarm node: one host has no nodes to cut off."""
        cuts = [f"faults.{i}.target: {fault.target} is a swarm node, and one host has no nodes to cut off "
                "(run it with --engine swarm on a `lab cluster`)" for i, fault in scenario.node_faults()]
        if cuts:
            raise UsageError(f"the docker engine cannot run scenario {scenario.name}: " + "; ".join(cuts))
        return scenario

    def act_on_node(self, node: str, action: str) -> None:
        raise UsageError(f"one host has no node {node} to {action}")  # scenario_for refuses it first

    def project(self, name: str, file: Path) -> ComposeProject:
        return ComposeProject(name, file, self.compose_command, stopper=self.stop_project)
