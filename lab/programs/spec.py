"""`program:` in a scenario: a learner's own program instead of the built-in echo.

    server:
      program: {path: ../examples/tutorial/fixed/tcp_server.py}
    clients:
      program: {path: ../examples/tutorial/fixed/tcp_client.py, args: [server]}
      each:
        client3: {program: {command: [sh, -c, "echo hi"]}}

`path` is a Python file, or a folder with a `main.py`, relative to the scenario file. It is
mounted read-only into the container and run with the node image's Python. `command` is a
command already in the image. Either way the lab's launcher (`python3 -m lab.learner run`)
runs it, records its output and socket calls, and the host gets a socket-table watcher.

A path may not leave the scenario's own tree (through `..` or a symlink): the folder of the
scenario file, or for a scenario inside the lab's checkout, the checkout. A scenario file
must not be able to mount arbitrary files of the machine into a container.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.errors import ScenarioError

MOUNT_DIR = "/program"


class Program(BaseModel):
    """A program to run instead of the lab's echo server or client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(default=None, description="a Python file or a folder with main.py")
    command: list[str] | None = Field(default=None, description="a command already in the image")
    args: list[str] = []
    stdin: str | None = None
    output_limit: Annotated[int, Field(ge=1024, le=1 << 30)] = 1 << 20

    @model_validator(mode="after")
    def _one_source(self) -> Program:
        if (self.path is None) == (self.command is None):
            raise ValueError("give either path (a Python file or a folder with main.py) or command, not both")
        if self.command is not None and not self.command:
            raise ValueError("command must name a program, e.g. [python3, -c, 'print(1)']")
        return self

    def mount_target(self) -> str:
        """Where the program's file or folder appears inside the container."""
        return f"{MOUNT_DIR}/{Path(self.path or '').name}"

    def launcher_command(self) -> list[str]:
        command = ["python3", "-m", "lab.learner", "run", "--output-limit", str(self.output_limit)]
        if self.stdin is not None:
            command += ["--stdin", self.stdin]
        target = [self.mount_target()] if self.path else list(self.command or [])
        return [*command, "--", *target, *self.args]


def program_root(scenario_file: Path, home: Path | None) -> Path:
    """The tree a scenario's programs must stay in: the checkout for a scenario inside it,
    else the scenario file's own folder."""
    folder = scenario_file.resolve().parent
    if home is not None:
        home = home.resolve()
        if folder == home or home in folder.parents:
            return home
    return folder


def resolve_program_paths(data: dict[str, Any], scenario_file: Path, home: Path | None) -> None:
    """Check every `program.path` of a scenario's raw data and make it absolute, in place.

    Raises ScenarioError naming the file and the field for a path that does not exist, is not
    readable, is a folder without main.py, or leaves the scenario's tree."""
    root = program_root(scenario_file, home)
    for field, program in _programs(data):
        if not isinstance(program, dict) or not isinstance(program.get("path"), str):
            continue  # the model reports what is wrong with it
        given = program["path"]
        where = f"{scenario_file}: {field}.path"
        raw = Path(given)
        candidate = raw if raw.is_absolute() else scenario_file.resolve().parent / raw
        real = candidate.resolve()
        if not candidate.exists() and not candidate.is_symlink():
            raise ScenarioError(f"{where}: {given!r} does not exist (paths are relative to the scenario file)")
        if real != root and root not in real.parents:
            how = "a symlink" if any(p.is_symlink() for p in [candidate, *candidate.parents]) else "`..`"
            raise ScenarioError(f"{where}: {given!r} leads outside {root} (through {how}); "
                                f"keep programs inside the scenario's folder")
        if real.is_dir():
            real = real / "main.py"
            if not real.is_file():
                raise ScenarioError(f"{where}: {given!r} is a folder without main.py")
            real = real.parent
        elif real.suffix != ".py":
            raise ScenarioError(f"{where}: {given!r} is not a Python file (.py) or a folder with main.py; "
                                f"use `command:` for other programs")
        unreadable = _unreadable_by_containers(real)
        if unreadable:
            raise ScenarioError(f"{where}: {unreadable} is not readable by the lab's containers (they run as an "
                                f"unprivileged user): `chmod o+r` it (and o+x on its folders)")
        program["path"] = str(real)


def _unreadable_by_containers(path: Path) -> Path | None:
    """The first file (or folder) in a program that others may not read: the containers run as
    uid 10001, not as the user who wrote the scenario (checked by mode bits, so it holds when
    the lab itself runs as root)."""
    files = [path] if path.is_file() else [path, *sorted(path.rglob("*"))]
    for item in files:
        mode = item.stat().st_mode
        if not mode & stat.S_IROTH or (item.is_dir() and not mode & stat.S_IXOTH):
            return item
    return None


def _programs(data: dict[str, Any]):
    """(field path, program mapping) for every `program:` in a scenario's raw data."""
    server = data.get("server")
    if isinstance(server, dict) and "program" in server:
        yield "server.program", server["program"]
    clients = data.get("clients")
    if isinstance(clients, dict):
        if "program" in clients:
            yield "clients.program", clients["program"]
        each = clients.get("each")
        if isinstance(each, dict):
            for name, override in each.items():
                if isinstance(override, dict) and "program" in override:
                    yield f"clients.each.{name}.program", override["program"]
