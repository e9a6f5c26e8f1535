"""A run's phases and the start barrier between bring-up and conversation.

Bring-up (creating and starting every container, and every client program starting up) and
the conversation (the clients talking) are timed apart, and the clients talk only once all of
them are up: each client writes its own ready file once it waits, and when every client has
(or has exited), the orchestrator releases them by creating the start file in the run's control
directory, which each client has mounted read-only (`lab/echo/barrier.py` is the waiting side). The phase times go into
the manifest and the terminal report, so a slow run says where its time went.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.compose import CONTROL_MOUNT, LEAVE_FILE, START_FILE
from lab.echo.barrier import poll_interval, read_done

# Teardown is reported as one phase made of these.
TEARDOWN = ("stopping", "removal")
REPORTED = ("bring_up", "conversation", "collection", "teardown")


GONE_SECONDS = 2.0  # how often the daemon is asked which clients exited (costly with hundreds)


def control_directory(run_directory: Path, clients: Iterable[str] = ()) -> Path:
    """The run's control directory, with an empty ready file per client: clients read the
    directory (never write it) and write only their own ready file."""
    control = run_directory / "control"
    ready = control / "ready"
    ready.mkdir(parents=True, exist_ok=True)
    for directory in (control, ready):
        os.chmod(directory, 0o755)  # readable by the containers' non-root user, whatever the umask
    for name in clients:
        path = ready / name
        path.touch()
        os.chmod(path, 0o666)  # the client's user is not ours: it may write this one file
    return control


def up_directory(control: Path) -> Path:
    """Where the services whose readiness the lab watches write their ready files, one
    directory each (lab/readiness.py)."""
    return control / "up"


def ready_directories(control: Path, services: Iterable[str]) -> None:
    """Create each watched service's ready directory, writable by its program whatever uid it
    runs as (uid 10001, or a root without CAP_DAC_OVERRIDE)."""
    for name in services:
        path = up_directory(control) / name
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)


def await_ready(
    control: Path,
    clients: Iterable[str],
    gone: Callable[[], set[str]],
    deadline: float,
    *,
    services: Iterable[str] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> set[str]:
    """Wait until every client has written its ready file or exited, and every watched service
    (`services`) has written its own, at most `deadline` seconds; `gone()` names the services
    whose container stopped. Returns what is still not ready then: the clients, or at once the
    services that stopped before they were ready (the clients cannot be released without them)."""
    waiting = set(clients)
    helpers = set(services)
    give_up = clock() + deadline
    asked = None
    while waiting or helpers:
        waiting = {name for name in waiting if _empty(control / "ready" / name)}
        helpers = {name for name in helpers if not (up_directory(control) / name / "ready").exists()}
        now = clock()
        if (waiting or helpers) and (asked is None or now - asked >= GONE_SECONDS):
            stopped = gone()
            if helpers & stopped:
                return helpers & stopped
            waiting -= stopped
            asked = now
        if not (waiting or helpers) or now >= give_up:
            break
        # As often as the clients look for the start file, for as many files: a few lookups in a
        # small run every 20 ms, so the release follows the last ready file closely.
        sleep(min(poll_interval(len(waiting) + len(helpers)), give_up - now))
    return waiting | helpers


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def finished(control: Path, clients: Iterable[str]) -> dict[str, int]:
    """The clients whose ready file says their conversation is over, each with the exit status
    it reports. Such a client stays up until the teardown stops it, so that hundreds of
    containers never leave the network at once (lab/echo/barrier.py)."""
    done = {}
    for name in clients:
        try:
            status = read_done((control / "ready" / name).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if status is not None:
            done[name] = status
    return done


def forget_done(control: Path, client: str) -> None:
    """A client about to start again (a fault's start or restart) has not finished its new
    conversation: its ready file is emptied until the new one says where it is."""
    (control / "ready" / client).write_text("", encoding="utf-8")


def release_start(control: Path, now: Callable[[], str]) -> str:
    """Open the barrier: every waiting client starts its conversation (the file appears whole).
    Returns the time of the release, as records carry it."""
    released = now()
    _signal(control, START_FILE, released)
    return released


def let_go(control: Path, now: Callable[[], str]) -> None:
    """Let every client leave by itself once it has talked, instead of staying until the
    teardown stops it: for runs whose containers are kept, and for bare compose benchmarks."""
    _signal(control, LEAVE_FILE, now())


def _signal(control: Path, mounted: str, text: str) -> None:
    """Create a file of the control directory, whole, readable by the clients."""
    name = Path(mounted).relative_to(CONTROL_MOUNT)
    tmp = control / f".{name}.tmp"
    tmp.write_text(text + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    tmp.replace(control / name)


def last_client_record(records: Iterable[dict[str, Any]], released: str) -> float | None:
    """Seconds from the release to the clients' last record: how long they talked. The
    conversation phase also holds the daemon's reaping of the exited containers, which takes
    a while when hundreds exit together."""
    last = max((r["ts"] for r in records if r.get("role") == "client" and isinstance(r.get("ts"), str)),
               default=None)
    if last is None:
        return None
    return round(_seconds(last) - _seconds(released), 3)


def _seconds(ts: str) -> float:
    return _dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class Phases:
    """Wall-clock seconds of each named phase of a run, in the order they happened."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, dict[str, Any]] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a phase, even when it fails or is interrupted; the yielded dict takes notes
        (what the phase did: containers started, records collected)."""
        notes: dict[str, Any] = {}
        start = self.clock()
        try:
            yield notes
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - start
            if notes:
                self.notes.setdefault(name, {}).update(notes)

    def note(self, name: str, **notes: Any) -> None:
        """Add what a phase did, learnt after it ended."""
        self.notes.setdefault(name, {}).update(notes)

    def reported(self) -> dict[str, float]:
        """The four phases a user reads: bring-up, conversation, collection, teardown (stop and
        removal together); a phase that never ran is left out."""
        merged = dict(self.seconds)
        parts = [merged.pop(name) for name in TEARDOWN if name in merged]
        if parts:
            merged["teardown"] = sum(parts)
        return {name: round(merged[name], 3) for name in REPORTED if name in merged}

    def manifest(self) -> dict[str, Any]:
        """Phases for the manifest: every phase with its seconds and notes, and the reported four."""
        detail = {name: {"seconds": round(s, 3), **self.notes.get(name, {})} for name, s in self.seconds.items()}
        return {"reported": self.reported(), "detail": detail}

    def summary(self) -> str:
        """One line for the terminal: `bring-up 12.1 s (51 containers, 0.24 s each) · conversation 3.2 s ...`."""
        parts = []
        for name, seconds in self.reported().items():
            text = f"{name.replace('_', '-')} {seconds:.1f} s"
            containers = self.notes.get(name, {}).get("containers")
            if name == "bring_up" and containers:
                text += f" ({containers} containers, {seconds / containers:.2f} s each)"
            talked = self.notes.get(name, {}).get("clients_talked")
            if name == "conversation" and talked is not None:
                text += f" (the clients talked for {talked:.1f} s)"
            parts.append(text)
        return " · ".join(parts)
