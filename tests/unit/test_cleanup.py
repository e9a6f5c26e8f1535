"""`lab clean`'s choices on the in-memory engine: whose leftovers, and what one failure stops."""

from __future__ import annotations

from fake_engine import FakeEngine

from lab.cleanup import clean
from lab.engine import ContainerInfo, LabelledProject
from lab.errors import EngineError


class Leftovers(FakeEngine):
    def __init__(self, *projects: LabelledProject) -> None:
        super().__init__()
        self.projects = {p.name: p for p in projects}

    def managed_resources(self) -> dict[str, LabelledProject]:
        return dict(self.projects)

    def remove_resources(self, entry: LabelledProject) -> list[str]:
        if entry.name == "broken":
            raise EngineError("docker: remove resources: network has active endpoints")
        del self.projects[entry.name]
        return [f"network {n}" for n in entry.networks]


def project(name: str, session: str | None = None, owner: str | None = None, running: bool = False):
    container = ContainerInfo(name=f"{name}-server-1", service="server", role="server",
                              status="running" if running else "exited", exit_code=None, ip=None, id=name)
    return LabelledProject(name, [container], [f"{name}_lab"], owner=owner, session=session)


def test_a_test_session_cleans_only_what_it_made(monkeypatch):
    monkeypatch.setenv("LAB_SESSION", "mine")
    engine = Leftovers(project("lab-a", session="mine"), project("lab-b", session="theirs"), project("lab-c"))
    removed, kept, *_ = clean(engine)
    assert removed == {"lab-a": ["network lab-a_lab"]}
    assert set(engine.projects) == {"lab-b", "lab-c"}


def test_without_a_session_every_dead_run_goes_and_living_ones_stay(monkeypatch):
    monkeypatch.delenv("LAB_SESSION", raising=False)
    engine = Leftovers(project("lab-dead", owner="nohost:1"), project("plain", running=True), project("lab-c"))
    removed, kept, *_ = clean(engine)
    assert sorted(removed) == ["lab-c", "lab-dead"] and kept == ["plain"]


def test_one_project_that_cannot_be_removed_does_not_stop_the_others(monkeypatch):
    monkeypatch.delenv("LAB_SESSION", raising=False)
    engine = Leftovers(project("broken"), project("lab-z"))
    result = clean(engine)
    assert result.failed == {"broken": "docker: remove resources: network has active endpoints"}
    assert result.removed == {"lab-z": ["network lab-z_lab"]}
