"""`lab clean`: find what crashed runs left behind (by label) and remove it."""

from __future__ import annotations

from lab.engine import Engine, owner_alive


def clean(engine: Engine | None = None, include_live: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """Remove every lab-labelled container and network whose `lab run` is gone.

    A run still driven by a living `lab` process on this host is kept unless `include_live`.
    Plain-compose projects (no owner) count as left behind only when none of their containers
    is running. Returns (removed per project, projects kept).
    """
    engine = engine or Engine()
    engine.client  # noqa: B018 - only the engine is needed here, not Compose
    removed: dict[str, list[str]] = {}
    kept: list[str] = []
    for project, entry in sorted(engine.managed_resources().items()):
        live = owner_alive(entry["owner"]) or (
            entry["owner"] is None and any(c.status in ("running", "restarting") for c in entry["containers"])
        )
        if live and not include_live:
            kept.append(project)
            continue
        what = engine.remove_resources(entry)
        if what:
            removed[project] = what
    return removed, kept
