"""What the lab needs from a container engine, declared once: `Engine` and the `Project` it runs.

`run.py`, `faults.py`, `images.py` and `cleanup.py` speak only these methods. The Docker
implementation is `DockerEngine`; a second engine (Docker Swarm for multi-host) is a second
implementation of the same Protocols, never a branch in its callers. Nothing here names compose
or the docker SDK: a project is described by the compose-format file the renderer writes, and
each engine decides how to make it real.

Errors: an engine raises `EngineUnavailable` when it cannot be reached and `EngineError` when an
operation fails (both `LabError`s), never its own library's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class ContainerInfo:
    """What the lab needs to know about one container of a run."""

    name: str
    service: str
    role: str
    status: str  # created, running, paused, restarting, exited, dead
    exit_code: int | None  # once exited
    ip: str | None  # on the project's network, while attached
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    node: str | None = None  # the host it runs on, where an engine spans several (a swarm node)


@dataclass
class LabelledProject:
    """Everything the lab labelled that belongs to one project (or a lone resource), as found."""

    name: str
    containers: list[ContainerInfo] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    owner: str | None = None  # `host:pid` of the `lab run` driving it; None for plain compose
    run: str | None = None
    session: str | None = None  # the test session that made it, if any
    run_dir: str | None = None  # the run directory of a `lab run`


def labelled_entry(projects: dict[str, LabelledProject], key: str, labels: dict[str, str]) -> LabelledProject:
    """Project `key`'s entry in `projects` (made when new), with what one resource's labels say of
    its owner, test session, run and run directory: the first resource that says it wins."""
    from lab.labels import OWNER_LABEL, RUN_DIR_LABEL, RUN_LABEL, SESSION_LABEL

    entry = projects.setdefault(key, LabelledProject(key))
    entry.owner = entry.owner or labels.get(OWNER_LABEL)
    entry.session = entry.session or labels.get(SESSION_LABEL)
    entry.run = entry.run or labels.get(RUN_LABEL)
    entry.run_dir = entry.run_dir or labels.get(RUN_DIR_LABEL)
    return entry


@runtime_checkable
class Project(Protocol):
    """One run's containers and network, brought up and down as a whole."""

    name: str
    file: Path  # the compose-format file that describes it

    def resolved_config(self) -> str:
        """The project as the engine will run it (variables and defaults resolved), for the manifest."""

    def deploy(self) -> None:
        """Create and start everything, waiting for the health conditions between services."""

    def stop(self, grace: float = 3, talked_out: bool = False) -> None:
        """Stop every container (SIGTERM, SIGKILL after `grace` s), keeping them for their logs.
        `talked_out`: every client said its conversation is over, so the order between them and
        the hosts they talk to no longer matters."""

    def remove(self) -> None:
        """Remove every container, network and volume of the project."""


@runtime_checkable
class Engine(Protocol):
    """A container engine, as a run, `lab build` and `lab clean` use it."""

    # Whether a bind mount of this host's run directory reaches the containers (one host: yes;
    # a swarm's other nodes: no). The start barrier's files need it; without it the clients
    # start when their containers do.
    shares_host_files: bool
    # Whether it runs containers on several nodes and honours a scenario's `placement:` (a swarm);
    # one host ignores it, and the run says so.
    places_on_nodes: bool

    # ---- the engine itself
    def versions(self) -> dict[str, str | None]:
        """The engine's version and its tools' (`{"engine": ..., "compose": ...}`), for the manifest."""

    def scenario_for(self, scenario: Any) -> Any:
        """The scenario (a `lab.scenario.Scenario`; the engine reads it, never imports the model)
        as this engine runs it, checked before a run starts: UsageError naming
        what it cannot do and why (Docker runs everything; a swarm has no shared network
        namespaces, and no host bridge to capture on)."""

    # ---- a run's project and its containers
    def project(self, name: str, file: Path) -> Project:
        """The project `name` described by `file` (nothing happens until it is deployed)."""

    def containers(self, project: str) -> list[ContainerInfo]:
        """The project's containers, running or not; cheap enough to poll."""

    def container_logs(self, container_id: str) -> bytes:
        """Everything a container printed (stdout and stderr); empty once it is gone."""

    def container_output(self, container_id: str, stdout: bool = True, stderr: bool = True) -> Iterator[bytes]:
        """What the engine's log store kept of a container's output, line by line, each line
        prefixed with its timestamp (`docker logs --timestamps`); nothing once it is gone."""

    def log_limits(self, container_id: str) -> str | None:
        """How much of a container's output the log store keeps (`... max-size 10m x 3`), if capped."""

    def image_of(self, container_id: str) -> str | None:
        """The id of the image a container runs, or None once it is gone."""

    # ---- faults
    def act(self, container_id: str, action: str, network: str | None = None) -> None:
        """Fault action on a container: stop, start, kill, restart, pause, unpause, or disconnect
        from / reconnect to `network` (with the aliases it had)."""

    def act_on_node(self, node: str, action: str) -> None:
        """Fault action on a whole node (a swarm's): disconnect cuts it off the other nodes,
        reconnect puts it back. One host has no nodes (its `scenario_for` refuses such faults)."""

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        """Run a command in a running container; its exit status and output."""

    # ---- network facts
    def network_name(self, project: str) -> str:
        """The engine's name for the project's network (what `act` disconnects from)."""

    def network_subnet(self, project: str) -> str | None:
        """The subnet the engine gave the project's network, or None when it has none."""

    def used_subnets(self) -> list[str]:
        """Every subnet the engine's networks use, so a run can pick free ones."""

    # ---- the host (a routed run's scoped firewall rules, lab/hostrules.py)
    def host_firewall(self, image: str, script: str) -> tuple[int, str]:
        """Run a shell script in the host's network namespace with NET_ADMIN; its status and output."""

    # ---- images (`lab build`, the manifest)
    def image_id(self, ref: str) -> str | None:
        """The id of a local image, or None when it is not present."""

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """The labels of a local image, or None when it is not present."""

    def pull(self, ref: str) -> bool:
        """Pull an image; False (not an error) when no registry answers."""

    def tag(self, source: str, target: str) -> None:
        """Give a local image a second reference."""

    def import_image(self, tarball: Path, ref: str, changes: list[str]) -> str:
        """Import a root filesystem tarball as image `ref` with Dockerfile `changes`; its id."""

    def build_image(self, file: Path, service: str, env: dict[str, str],
                    on_line: Callable[[str], None] | None = None) -> None:
        """Build the image of one service of a compose-format file, output lines to `on_line`."""

    def prune_untagged(self, label: str) -> int:
        """Remove untagged images with this label (what rebuilds leave); how many."""

    # ---- what the lab labelled (`lab clean`, the test suite's leftover check)
    def managed_resources(self) -> dict[str, LabelledProject]:
        """Every container and network the lab labelled, by project name."""

    def remove_resources(self, entry: LabelledProject) -> list[str]:
        """Remove a project's containers, then its networks; what was removed, one line each."""
