"""`lab clean`: find what crashed runs left behind (by label, and the host rules by their
comment) and remove it."""

from __future__ import annotations

import os

from lab.compose import node_image
from lab.engine import DockerEngine, Engine, owner_alive
from lab.errors import LabError
from lab.hostrules import CHAIN, remove_stale


def clean(engine: Engine | None = None, include_live: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """Remove every lab-labelled container and network whose `lab run` is gone.

    A run still driven by a living `lab` process on this host is kept unless `include_live`.
    Plain-compose projects (no owner) count as left behind only when none of their containers
    is running. With `$LAB_SESSION` set (a test session) only that session's resources are
    considered: parallel suites share one engine, and another sandbox's living run can look
    ownerless from here. Returns (removed per project, projects kept).
    """
    engine = engine or DockerEngine()  # only the engine is needed here, not Compose
    session = os.environ.get("LAB_SESSION")
    removed: dict[str, list[str]] = {}
    kept: list[str] = []
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
            what = engine.remove_resources(entry)
        except LabError as exc:  # one stuck network (Docker's stale endpoints) must not stop the rest
            what = [f"not everything: {exc}"]
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
    return removed, kept
