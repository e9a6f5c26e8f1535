"""What the lab labelled, found and removed by label (`lab clean`, the suite's leftover check),
and the `host:pid` owner token that tells a crashed run's leftovers from a living run."""

from __future__ import annotations

import os

from lab.engine.compose_cli import until_released
from lab.engine.connection import DockerConnection, docker_module, sdk_call
from lab.engine.containers import PROJECT_LABEL, info_from_list
from lab.engine.interface import LabelledProject, labelled_entry
from lab.labels import MANAGED_LABEL


class LabelledResources(DockerConnection):
    """The leftovers side of `Engine`."""

    @sdk_call
    def managed_resources(self) -> dict[str, LabelledProject]:
        """Every container and network the lab made, grouped by compose project."""
        projects: dict[str, LabelledProject] = {}

        def entry_for(labels: dict[str, str], name: str) -> LabelledProject:
            return labelled_entry(projects, labels.get(PROJECT_LABEL) or name, labels)

        for row in self.client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=true"}):
            info = info_from_list(row)
            entry_for(info.labels, info.name).containers.append(info)
        for n in self.client.api.networks(filters={"label": f"{MANAGED_LABEL}=true"}):
            entry_for(n.get("Labels") or {}, n["Name"]).networks.append(n["Name"])
        return projects

    @sdk_call
    def remove_resources(self, entry: LabelledProject) -> list[str]:
        """Remove a project's containers, then its networks; return what was removed."""
        docker = docker_module()
        removed = []
        for info in entry.containers:
            try:
                self.client.api.remove_container(info.id, force=True, v=True)
                removed.append(f"container {info.name}")
            except docker.errors.NotFound:
                pass
        for name in entry.networks:
            def remove_network(name: str = name) -> None:
                try:
                    self.client.networks.get(name).remove()
                    removed.append(f"network {name}")
                except docker.errors.NotFound:
                    pass

            until_released(remove_network, (docker.errors.APIError,), f"network {name}")
        return removed


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
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A process that has exited and only waits for its parent to reap it is dead too."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # `pid (command) state ...`: the command may hold spaces and parentheses.
            return fh.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def owner_token() -> str:
    """This process as a run's owner: `host:pid`."""
    return f"{os.uname().nodename}:{os.getpid()}"
