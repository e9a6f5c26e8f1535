"""The fault plan: what happens when, what undoes what, and what is never undone (no Docker)."""

import pytest
from pydantic import ValidationError

from lab.faults import FaultTimeline
from lab.scenario import Fault, Scenario


def timeline(*items):
    return FaultTimeline([Fault.model_validate(item) for item in items])


def steps(items):
    return [(s.at, s.action, s.undo) for s in items]


def apply_all(plan, elapsed):
    due = plan.due(elapsed)
    for step in due:
        plan.applied(step)
    return due


def test_steps_come_due_in_time_order_with_their_undos():
    plan = timeline(
        {"at": 3, "action": "restart", "target": "server"},
        {"at": 1, "action": "disconnect", "target": "client2", "duration": 5},
        {"at": 2, "action": "pause", "target": "client1", "duration": 0.5},
    )
    assert apply_all(plan, 0.5) == []
    assert steps(apply_all(plan, 2.0)) == [(1, "disconnect", False), (2, "pause", False)]
    assert steps(apply_all(plan, 3.0)) == [(2.5, "unpause", True), (3, "restart", False)]
    assert steps(apply_all(plan, 6.0)) == [(6, "reconnect", True)]
    assert plan.due(100) == [] and plan.outstanding_undos() == []


def test_faults_may_keep_time_by_their_targets_own_clocks():
    plan = timeline(
        {"at": 1, "action": "kill", "target": "client3"},
        {"at": 1, "action": "restart", "target": "server"},
        {"at": 2, "action": "disconnect", "target": "client2", "duration": 1},
    )
    clocks = {"client3": 1.5, "client2": None, "server": None}  # client2 and the run not started yet
    assert steps(apply_all(plan, lambda fault: clocks[fault.target])) == [(1, "kill", False)]
    clocks.update(client2=2.5, server=0.5)
    assert steps(apply_all(plan, lambda fault: clocks[fault.target])) == [(2, "disconnect", False)]
    clocks.update(client2=3.0, server=1.0)
    assert steps(apply_all(plan, lambda fault: clocks[fault.target])) == [(1, "restart", False), (3, "reconnect", True)]


def test_a_fault_that_never_happened_is_never_undone():
    plan = timeline({"at": 50, "action": "pause", "target": "server", "duration": 5})
    assert plan.due(1.0) == []
    assert plan.outstanding_undos() == []  # the clients finished first: nothing to put right


def test_a_refused_fault_is_not_undone():
    plan = timeline({"at": 1, "action": "disconnect", "target": "client1", "duration": 2})
    refused = plan.due(1.0)
    assert steps(refused) == [(1, "disconnect", False)]  # carried out, but the engine said no
    assert plan.due(5.0) == []


def test_when_the_clients_finish_early_applied_faults_are_put_right():
    plan = timeline({"at": 1, "action": "pause", "target": "server", "duration": 30},
                    {"at": 2, "action": "kill", "target": "client3"})
    apply_all(plan, 2.5)
    assert steps(plan.outstanding_undos()) == [(31, "unpause", True)]


@pytest.mark.parametrize("action, undo", [
    ("stop", "start"), ("kill", "start"), ("pause", "unpause"), ("disconnect", "reconnect"), ("impair", "impair"),
])
def test_each_undo_is_the_opposite_action(action, undo):
    extra = {"impair": {"loss": 0.1}} if action == "impair" else {}
    plan = timeline({"at": 0, "action": action, "target": "server", "duration": 1, **extra})
    apply_all(plan, 0)
    assert steps(plan.due(1)) == [(1, undo, True)]


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
