"""`lab doctor`: is this host ready to run the lab, and if not, what fixes it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.compose import node_image
from lab.engine import Engine
from lab.errors import LabError
from lab.images import base_image_ref

MIN_FREE_GIB = 2.0


@dataclass
class HostCheck:
    """One line of `lab doctor`: is one thing on this host ready, and if not, what fixes it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True


def run_checks(engine: Engine, root: Path) -> list[HostCheck]:
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
        try:
            docker_root = engine.client.info().get("DockerRootDir", "/var/lib/docker")
        except Exception:  # noqa: BLE001 - best effort; the engine check above already reports
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


def _impairment_backend(engine: Engine, node_built: bool, root: Path) -> HostCheck:
    """Ask the kernel, from inside a throwaway container, which impairment backend will be used.

    Before the node image exists, the base image runs the probe from this checkout's code."""
    image, mounts, env = node_image(), None, None
    if not node_built:
        image = base_image_ref()
        if not engine.image_id(image):
            return HostCheck("impairments", True, "backend unknown until `lab build` made the images", blocking=False)
        mounts, env = {str(root / "lab"): "/opt/probe/lab"}, {"PYTHONPATH": "/opt/probe"}
    try:
        status, output = engine.run_throwaway(image, ["python3", "-m", "lab.shaper", "probe"],
                                              cap_add=["NET_ADMIN", "NET_RAW"], mounts=mounts, environment=env)
        probe = json.loads(output.strip().splitlines()[-1])
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
