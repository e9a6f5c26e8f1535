"""Suite-wide rules: Docker tests are marked by folder, and the suite must leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCKER_DIRS = ("docker", "scenarios")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(part in DOCKER_DIRS for part in Path(str(item.fspath)).parts[-3:-1]):
            item.add_marker(pytest.mark.docker)


def pytest_sessionfinish(session, exitstatus):
    """After Docker tests ran, nothing the lab labelled may remain that was not there before
    the session (a user's own runs are neither judged nor touched): a leftover fails the suite."""
    before = getattr(session.config, "_lab_projects_before", None)
    if before is None:
        return
    from lab.engine import Engine  # noqa: PLC0415

    engine = Engine()
    leftovers = {p: e for p, e in engine.managed_resources().items() if p not in before}
    if not leftovers:
        return
    removed = {p: engine.remove_resources(e) for p, e in leftovers.items()}
    text = "; ".join(f"{project}: {', '.join(what)}" for project, what in removed.items())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(f"LEFTOVERS after the test session (removed now): {text}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
