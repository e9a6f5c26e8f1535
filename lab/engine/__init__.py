"""The only code that talks to Docker: the compose CLI for a project's lifecycle, the docker SDK
for the rest.

- `interface.py`: `Engine` and `Project`, the Protocols every caller speaks, and the plain data
  they return (`ContainerInfo`, `LabelledProject`).
- `docker_engine.py`: `DockerEngine`, this host's Docker Engine with Compose v2, made of
  `compose_cli.py` (`ComposeProject(name, file)`: runs `docker compose`), `containers.py`
  (containers and networks through the SDK), `images.py` and `resources.py` (what the lab
  labelled, for `lab clean`).

A second engine (Docker Swarm for multi-host) is a second implementation of `Engine`, not
branches in its callers.
"""

from lab.engine.compose_cli import ComposeProject
from lab.engine.docker_engine import DockerEngine
from lab.engine.interface import ContainerInfo, Engine, LabelledProject, Project
from lab.engine.resources import owner_alive, owner_token

__all__ = ["ComposeProject", "ContainerInfo", "DockerEngine", "Engine", "LabelledProject", "Project",
           "owner_alive", "owner_token"]
