"""The names the renderer writes and the engine finds things by: the labels on everything a run
creates, and the name of a project's network.

Both sides import them from here, so `lab/compose.py` (scenario to compose file) and
`lab/engine/` (Docker) agree without either importing the other.
"""

from __future__ import annotations

import os

from lab.records.writer import RECORDS_VARIABLE as RECORDS_VARIABLE  # the env var naming a records file

NETWORK = "lab"  # the network's key in a project; the engine's name for it adds the project
LABEL_PREFIX = "io.socketlab"
RUN_LABEL = f"{LABEL_PREFIX}.run"
ROLE_LABEL = f"{LABEL_PREFIX}.role"
SERVICE_LABEL = f"{LABEL_PREFIX}.service"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"
OWNER_LABEL = f"{LABEL_PREFIX}.owner"
SESSION_LABEL = f"{LABEL_PREFIX}.session"
SCENARIO_LABEL = f"{LABEL_PREFIX}.scenario"
RUN_DIR_LABEL = f"{LABEL_PREFIX}.run-dir"  # where `lab clean` salvages an abandoned run's records
# The node a scenario places a service on (lab/placement.py), or PLACE_ANYWHERE; absent: the default.
PLACEMENT_LABEL = f"{LABEL_PREFIX}.placement"
PLACE_ANYWHERE = "any"


def session_labels() -> dict[str, str]:
    """`$LAB_SESSION` (set by the test suite) marks everything a session made, so its
    leftover check judges only its own resources, never a parallel session's."""
    session = os.environ.get("LAB_SESSION")
    return {SESSION_LABEL: session} if session else {}
