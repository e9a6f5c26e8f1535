"""A run whose `lab run` was killed (kill -9, a crash) keeps its records: `lab clean` salvages it.

The abandoned run's containers still hold what its programs printed, and its run directory
still has each program's records file. Before they are removed, the containers are stopped
(so every program writes its summary), their records are collected into the run's own directory
as a finished run's would be, and its manifest, left at `running` by the dead process, becomes
`abandoned`. The fault records of the dead process are gone with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.collect import collect_run
from lab.engine import Engine, LabelledProject
from lab.errors import LabError
from lab.logs import EventFile, conversations_csv, join_views
from lab.records.schema import utc_timestamp
from lab.run import write_json, write_text
from lab.streams import problems


def abandoned_run(entry: LabelledProject) -> Path | None:
    """The run directory of a project whose manifest still says `running`, if it has one."""
    if not entry.run_dir:
        return None
    manifest = Path(entry.run_dir) / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest.parent if isinstance(data, dict) and data.get("verdict") == "running" else None


def salvage(engine: Engine, project: str, entry: LabelledProject, directory: Path) -> str:
    """Stop the project's containers, collect their records into `directory`, mark it abandoned;
    returns one line saying what was kept. The caller removes the containers afterwards."""
    errors: list[str] = []
    compose_file = directory / "compose.yaml"
    try:
        engine.project(project, compose_file).stop()
    except (LabError, OSError) as exc:
        errors.append(f"stop: {exc}")
    containers = engine.containers(project) or entry.containers
    checks = collect_run(engine, containers, directory, [], errors)
    events = EventFile(directory / "events.jsonl")
    write_text(directory / "clients.csv", conversations_csv(join_views(events)))
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    lost = problems(c for c in checks.values() if c.missing)
    manifest.update(
        ended=utc_timestamp(),
        verdict="abandoned",
        error="; ".join(["its `lab run` died before the end", *(["records lost: " + "; ".join(lost)] if lost else []),
                         *errors]),
        containers={c.name: {"service": c.service, "role": c.role, "ip": c.ip, "exit_code": c.exit_code}
                    for c in containers},
        streams={name: check.summary() for name, check in checks.items()},
    )
    write_json(manifest_path, manifest)
    records = sum(c.records for c in checks.values())
    return f"salvaged {directory.name}: {records} records of {len(checks)} containers into {directory}"
