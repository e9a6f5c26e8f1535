"""Suite-wide rules: Docker tests are marked by folder, and the suite must leave nothing behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# Headless Chromium for the tests that open reports (one browser for the whole session).
from tests.chromium import chromium, open_page  # noqa: F401 (fixtures)

# Everything this session's runs create carries this label (lab/labels.py session_labels), so
# the leftover check below judges this session alone: a parallel suite on the same engine
# (another checkout, a CI job) is neither blamed nor cleaned up.
os.environ.setdefault("LAB_SESSION", uuid.uuid4().hex[:12])

DOCKER_DIRS = ("docker", "scenarios")


def pytest_configure(config):
    """Under pytest-xdist each worker is a session of its own: its own label, so one worker's
    leftover check at its end never takes another worker's running projects for leftovers."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker and not os.environ["LAB_SESSION"].endswith(f"-{worker}"):
        os.environ["LAB_SESSION"] = f"{os.environ['LAB_SESSION']}-{worker}"


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
    from lab.errors import LabError

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        removed = _remove_leftovers(before, os.environ["LAB_SESSION"])
    except LabError as exc:
        # An engine too busy to answer is a failure said in one line, not a traceback that
        # hides the session's own summary (pytest prints it after this hook).
        removed = {"leftover check": [f"could not ask the engine: {exc}"]}
    if not removed:
        return
    text = "; ".join(f"{project}: {', '.join(what)}" for project, what in removed.items())
    if reporter:
        reporter.write_line(f"LEFTOVERS after the test session (removed now): {text}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _remove_leftovers(before: set[str], label: str) -> dict[str, list[str]]:
    """What this session left behind, removed now: {project or cluster: what was removed}."""
    from lab.engine import DockerEngine
    from lab.engine.swarm.cluster import Cluster, clusters_of_session
    from lab.errors import LabError

    engine = DockerEngine()
    leftovers = {p: e for p, e in engine.managed_resources().items()
                 if p not in before and e.session == label}
    removed = {}
    for project, entry in leftovers.items():
        try:
            removed[project] = engine.remove_resources(entry)
        except LabError as exc:  # still a leftover, and said as one
            removed[project] = [f"NOT removed: {exc}"]
    removed.update(_leftover_host_rules(engine, label))
    # A `lab cluster` of this session (its nodes, their volumes, its network) is a leftover too;
    # the swarm objects of its runs live inside its nodes and go with them.
    removed.update({f"cluster {name}": Cluster(name).down(progress=lambda _m: None)
                    for name in clusters_of_session(label)})
    return removed


def _leftover_host_rules(engine, session: str) -> dict[str, list[str]]:
    """The session's DOCKER-USER rules still on the host (a routed run must remove its own)."""
    from lab.compose import node_image
    from lab.hostrules import remove_stale

    if engine.image_id(node_image()) is None:
        return {}
    what = remove_stale(engine, node_image(), lambda mark: mark.session != session)
    return {"host rules": what} if what else {}


@pytest.fixture(scope="module")
def plain_compose_turn():
    """Plain compose files use a fixed subnet: one such project at a time on this engine, across
    every test session (parallel checkouts and CI jobs take turns here instead of clashing)."""
    import fcntl

    with open("/tmp/socketlab-plain-compose.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
