"""The compose CLI driver: `ComposeProject(name, file)` runs `docker compose` for one project.

Bring-up and removal go through compose (it knows the health conditions and start order
between services); stopping goes through the engine's `stopper` when it has one (compose stops
every container at once), and everything else through the SDK. One wrapper runs every compose command, and its
error carries compose's own output.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import EngineError, EngineUnavailable

RELEASE_WAITS = (1, 2, 4)  # seconds between tries of removing a network whose endpoints are still leaving
STUCK = ("Docker still counts endpoints on the network though no container is attached (Docker 20.10 "
         "loses count when many containers leave at once); only a restart of the Docker daemon removes it")


def until_released(remove: Callable[[], object], errors: tuple[type[Exception], ...], what: str) -> None:
    """Run a removal again while Docker answers that a network still has endpoints (they are
    leaving), a few seconds in all; after that the network is stuck, and the error says so."""
    for wait in (*RELEASE_WAITS, None):
        try:
            remove()
            return
        except errors as exc:
            if "active endpoints" not in str(exc):
                raise
            if wait is None:
                raise EngineError(f"{what}: {exc}\n{STUCK}") from None
            time.sleep(wait)

COMPOSE_COMMAND = ("docker", "compose")


@dataclass(frozen=True)
class ComposeProject:
    """One compose project: its name (None lets compose derive it) and its file."""

    name: str | None
    file: Path
    command: tuple[str, ...] = COMPOSE_COMMAND
    # Stops the project's containers a few at a time (project name, grace seconds, whether every
    # client talked out); without it, `compose stop` stops them all at once, whatever
    # COMPOSE_PARALLEL_LIMIT says.
    stopper: Callable[[str, float, bool], None] | None = None

    def resolved_config(self) -> str:
        """The project as compose will run it (variables and defaults resolved)."""
        return self.run("config").stdout

    def deploy(self) -> None:
        """Create and start everything, waiting for the health conditions between services."""
        self.run("up", "-d", "--no-build", "--quiet-pull")

    def stop(self, grace: float = 3, talked_out: bool = False) -> None:
        """Stop every container (SIGTERM, then SIGKILL after `grace`), keeping them for their logs;
        `talked_out`: every client said its conversation is over (fewer waves are needed)."""
        if self.stopper is not None and self.name:
            self.stopper(self.name, grace, talked_out)
        else:
            self.run("stop", "-t", f"{grace:g}", timeout=180)

    def remove(self) -> None:
        """Remove every container, network and volume of the project; a network whose endpoints
        are still leaving is tried again (`until_released`). Stopped first, a few at a time, when
        there is a `stopper`: `down` would stop what still runs all at once."""
        if self.stopper is not None and self.name:
            self.stopper(self.name, 1, False)
        until_released(lambda: self.run("down", "-v", "--remove-orphans", "-t", "1", timeout=180),
                       (EngineError,), f"removing project {self.name or self.file}")

    def run(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        on_line: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `docker compose [-p NAME] -f FILE ARGS` in the file's directory; on failure raise
        with compose's own output.

        The child runs in its own session so a Ctrl-C on the terminal reaches only the lab,
        which then decides how to stop it (teardown must not be cut short).
        """
        cmd = [*self.command, *(["-p", self.name] if self.name else []), "-f", str(self.file), *args]
        env = {**os.environ, **(env or {}), "COMPOSE_ANSI": "never", "COMPOSE_PROGRESS": "plain"}
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE if capture or on_line else None,
                stderr=subprocess.STDOUT if on_line else (subprocess.PIPE if capture else None),
                text=True,
                cwd=self.file.parent,
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


def compose_version(command: tuple[str, ...] = COMPOSE_COMMAND) -> str | None:
    """Compose v2's version, or None when `docker compose` is missing or is v1."""
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = out.stdout.strip().lstrip("v")
    if out.returncode != 0 or not version or version.split(".")[0] in {"0", "1"}:
        return None
    return version


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
