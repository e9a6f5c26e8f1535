"""The start barrier: a client holds its first message until every host of the run is up.

Bringing up hundreds of containers takes minutes on a small machine. A client that starts
talking as soon as its own container runs competes for the CPU with the creation of the
others, and its round-trip times measure the bring-up, not the network. So the orchestrator
gives each client a read-only control directory and creates a file there (`go`) once every
container is running; the client, already started up (its imports paid), waits for that file
before its first message. A deadline keeps a client whose orchestrator died from waiting
forever. Without `--start-file` (plain `docker compose`) there is no barrier.

The same files hold the clients at the other end. When hundreds of containers exit at once,
Docker 20.10 can lose count of a network's endpoints and then refuse to remove the network
("has active endpoints" with none attached) until the daemon restarts. So a client behind the
barrier, once its conversation is over, writes its exit status into its ready file (`done N`)
and stays until the orchestrator stops it (SIGTERM, a few containers at a time) or a leave file
appears (`--leave-file`, which a benchmark of bare compose creates up front), at most the same
deadline.

A container that runs is not yet a client that waits: under load, Python takes seconds to
start in the last containers created. So each client also writes its own ready file (a file of
its own, mounted writable) once it waits, and the orchestrator releases only when every client
has, so none of them is still starting up when the others talk.

A file polled rather than a socket or a FIFO: it needs nothing from the network under test and
has no race with a client that starts after the release. How often is set by the orchestrator
for the size of the run (`poll_interval`): all the waiting clients together wake about 2,500
times a second, a few percent of a core (when 500 clients looked every 50 ms, that cost a fifth
of one while the daemon was still creating containers). So 500 clients look every 0.2 s, and
three every 20 ms: a small run starts talking as soon as it is released.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_SECONDS = 0.2  # the slowest look, for the largest runs and when the orchestrator does not say
FASTEST_POLL_SECONDS = 0.02
WAKEUPS_PER_SECOND = 2500  # all the waiting clients together


def poll_interval(waiting: int) -> float:
    """How often each of `waiting` clients looks for the start file: together about
    `WAKEUPS_PER_SECOND` looks, within 20 ms to 0.2 s each."""
    return min(POLL_SECONDS, max(FASTEST_POLL_SECONDS, waiting / WAKEUPS_PER_SECOND))


def mark_ready(path: str) -> None:
    """Say this client waits at the barrier (the orchestrator sees the file is no longer empty)."""
    with open(path, "w", encoding="utf-8") as ready:
        ready.write("waiting\n")


def mark_done(path: str, status: int) -> None:
    """Say this client's conversation is over and how it ended: the orchestrator counts it done
    without waiting for its container to exit."""
    with open(path, "w", encoding="utf-8") as ready:
        ready.write(f"done {status}\n")


def read_done(text: str) -> int | None:
    """The exit status a ready file's text says the client ended with, or None (still waiting or
    talking: `waiting`, empty, or half written)."""
    words = text.split()
    if len(words) == 2 and words[0] == "done" and words[1].lstrip("-").isdigit():
        return int(words[1])
    return None


class BarrierTimeout(Exception):
    """The start file did not appear before the deadline."""


def wait_for_start(
    path: str,
    deadline: float,
    stopped: Callable[[], bool] = lambda: False,
    *,
    poll: float = POLL_SECONDS,
    exists: Callable[[str], bool] = os.path.exists,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Block until `path` exists (True) or `stopped()` says the program is stopping (False).

    Raises BarrierTimeout when `deadline` seconds pass first."""
    give_up = clock() + deadline
    while not exists(path):
        if stopped():
            return False
        left = give_up - clock()
        if left <= 0:
            raise BarrierTimeout(f"the start signal {path} did not come within {deadline:g} s")
        sleep(min(poll, left))
    return True
