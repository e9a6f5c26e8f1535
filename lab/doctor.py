"""`lab doctor`: is this host ready to run the lab, and if not, what fixes it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.compose import node_image
from lab.engine import DockerEngine
from lab.errors import LabError
from lab.hostrules import CHAIN, list_rules
from lab.images import base_image_ref
from lab.scenario import Impairment, Scenario

MIN_FREE_GIB = 2.0


@dataclass
class HostCheck:
    """One line of `lab doctor`: is one thing on this host ready, and if not, what fixes it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True


def run_checks(engine: DockerEngine, root: Path) -> list[HostCheck]:
    checks: list[HostCheck] = []
    try:
        version = engine.engine_version()
        checks.append(HostCheck("docker engine", True, f"Docker Engine {version} reachable"))
        engine_ok = True
    except LabError as exc:
        checks.append(HostCheck("docker engine", False, str(exc),
                            "start it (`sudo systemctl start docker`) and make sure your user may use it "
                            "(`sudo usermod -aG docker $USER`, then log in again)"))
        engine_ok = False

    compose = engine.compose_version()
    checks.append(HostCheck(
        "compose v2", compose is not None,
        f"docker compose {compose}" if compose else "`docker compose` (v2) is not available",
        "" if compose else "run `scripts/setup.sh` (installs Debian's docker-compose 2.x from trixie on "
        "bookworm), or install the docker-compose-plugin package",
    ))

    base = base_image_ref()
    if engine_ok:
        if engine.image_id(base):
            checks.append(HostCheck("base image", True, f"{base} present"))
        elif shutil.which("mmdebstrap"):
            checks.append(HostCheck("base image", True, f"{base} missing; `lab build` will pull {base} or build it "
                                "offline with mmdebstrap", blocking=False))
        else:
            checks.append(HostCheck("base image", False, f"{base} missing and mmdebstrap not installed",
                                "`sudo apt-get install -y mmdebstrap` (builds the base offline), or set "
                                "LAB_BASE_IMAGE to an image you can pull"))
        node = engine.image_id(node_image())
        checks.append(HostCheck("node image", node is not None,
                            f"{node_image()} {node[7:19]}" if node else f"{node_image()} not built yet",
                            "" if node else "`lab build` (or any `lab run`) builds it", blocking=False))
        checks.append(_impairment_backend(engine, node is not None, root))
        checks.append(_routed_traffic(engine, node is not None))
        try:
            docker_root = engine.data_root()
        except LabError:  # best effort; the engine check above already reports
            docker_root = "/var/lib/docker"
        checks.append(_disk(Path(docker_root), "disk (docker)"))
    checks.append(_disk(root, "disk (runs)"))
    return checks


def _disk(path: Path, name: str) -> HostCheck:
    probe = path if path.exists() else Path("/")
    free = shutil.disk_usage(probe).free / 2**30
    ok = free >= MIN_FREE_GIB
    return HostCheck(name, ok, f"{free:.1f} GiB free at {probe}",
                 "" if ok else f"free at least {MIN_FREE_GIB:g} GiB (`docker system prune`, old runs/)")


def _impairment_backend(engine: DockerEngine, node_built: bool, root: Path) -> HostCheck:
    """Ask the kernel, from inside a throwaway container, which impairment backend will be used.

    Before the node image exists, the base image runs the probe from this checkout's code."""
    if not node_built and not engine.image_id(base_image_ref()):
        return HostCheck("impairments", True, "backend unknown until `lab build` made the images", blocking=False)
    try:
        probe = probe_impairments(engine, root, node_built)
    except (LabError, ValueError, IndexError) as exc:
        return HostCheck("impairments", False, f"probe failed: {exc}", "see `python3 -m lab.shaper probe` output")
    except Exception as exc:  # noqa: BLE001 - a docker SDK error while probing is reported, not raised
        return HostCheck("impairments", False, f"probe failed: {exc}", "")
    backend = probe.get("backend")
    if backend == "netem":
        return HostCheck("impairments", True, "kernel netem (tc qdisc netem)", blocking=False)
    missing = [k for k in ("statistic", "nfqueue", "tbf") if not probe.get(k)]
    detail = f"userspace backend (kernel has no netem: {probe.get('netem_error') or 'unknown qdisc'})"
    if missing:
        return HostCheck("impairments", False, detail + f"; missing: {', '.join(missing)}",
                     "impairments that need these will fail on this kernel", blocking=False)
    return HostCheck("impairments", True, detail + "; NFQUEUE, statistic and tbf available", blocking=False)


def probe_impairments(engine: DockerEngine, root: Path, node_built: bool = True) -> dict:
    """What the kernel offers the shaper (`python3 -m lab.shaper probe`), from a throwaway container."""
    image, mounts, env = node_image(), None, None
    if not node_built:
        image = base_image_ref()
        mounts, env = {str(root / "lab"): "/opt/probe/lab"}, {"PYTHONPATH": "/opt/probe"}
    status, output = engine.run_throwaway(image, ["python3", "-m", "lab.shaper", "probe"],
                                          cap_add=["NET_ADMIN", "NET_RAW"], mounts=mounts, environment=env)
    return json.loads(output.strip().splitlines()[-1])


def scenario_impairments(scenario: Scenario) -> list[Impairment]:
    """Every impairment a scenario may apply: on the server, on its clients, and by its faults."""
    found = [scenario.impair_of(service) for service in ["server", *scenario.client_names()]]
    found += [fault.impair for fault in scenario.faults]
    return [i for i in found if i is not None]


def cannot_run_here(scenario: Scenario, probe: dict) -> str | None:
    """Why this host cannot run the scenario's impairments (what the kernel lacks), or None."""
    needs: dict[str, str] = {}
    for impairment in scenario_impairments(scenario):
        if impairment.direction in ("ingress", "both"):
            needs["ifb"] = "ingress impairment"
        if probe.get("netem"):
            continue
        if impairment.loss:
            needs.update(statistic="loss", nfqueue="loss")
        if any((impairment.delay_ms, impairment.duplicate, impairment.reorder, impairment.corrupt)):
            needs.setdefault("nfqueue", "delay, duplication, reordering or corruption")
        if impairment.rate:
            needs["tbf"] = "rate"
    missing = {feature: why for feature, why in needs.items() if not probe.get(feature)}
    if not missing:
        return None
    what = ", ".join(f"{feature} (for {why})" for feature, why in missing.items())
    backend = "netem" if probe.get("netem") else "userspace"
    return f"this host cannot impair traffic as the scenario asks: the kernel lacks {what} ({backend} backend; see `lab doctor`)"


def _routed_traffic(engine: DockerEngine, node_built: bool) -> HostCheck:
    """Can a run add its scoped DOCKER-USER rules (scenarios with routers need them)?"""
    name = "routers"
    if not node_built:
        return HostCheck(name, True, "unknown until `lab build` made the node image", blocking=False)
    try:
        rules = list_rules(engine, node_image())
    except LabError as exc:
        return HostCheck(name, False, f"the host's {CHAIN} chain cannot be read: {exc}",
                         "scenarios with `routers:` need Docker's iptables integration and a helper container "
                         "with NET_ADMIN on the host's network namespace", blocking=False)
    left = f"; {len(rules)} run(s) still have rules (`lab clean` removes those of ended runs)" if rules else ""
    return HostCheck(name, True, f"{CHAIN} chain writable by a NET_ADMIN helper: routed scenarios can run{left}",
                     blocking=False)


# ---- `lab doctor --engine swarm`: the swarm a `--engine swarm` run would use

SWARM_PORTS = "2377/tcp (managers), 7946/tcp+udp (gossip) and 4789/udp (VXLAN) open between the nodes"


def swarm_checks(host_image_id: str | None) -> list[HostCheck]:
    """The swarm's lines of `lab doctor`; `host_image_id` is the node image built on this host."""
    from lab.engine.swarm.engine import swarm_engine

    checks = [HostCheck("docker cli", shutil.which("docker") is not None,
                        "docker CLI present (deploys stacks)" if shutil.which("docker") else "docker CLI missing",
                        "install the docker.io (or docker-ce-cli) package")]
    try:
        engine = swarm_engine()
        versions = engine.versions()
    except LabError as exc:
        checks.append(HostCheck("swarm manager", False, str(exc),
                                "`lab cluster up` for a swarm on this machine; for a real one, `docker context use "
                                "CONTEXT` or LAB_SWARM_HOST=tcp://MANAGER:2376 (see docs/swarm.md)"))
        return checks
    checks.append(HostCheck("swarm manager", True, f"{engine.where}: Docker Engine {versions['engine']}"))
    try:
        nodes = engine.ready_nodes()
    except LabError as exc:
        nodes, detail = [], str(exc)
    else:
        detail = f"{len(nodes)} ready and active: {', '.join(nodes)}" if nodes else "no node is ready and active"
    checks.append(HostCheck("swarm nodes", bool(nodes), detail, f"every node needs {SWARM_PORTS}"))
    if len(nodes) == 1:
        checks.append(HostCheck("spread", False, "one node: server and clients share it, nothing crosses the overlay",
                                "join more nodes (`lab cluster up --nodes 3`)", blocking=False))
    checks.append(_swarm_image_check(engine, host_image_id))
    try:
        mode = engine.endpoint_mode()
        checks.append(HostCheck("endpoint mode", True, f"{mode} ({'IPVS present' if mode == 'vip' else 'DNS round robin'})",
                                blocking=False))
    except LabError as exc:
        checks.append(HostCheck("endpoint mode", False, str(exc), blocking=False))
    return checks


def _swarm_image_check(engine, host_image_id: str | None) -> HostCheck:
    ref = node_image()
    if engine.node_urls:
        fix = "`lab cluster load` (a `lab run --engine swarm` also loads it)"
        stale = []
        for hostname in sorted(engine.node_urls):
            try:
                have = engine.node(hostname).images.get(ref).id
            except Exception:  # noqa: BLE001 - missing or unreachable: either way not usable
                have = None
            if have is None or have != host_image_id:
                stale.append(hostname)
        if stale:
            return HostCheck("node image", True, f"{ref} missing or older on {', '.join(stale)}; a run loads it",
                             fix, blocking=False)
        return HostCheck("node image", True, f"{ref} on every node, same as this host's")
    present = engine.image_id(ref)
    return HostCheck("node image", present is not None,
                     f"{ref} on the manager" if present else f"{ref} not on the manager",
                     "put it on every node: push it to your registry (and set LAB_NODE_IMAGE to that name), or "
                     "`docker save IMAGE | ssh NODE docker load` for each node")
