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


def test_a_network_docker_is_still_releasing_is_tried_again(monkeypatch):
    """After a 200-container run on a busy host, Docker said a network had active endpoints for
    a while after its containers were gone; teardown tries again instead of failing the run."""
    from pathlib import Path

    import pytest

    import lab.engine.compose_cli as cli

    monkeypatch.setattr(cli, "RELEASE_WAITS", (0, 0, 0))
    calls = []

    class Flaky(cli.ComposeProject):
        def run(self, *args, **kwargs):
            calls.append(args[0])
            if len(calls) < 3:
                raise EngineError("`docker compose down` failed: network x has active endpoints")

    Flaky("p", Path("compose.yaml")).remove()
    assert calls == ["down", "down", "down"]
    calls.clear()

    def always_failing(why: str) -> cli.ComposeProject:
        class Failing(cli.ComposeProject):
            def run(self, *args, **kwargs):
                calls.append(args[0])
                raise EngineError(f"`docker compose down` failed: {why}")
        return Failing("p", Path("compose.yaml"))

    with pytest.raises(EngineError, match="permission denied"):
        always_failing("permission denied").remove()
    assert calls == ["down"]  # anything else fails at once
    calls.clear()

    with pytest.raises(EngineError, match="only a restart of the Docker daemon removes it"):
        always_failing("network x has active endpoints").remove()
    assert calls == ["down"] * 4  # the waits, then it says what is wrong


def test_containers_leave_their_networks_a_few_at_a_time_dependents_first():
    """Docker 20.10 lost count of a network's endpoints, or deadlocked, when 200 containers left
    it at once, and compose stops them all at once: the lab stops them itself, at most
    LEAVING_AT_ONCE at a time, clients before the server, the capture last (a fake Docker API)."""
    import threading
    import time
    from types import SimpleNamespace

    from lab.engine.containers import LEAVING_AT_ONCE, Containers

    roles = {f"client{i}": "client" for i in range(40)} | {"server": "server", "capture": "capture",
                                                          "server-shaper": "shaper", "done": "client"}
    in_flight, most, order, lock, begun = [0], [0], [], threading.Lock(), {}

    class Api:
        def containers(self, all, filters):
            assert filters == {"label": "com.docker.compose.project=p"}
            return [{"Id": name, "Names": [f"/p-{name}-1"], "State": "exited" if name == "done" else "running",
                     "Labels": {"com.docker.compose.service": name, "io.socketlab.role": role},
                     "NetworkSettings": {"Networks": {}}, "Status": ""}
                    for name, role in roles.items()]

        def stop(self, container_id, timeout):
            with lock:
                begun[container_id] = len(order)  # how many had stopped when this one began
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            time.sleep(0.01)
            with lock:
                in_flight[0] -= 1
                order.append(container_id)

    engine = Containers()
    engine._client = SimpleNamespace(api=Api())
    engine.stop_project("p", grace=3)
    assert most[0] == LEAVING_AT_ONCE  # as many as allowed, never more
    assert sorted(order) == sorted(set(roles) - {"done"})  # every running one, once; not the exited one
    assert set(order[:40]) == {f"client{i}" for i in range(40)}
    assert order[40:] == ["server", "server-shaper", "capture"]

    # Once every client has talked out, the server leaves with the clients (in the same batches
    # of LEAVING_AT_ONCE); the shaper whose namespace it runs in, and then the capture, after.
    order.clear()
    most[0] = 0
    engine.stop_project("p", grace=3, talked_out=True)
    assert most[0] == LEAVING_AT_ONCE
    assert sorted(order) == sorted(set(roles) - {"done"}) and order[-2:] == ["server-shaper", "capture"]
    assert begun["server"] < 40  # not after every client
    assert begun["server-shaper"] == len(order) - 2 and begun["capture"] == len(order) - 1


def test_the_waves_merge_only_when_the_clients_have_talked_out_and_the_capture_is_always_last():
    from lab.engine.containers import STOP_WAVES, stop_waves

    assert stop_waves(False) == STOP_WAVES
    first, namespaces, last = stop_waves(True)
    assert set(first) == set(STOP_WAVES[0]) | set(STOP_WAVES[1])
    assert namespaces == STOP_WAVES[2] == ("shaper", "netns") and last == ("capture",)
