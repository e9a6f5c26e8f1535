"""The fault plan: what happens when, and what undoes what (no Docker)."""

import pytest
from pydantic import ValidationError

from lab.run import UNDO, _timeline
from lab.scenario import Fault, Scenario


def faults(*items):
    return [Fault.model_validate(item) for item in items]


def test_timeline_orders_faults_and_their_undos_by_time():
    plan = _timeline(faults(
        {"at": 3, "action": "restart", "target": "server"},
        {"at": 1, "action": "disconnect", "target": "client2", "duration": 5},
        {"at": 2, "action": "pause", "target": "client1", "duration": 0.5},
    ))
    assert [(at, f.action, undo) for at, f, undo in plan] == [
        (1, "disconnect", False), (2, "pause", False), (2.5, "pause", True), (3, "restart", False),
        (6, "disconnect", True),
    ]


@pytest.mark.parametrize("action, undo", [
    ("stop", "start"), ("kill", "start"), ("pause", "unpause"), ("disconnect", "reconnect"), ("impair", "impair"),
])
def test_every_undoable_action_has_its_opposite(action, undo):
    assert UNDO[action] == undo


def test_restart_cannot_have_a_duration():
    with pytest.raises(ValidationError, match="restart has nothing to undo"):
        Fault.model_validate({"at": 1, "action": "restart", "target": "server", "duration": 2})


def test_impair_fault_needs_values_and_only_impair_takes_them():
    with pytest.raises(ValidationError, match="needs an `impair:` mapping"):
        Fault.model_validate({"at": 1, "action": "impair", "target": "server"})
    with pytest.raises(ValidationError, match="only goes with action impair"):
        Fault.model_validate({"at": 1, "action": "stop", "target": "server", "impair": {"loss": 0.1}})


def test_impair_undo_restores_the_declared_impairment():
    scenario = Scenario.model_validate({
        "name": "t", "description": "x",
        "server": {"impair": {"loss": 0.05, "direction": "both"}},
        "faults": [{"at": 2, "action": "impair", "target": "server", "impair": {"loss": 0.3}, "duration": 3}],
    })
    fault = scenario.faults[0]
    assert fault.impair.shaper_args(direction=False) == ["--loss", "0.3"]
    assert scenario.impair_of("server").shaper_args(direction=False) == ["--loss", "0.05"]


def test_a_fault_cannot_change_the_shapers_direction():
    with pytest.raises(ValidationError, match="changes the values, not the direction"):
        Scenario.model_validate({
            "name": "t", "description": "x", "server": {"impair": {"loss": 0.05, "direction": "both"}},
            "faults": [{"at": 2, "action": "impair", "target": "server", "impair": {"loss": 0.3, "direction": "egress"}}],
        })
