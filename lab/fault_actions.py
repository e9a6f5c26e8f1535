"""The fault actions a scenario can name: part of the model, shared by the scenario's faults,
the expectations that look for them and the code that carries them out."""

from __future__ import annotations

from typing import Literal

FaultAction = Literal["stop", "start", "kill", "restart", "pause", "unpause", "disconnect", "reconnect", "impair"]
