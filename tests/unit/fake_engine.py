"""An in-memory `Engine` for fast tests of a run's logic: no Docker, containers as plain data.

Deploying a project reads the compose file the run rendered and "creates" one container per
service, with the roles from its labels; each client at once writes its ready file, as the echo
client does once it waits at the start barrier, and so does each service whose readiness the lab
watches (unless `not_ready` holds it back). Each poll of `containers` is a tick: a client exits
(with its scripted status) once it has been polled `ticks_to_finish` times. Fault actions change
the containers' states the way Docker would. `on[method]` runs before that method does, once, so
a test can make any step fail or deliver a Ctrl-C exactly there; `calls` records what was done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.compose import READY_MOUNT
from lab.engine import ContainerInfo, LabelledProject
from lab.errors import EngineError
from lab.labels import ROLE_LABEL, SERVICE_LABEL
from lab.readiness import UP_FILE, UP_MOUNT

# What each fault action leaves a container as: (status, exit code).
AFTER_ACTION = {"stop": ("exited", 143), "kill": ("exited", 137), "start": ("running", None),
                "restart": ("running", None), "pause": ("paused", None), "unpause": ("running", None)}


@dataclass
class FakeProject:
    """A project of the fake engine: its lifecycle calls land in the engine's state."""

    name: str
    file: Path
    engine: FakeEngine

    def resolved_config(self) -> str:
        self.engine.call("resolved_config")
        return self.file.read_text()

    def deploy(self) -> None:
        self.engine.call("deploy")
        services = yaml.safe_load(self.file.read_text())["services"]
        for number, (service, spec) in enumerate(services.items(), start=2):
            labels = spec.get("labels") or {}
            self.engine.running[f"{self.name}-{service}-1"] = ContainerInfo(
                name=f"{self.name}-{service}-1", service=labels.get(SERVICE_LABEL, service),
                role=labels.get(ROLE_LABEL, ""), status="running", exit_code=None,
                ip=self.engine.ips.get(service, f"10.99.0.{number}"), id=f"id-{service}", labels=labels)
            for volume in spec.get("volumes") or []:
                if isinstance(volume, dict) and volume.get("target") == READY_MOUNT:
                    Path(volume["source"]).write_text("waiting\n")
                    self.engine.ready_files[service] = Path(volume["source"])
                if isinstance(volume, dict) and volume.get("target") == UP_MOUNT:
                    assert UP_FILE in spec["command"] and "healthcheck" not in spec
                    if service not in self.engine.not_ready:
                        (Path(volume["source"]) / "ready").write_text("ready\n")
                    elif self.engine.not_ready[service] is not None:
                        info = self.engine.running[f"{self.name}-{service}-1"]
                        info.status, info.exit_code = "exited", self.engine.not_ready[service]

    def stop(self, grace: float = 3, talked_out: bool = False) -> None:
        self.engine.call("stop")
        self.engine.talked_out = talked_out
        for info in self.engine.running.values():
            if info.status != "exited":
                info.status, info.exit_code, info.ip = "exited", self.engine.stop_code, None

    def remove(self) -> None:
        self.engine.call("remove")
        self.engine.running.clear()


@dataclass
class FakeEngine:
    """Satisfies `lab.engine.Engine` in memory."""

    shares_host_files = True
    places_on_nodes = False

    outputs: dict[str, str] = field(default_factory=dict)  # what each service printed
    ips: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)  # a client's status when it ends (default 0)
    ticks_to_finish: int | None = 2  # None: the clients never end
    stay: bool = False  # clients behind the barrier write `done N` and stay up, as the echo client does
    stop_code: int = 143  # what a container still running exits with when the project is stopped
    ready_files: dict[str, Path] = field(default_factory=dict)  # by client service
    # Watched services that never get ready: each exits with the code given, or (None) hangs.
    not_ready: dict[str, int | None] = field(default_factory=dict)
    on: dict[str, Callable[[], None]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    running: dict[str, ContainerInfo] = field(default_factory=dict)  # by container name
    images: dict[str, str] = field(default_factory=lambda: {"socketlab/node:latest": "sha256:fake"})
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # by image reference
    builds: list[dict[str, str]] = field(default_factory=list)  # the environment of each build
    ticks: int = 0
    talked_out: bool | None = None  # what the last stop was told

    def call(self, what: str) -> None:
        self.calls.append(what)
        hook = self.on.pop(what, None)
        if hook is not None:
            hook()

    def versions(self) -> dict[str, str | None]:
        return {"engine": "fake", "compose": None}

    def scenario_for(self, scenario):
        self.call("scenario_for")
        return scenario

    def project(self, name: str, file: Path) -> FakeProject:
        return FakeProject(name, file, self)

    def containers(self, project: str) -> list[ContainerInfo]:
        self.call("containers")
        self.ticks += 1
        for info in self.running.values():
            if info.role == "client" and info.status == "running" and self.ticks_to_finish is not None \
                    and self.ticks >= self.ticks_to_finish:
                if self.stay and info.service in self.ready_files:
                    self.ready_files[info.service].write_text(f"done {self.exit_codes.get(info.service, 0)}\n")
                else:
                    info.status, info.exit_code = "exited", self.exit_codes.get(info.service, 0)
        return [ContainerInfo(**vars(info)) for info in self.running.values() if info.name.startswith(project)]

    def container_logs(self, container_id: str) -> bytes:
        self.call("container_logs")
        return self.outputs.get(self._by_id(container_id).service, "").encode()

    def container_output(self, container_id: str, stdout: bool = True, stderr: bool = True):
        self.call("container_output")
        stamp = "2026-11-25T10:00:00.000000000Z"
        for line in self.outputs.get(self._by_id(container_id).service, "").splitlines():
            yield f"{stamp} {line}\n".encode()

    def log_limits(self, container_id: str) -> str | None:
        return None

    def image_of(self, container_id: str) -> str | None:
        return "sha256:fake"

    def act(self, container_id: str, action: str, network: str | None = None) -> None:
        self.call(f"act {action}")
        info = self._by_id(container_id)
        if action in AFTER_ACTION:
            info.status, info.exit_code = AFTER_ACTION[action]
        elif action in ("disconnect", "reconnect"):
            info.ip = None if action == "disconnect" else self.ips.get(info.service)
        else:
            raise EngineError(f"unknown fault action {action!r}")

    def act_on_node(self, node: str, action: str) -> None:
        self.call(f"act {action} {node}")

    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        self.call("exec")
        return 0, ""

    def network_name(self, project: str) -> str:
        return f"{project}_lab"

    def network_subnet(self, project: str) -> str | None:
        return "10.99.0.0/24"

    def used_subnets(self) -> list[str]:
        return ["10.99.0.0/24"]

    def host_firewall(self, image: str, script: str) -> tuple[int, str]:
        self.call("host_firewall")
        return 0, ""

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref)

    def image_labels(self, ref: str) -> dict[str, str] | None:
        return dict(self.labels.get(ref, {})) if ref in self.images else None

    def pull(self, ref: str) -> bool:
        return False

    def tag(self, source: str, target: str) -> None:
        self.images[target] = self.images[source]

    def import_image(self, tarball: Path, ref: str, changes: list[str]) -> str:
        self.images[ref] = f"sha256:{len(self.images)}"
        return self.images[ref]

    def build_image(self, file: Path, service: str, env: dict[str, str],
                    on_line: Callable[[str], None] | None = None) -> None:
        self.call("build_image")
        self.builds.append(dict(env))
        ref = env.get("LAB_NODE_IMAGE", "socketlab/node:latest")
        self.images[ref] = f"sha256:built{len(self.builds)}"
        self.labels[ref] = {"io.socketlab.context": env.get("LAB_CONTEXT_DIGEST", "")}

    def prune_untagged(self, label: str) -> int:
        return 0

    def managed_resources(self) -> dict[str, LabelledProject]:
        projects: dict[str, LabelledProject] = {}
        for info in self.running.values():
            name = info.name.rsplit("-", 2)[0]
            projects.setdefault(name, LabelledProject(name)).containers.append(info)
        return projects

    def remove_resources(self, entry: LabelledProject) -> list[str]:
        for info in entry.containers:
            self.running.pop(info.name, None)
        return [f"container {info.name}" for info in entry.containers]

    def _by_id(self, container_id: str) -> ContainerInfo:
        info = next((c for c in self.running.values() if c.id == container_id), None)
        if info is None:
            raise EngineError(f"no such container: {container_id}")
        return info
