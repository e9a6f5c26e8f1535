"""Where the lab's files are: the checkout (compose.yaml, images/, scenarios/) and runs/."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding compose.yaml and images/: $LAB_HOME, else this package's parent,
    else the current directory."""
    env = os.environ.get("LAB_HOME")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "images" / "node" / "Dockerfile").is_file():
        return here
    return Path.cwd()


def scenarios_dir() -> Path:
    return Path(os.environ.get("LAB_SCENARIOS") or project_root() / "scenarios")


def runs_dir() -> Path:
    return Path(os.environ.get("LAB_RUNS") or project_root() / "runs")
