"""The only code that talks to Docker: the compose CLI for lifecycle, the docker SDK for the rest.

Everything else in the lab asks this module; a second engine (Docker Swarm for multi-host) is
a second implementation of the same small surface, not branches elsewhere.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.compose import (
    MANAGED_LABEL,
    NETWORK,
    OWNER_LABEL,
    ROLE_LABEL,
    RUN_LABEL,
    SERVICE_LABEL,
    SESSION_LABEL,
    session_labels,
)
from lab.errors import EngineError, EngineUnavailable

PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"


def _docker_module():
    try:
        import docker
        import docker.errors
    except ImportError as exc:  # pragma: no cover - the package depends on it
        raise EngineUnavailable(f"the docker SDK for Python is not installed ({exc})") from None
    return docker


def _sdk(method):
    """Docker SDK and HTTP errors leave the engine as EngineError, naming what was being done."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        docker = _docker_module()
        import requests

        try:
            return method(self, *args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            what = method.__name__.replace("_", " ")
            raise EngineError(f"docker: {what}: {_short(exc)}") from None
    return wrapper


@dataclass
class ContainerInfo:
    """What the lab needs to know about one container of a run."""

    name: str
    service: str
    role: str
    status: str
    exit_code: int | None
    ip: str | None
    id: str
    labels: dict[str, str] = field(default_factory=dict)


class Engine:
    """Docker Engine + Compose v2 on this host."""

    def __init__(self, compose_command: list[str] | None = None) -> None:
        self._client = None
        self.compose_command = compose_command or ["docker", "compose"]
        self._aliases: dict[tuple[str, str], list[str]] = {}  # what a disconnect took away

    # ---- connection -------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            docker = _docker_module()
            try:
                client = docker.from_env(timeout=120)
                client.ping()
            except docker.errors.DockerException as exc:
                raise EngineUnavailable(f"cannot reach the Docker engine: {_short(exc)}") from None
            self._client = client
        return self._client

    def require(self) -> Engine:
        """Fail early, in one line, when the engine or Compose v2 is missing."""
        self.client  # noqa: B018 - connects and pings
        if self.compose_version() is None:
            raise EngineUnavailable("Docker Compose v2 (`docker compose`) is not available")
        return self

    def engine_version(self) -> str:
        return self.client.version().get("Version", "?")

    def compose_version(self) -> str | None:
        """Compose v2's version, or None when `docker compose` is missing or is v1."""
        if shutil.which(self.compose_command[0]) is None:
            return None
        try:
            out = subprocess.run(
                [*self.compose_command, "version", "--short"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        version = out.stdout.strip().lstrip("v")
        if out.returncode != 0 or not version or version.split(".")[0] in {"0", "1"}:
            return None
        return version

    # ---- compose lifecycle ----------------------------------------------------------------
    def compose(
        self,
        project: str | None,
        files: Iterable[Path],
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `docker compose [-p P] -f F... ARGS`; on failure raise with compose's own stderr.

        The child runs in its own session so a Ctrl-C on the terminal reaches only the lab,
        which then decides how to stop it (teardown must not be cut short).
        """
        cmd = list(self.compose_command)
        if project:
            cmd += ["-p", project]
        for f in files:
            cmd += ["-f", str(f)]
        cmd += list(args)
        env = {**os.environ, **(env or {}), "COMPOSE_ANSI": "never", "COMPOSE_PROGRESS": "plain"}
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE if capture or on_line else None,
                stderr=subprocess.STDOUT if on_line else (subprocess.PIPE if capture else None),
                text=True,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise EngineUnavailable(f"`{cmd[0]}` is not installed") from None
        try:
            if on_line is not None:
                # Lines are passed on as they come; the wait, not the reading, keeps the deadline.
                lines: list[str] = []
                reader = threading.Thread(target=_pump, args=(proc.stdout, lines, on_line), daemon=True)
                reader.start()
                proc.wait(timeout=timeout)
                reader.join(timeout=5)
                stdout, stderr = "".join(lines), ""
            else:
                stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_process(proc)
            raise EngineError(f"`{' '.join(cmd)}` did not finish within {timeout:g} s and was stopped") from None
        except BaseException:
            # Interrupted: stop the child politely, then for sure.
            _stop_process(proc)
            raise
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout or "", stderr or "")
        if check and proc.returncode != 0:
            output = (stderr or stdout or "").strip()
            tail = "\n".join(output.splitlines()[-15:])
            raise EngineError(f"`{' '.join(cmd)}` failed with exit status {proc.returncode}:\n{tail}")
        return result

    # ---- a run's project: the lifecycle the orchestrator sees ------------------------------------
    # run.py speaks only these verbs; a multi-host engine (Swarm: `docker stack deploy`) would
    # implement the same four, not add branches there.
    def resolved_config(self, project: str, file: Path) -> str:
        """The project as the engine will run it (variables and defaults resolved)."""
        return self.compose(project, [file], "config", cwd=file.parent).stdout

    def deploy(self, project: str, file: Path) -> None:
        """Create and start everything, waiting for the health conditions between services."""
        self.compose(project, [file], "up", "-d", "--no-build", "--quiet-pull", cwd=file.parent)

    def stop_project(self, project: str, file: Path, grace: float = 3) -> None:
        """Stop every container (SIGTERM, then SIGKILL after `grace`), keeping them for their logs."""
        self.compose(project, [file], "stop", "-t", f"{grace:g}", cwd=file.parent, timeout=120)

    def remove_project(self, project: str, file: Path) -> None:
        """Remove every container, network and volume of the project."""
        self.compose(project, [file], "down", "-v", "--remove-orphans", "-t", "1", cwd=file.parent, timeout=180)

    # ---- images -------------------------------------------------------------------------
    @_sdk
    def image_id(self, ref: str) -> str | None:
        docker = _docker_module()
        try:
            return self.client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return None

    def pull(self, ref: str) -> bool:
        """Try to pull an image; False (not an error) when no registry answers."""
        docker = _docker_module()
        repository, tag = _split_ref(ref)
        try:
            self.client.images.pull(repository, tag=tag)
            return True
        except docker.errors.DockerException:
            return False

    @_sdk
    def tag(self, source: str, target: str) -> None:
        repository, tag = _split_ref(target)
        self.client.images.get(source).tag(repository, tag)

    @_sdk
    def import_image(self, tarball: Path, ref: str, changes: list[str]) -> str:
        """`docker import` a root filesystem tarball as an image (the offline base)."""
        repository, tag = _split_ref(ref)
        # From a file, so the upload has a length; a chunked stream of this size is refused.
        self.client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
        image_id = self.image_id(ref)
        if image_id is None:
            raise EngineError(f"docker import of {tarball} did not produce {ref}")
        return image_id

    def prune_untagged(self, label: str) -> int:
        """Remove untagged images with this label (what rebuilds leave); returns how many."""
        docker = _docker_module()
        try:
            result = self.client.images.prune(filters={"dangling": True, "label": label})
        except docker.errors.APIError:
            return 0  # another prune is running: the next build tidies up
        return len(result.get("ImagesDeleted") or [])

    # ---- containers of a run --------------------------------------------------------------
    @_sdk
    def containers(self, label: str) -> list[ContainerInfo]:
        """Containers with a label, running or not, from one list call (no per-container inspect:
        cheap enough to poll, and a container removed meanwhile cannot make it fail)."""
        listed = self.client.api.containers(all=True, filters={"label": label})
        return [_info_from_list(entry) for entry in listed]

    def project_containers(self, project: str) -> list[ContainerInfo]:
        return self.containers(f"{PROJECT_LABEL}={project}")

    @_sdk
    def container_logs(self, container_id: str) -> bytes:
        """Everything a container printed (stdout and stderr), as collected by Docker."""
        docker = _docker_module()
        try:
            return self.client.containers.get(container_id).logs(stdout=True, stderr=True)
        except docker.errors.NotFound:
            return b""

    @_sdk
    def image_of(self, container_id: str) -> str | None:
        docker = _docker_module()
        try:
            return self.client.containers.get(container_id).attrs.get("Image")
        except docker.errors.NotFound:
            return None

    # ---- faults -----------------------------------------------------------------------------
    @_sdk
    def act(self, container_id: str, action: str, network: str | None = None) -> None:
        """Apply a fault action to a container: stop, start, kill, restart, pause, unpause,
        disconnect (from the run's network), reconnect (with the aliases it had)."""
        lifecycle = {
            "stop": lambda c: c.stop(timeout=3),
            "start": lambda c: c.start(),
            "kill": lambda c: c.kill(),
            "restart": lambda c: c.restart(timeout=3),
            "pause": lambda c: c.pause(),
            "unpause": lambda c: c.unpause(),
        }
        container = self.client.containers.get(container_id)
        if action in lifecycle:
            lifecycle[action](container)
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

    @_sdk
    def exec(self, container_id: str, command: list[str]) -> tuple[int, str]:
        result = self.client.containers.get(container_id).exec_run(command)
        return result.exit_code, result.output.decode("utf-8", "replace")

    def network_name(self, project: str) -> str:
        return f"{project}_{NETWORK}"

    @_sdk
    def network_subnet(self, project: str) -> str | None:
        docker = _docker_module()
        try:
            net = self.client.networks.get(self.network_name(project))
        except docker.errors.NotFound:
            return None
        configs = (net.attrs.get("IPAM") or {}).get("Config") or []
        return configs[0].get("Subnet") if configs else None

    @_sdk
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

    @_sdk
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

    # ---- leftovers ---------------------------------------------------------------------------
    @_sdk
    def managed_resources(self) -> dict[str, dict[str, Any]]:
        """Every container and network the lab made, grouped by compose project."""
        projects: dict[str, dict[str, Any]] = {}

        def entry_for(labels: dict[str, str], name: str) -> dict[str, Any]:
            entry = projects.setdefault(labels.get(PROJECT_LABEL) or name,
                                        {"containers": [], "networks": [], "owner": None, "run": None, "session": None})
            entry["owner"] = entry["owner"] or labels.get(OWNER_LABEL)
            entry["session"] = entry["session"] or labels.get(SESSION_LABEL)
            entry["run"] = entry["run"] or labels.get(RUN_LABEL)
            return entry

        for info in self.containers(f"{MANAGED_LABEL}=true"):
            entry_for(info.labels, info.name)["containers"].append(info)
        for n in self.client.api.networks(filters={"label": f"{MANAGED_LABEL}=true"}):
            entry_for(n.get("Labels") or {}, n["Name"])["networks"].append(n["Name"])
        return projects

    @_sdk
    def remove_resources(self, entry: dict[str, Any]) -> list[str]:
        """Remove a project's containers, then its networks; return what was removed."""
        docker = _docker_module()
        removed = []
        for info in entry["containers"]:
            try:
                self.client.api.remove_container(info.id, force=True, v=True)
                removed.append(f"container {info.name}")
            except docker.errors.NotFound:
                pass
        for name in entry["networks"]:
            try:
                self.client.networks.get(name).remove()
                removed.append(f"network {name}")
            except docker.errors.NotFound:
                pass
        return removed


def _info_from_list(entry: dict[str, Any]) -> ContainerInfo:
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


def _split_ref(ref: str) -> tuple[str, str]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); the tag defaults to latest."""
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(ref)
    return repository, tag or "latest"


def owner_alive(owner: str | None) -> bool:
    """Is the lab process that owns a run (`host:pid` label) still running on this host?"""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_token() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _pump(stream, lines: list[str], on_line: Callable[[str], None]) -> None:
    """Read a child's output to the end, whatever the callback does, so the child never blocks."""
    with stream:
        for line in stream:
            lines.append(line)
            try:
                on_line(line.rstrip("\n"))
            except Exception:  # noqa: BLE001 - a display problem must not stall the build
                pass


def _stop_process(proc: subprocess.Popen) -> None:
    """SIGINT the child's process group, give it 10 s, then SIGKILL; whatever else happens
    meanwhile (a second Ctrl-C), the child does not outlive this call."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    except BaseException:  # noqa: BLE001 - the timeout, or another interrupt: kill for sure below
        pass
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__




