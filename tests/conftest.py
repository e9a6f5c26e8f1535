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
    """After Docker tests ran, nothing labelled by the lab may remain: a leftover fails the suite."""
    if not getattr(session.config, "_lab_docker_used", False):
        return
    from lab.cleanup import clean  # noqa: PLC0415

    removed, kept = clean(include_live=True)
    if removed or kept:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "; ".join(f"{project}: {', '.join(what)}" for project, what in removed.items())
        if reporter:
            reporter.write_line(f"LEFTOVERS after the test session (removed now): {text}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
