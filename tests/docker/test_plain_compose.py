"""Plain `docker compose` on the committed compose.yaml, driven by pytest-docker: each client's
address and ephemeral port appear in its own log and in the server's log, and they match."""

from __future__ import annotations

import json
import secrets

import pytest

from lab.expect import client_address, normal_addr

from .conftest import ROOT

pytestmark = pytest.mark.usefixtures("plain_compose_turn")


@pytest.fixture(scope="module")
def docker_compose_file():
    return str(ROOT / "compose.yaml")


@pytest.fixture(scope="module")
def docker_compose_project_name():
    return f"labtest-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def docker_setup():
    # `up -d` returns once `finished` has started, that is once every client exited 0.
    return ["up -d"]


@pytest.fixture(scope="module")
def docker_cleanup():
    return ["down -v --remove-orphans -t 1"]


@pytest.fixture(scope="module")
def default_compose(node_image, docker_services, docker_compose_project_name, engine):
    """The containers of the default compose project, once `finished` exited (pytest-docker tears it down)."""
    def finished() -> bool:
        return any(c.service == "finished" and c.status == "exited"
                   for c in engine.containers(docker_compose_project_name))

    docker_services.wait_until_responsive(check=finished, timeout=60.0, pause=0.2)
    return {c.service: c for c in engine.containers(docker_compose_project_name)}


def records(engine, info) -> list[dict]:
    return [json.loads(line) for line in engine.container_logs(info.id).decode().splitlines() if line.startswith("{")]


def test_default_compose_shows_each_client_address_from_both_sides(engine, default_compose):
    assert {"server", "client1", "client2", "client3", "finished"} <= set(default_compose)
    assert default_compose["finished"].exit_code == 0
    server = records(engine, default_compose["server"])
    seen_by_server = {
        (r["proto"], normal_addr(r["peer"]))
        for r in server
        if (r["event"], r["proto"]) in {("accepted", "tcp"), ("received", "udp")}
    }
    for name in ("client1", "client2", "client3"):
        info = default_compose[name]
        assert info.exit_code == 0, name
        own = [r for r in records(engine, info) if r["event"] in ("connected", "bound")]
        assert {r["proto"] for r in own} == {"tcp", "udp"}, name
        for r in own:
            address = client_address({**r, "ip": None})
            assert address.startswith("10.77.0."), address  # the fixed subnet of compose.yaml
            assert (r["proto"], address) in seen_by_server, f"{name} {r['proto']} {address} not in the server's log"


def test_default_compose_network_is_internal_and_nothing_is_published(engine, default_compose, docker_compose_project_name):
    network = engine.client.networks.get(f"{docker_compose_project_name}_lab")
    assert network.attrs["Internal"] is True
    for info in default_compose.values():
        attrs = engine.client.containers.get(info.id).attrs
        assert not attrs["HostConfig"].get("PortBindings")
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
        assert attrs["Config"]["User"] in ("lab", "10001")
