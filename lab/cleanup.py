"""`lab clean`: find what crashed runs left behind (by label, and the host rules by their
comment), salvage the records of a run whose `lab run` was killed, and remove it."""

from __future__ import annotations

import os
from typing import NamedTuple

from lab.compose import node_image
from lab.engine import DockerEngine, Engine, owner_alive
from lab.errors import LabError
from lab.hostrules import CHAIN, remove_stale
from lab.salvage import abandoned_run, salvage


class CleanResult(NamedTuple):
    removed: dict[str, list[str]]  # what was removed, per project
    kept: list[str]  # projects whose run is still going
    salvaged: list[str]  # one line per abandoned run whose records were collected
    failed: dict[str, str]  # projects that could not be cleaned, and why


def clean(engine: Engine | None = None, include_live: bool = False) -> CleanResult:
    """Remove every lab-labelled container and network whose `lab run` is gone, after salvaging
    the records of a run that was abandoned (its manifest still says `running`).

    A run still driven by a living `lab` process on this host is kept unless `include_live`.
    Plain-compose projects (no owner) count as left behind only when none of their containers
    is running. With `$LAB_SESSION` set (a test session) only that session's resources are
    considered: parallel suites share one engine, and another sandbox's living run can look
    ownerless from here. One project that cannot be cleaned does not stop the others.
    """
    engine = engine or DockerEngine()  # only the engine is needed here, not Compose
    session = os.environ.get("LAB_SESSION")
    removed: dict[str, list[str]] = {}
    kept: list[str] = []
    salvaged: list[str] = []
    failed: dict[str, str] = {}
    for project, entry in sorted(engine.managed_resources().items()):
        if session and entry.session != session:
            continue
        live = owner_alive(entry.owner) or (
            entry.owner is None and any(c.status in ("running", "restarting") for c in entry.containers)
        )
        if live and not include_live:
            kept.append(project)
            continue
        try:
            directory = None if live else abandoned_run(entry)
            if directory is not None:
                salvaged.append(salvage(engine, project, entry, directory))
            what = engine.remove_resources(entry)
        except LabError as exc:
            # One stuck network (Docker's stale endpoints, another cleaner racing this one) must
            # not stop the rest; it is said, and the exit status says it too.
            failed[project] = str(exc)
            continue
        if what:
            removed[project] = what
    # A routed run's DOCKER-USER rules, kept while its `lab run` lives (as its containers are).
    def keep_rules(mark) -> bool:
        return bool(session and mark.session != session) or (owner_alive(mark.owner) and not include_live)

    try:
        rules = remove_stale(engine, node_image(), keep_rules)
    except LabError as exc:
        rules = [f"nothing: cannot read the host's {CHAIN} chain ({exc})"]
    if rules:
        removed["host rules"] = rules
    return CleanResult(removed, kept, salvaged, failed)
