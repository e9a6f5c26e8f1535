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
has no race with a client that starts after the release. Every 0.2 s: 500 waiting clients then
wake 2,500 times a second (a few percent of a core, where 50 ms cost a fifth of one while the
daemon was still creating containers), and they start within 0.2 s of each other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_SECONDS = 0.2


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
