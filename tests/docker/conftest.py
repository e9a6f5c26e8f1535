"""Fixtures for tests against the real Docker engine. They fail (never skip) without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.engine import DockerEngine
from lab.errors import EngineUnavailable
from lab.home import project_root
from lab.images import build_node
from tests.procs import default_sigint

ROOT = project_root()


@pytest.fixture(scope="session")
def engine(request) -> DockerEngine:
    try:
        engine = DockerEngine().require()
    except EngineUnavailable as exc:
        pytest.fail(f"Docker tests need a Docker engine and Compose v2 ({exc}); run `lab doctor`, "
                    f"or deselect them with -m 'not docker'", pytrace=False)
    # What the lab had made before this session is not ours to judge (see tests/conftest.py).
    request.config._lab_projects_before = set(engine.managed_resources())
    return engine


@pytest.fixture(scope="session")
def node_image(engine) -> str:
    """Built once; pytest-xdist workers (and parallel sessions) take turns, the later ones hit the cache."""
    import fcntl

    with open("/tmp/socketlab-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_node(engine, ROOT, progress=None)


@pytest.fixture(scope="session")
def impairment_probe(engine, node_image) -> dict:
    """What this host's kernel offers the shaper, asked once per session."""
    from lab.doctor import probe_impairments

    return probe_impairments(engine, ROOT)


def run_lab(*args: str, timeout: float = 300, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`python -m lab ARGS` as a user would run it, output captured."""
    env = {**os.environ, "LAB_HOME": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def start_lab(*args: str) -> subprocess.Popen:
    env = {**os.environ, "LAB_HOME": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "lab", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, preexec_fn=default_sigint)


def only_run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]
