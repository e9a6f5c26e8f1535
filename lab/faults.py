"""The fault timeline of a run: what is due when, what undoes what, and carrying it out.

`FaultTimeline` is pure (it only answers "what now?" for an elapsed time); `apply_fault` acts
through the engine and returns the `fault` record that puts the action on the run's timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.engine import ContainerInfo, Engine
from lab.errors import LabError, RunFailed
from lab.expect import Record
from lab.records.schema import utc_timestamp
from lab.scenario import Fault, Scenario

# What puts each action right again after its `duration` (restart has nothing to undo).
UNDO = {"stop": "start", "kill": "start", "pause": "unpause", "disconnect": "reconnect", "impair": "impair",
        "start": "stop", "unpause": "pause", "reconnect": "disconnect"}


@dataclass(frozen=True)
class Step:
    """One thing to do: a fault (the `index`-th of the scenario) or its undo, at `at` seconds."""

    at: float
    index: int
    fault: Fault
    undo: bool

    @property
    def action(self) -> str:
        return UNDO[self.fault.action] if self.undo else self.fault.action


@dataclass
class FaultTimeline:
    """The scenario's faults and their undos in time order. Only a fault that was applied is
    ever undone: one still in the future, or one the engine refused, leaves nothing to undo."""

    faults: list[Fault]
    _steps: list[Step] = field(init=False)
    _applied: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        steps = []
        for index, fault in enumerate(self.faults):
            steps.append(Step(fault.at, index, fault, undo=False))
            if fault.duration is not None:
                steps.append(Step(fault.at + fault.duration, index, fault, undo=True))
        self._steps = sorted(steps, key=lambda s: (s.at, s.undo))

    def due(self, elapsed: float | Callable[[Fault], float | None]) -> list[Step]:
        """The steps whose time has come, removed from the timeline. `elapsed` is the time on
        the run's clock, or, when faults keep time by different clocks, a function from a
        fault to its clock's time (None: that clock has not started)."""
        clock = elapsed if callable(elapsed) else (lambda fault: elapsed)

        def is_due(step: Step) -> bool:
            now = clock(step.fault)
            return now is not None and step.at <= now

        ready = [s for s in self._steps if is_due(s)]
        self._steps = [s for s in self._steps if not is_due(s)]
        return [s for s in ready if not s.undo or s.index in self._applied]

    def applied(self, step: Step) -> None:
        if not step.undo:
            self._applied.add(step.index)

    def outstanding_undos(self) -> list[Step]:
        """Undos not yet due of faults that were applied (the run is ending: put things right)."""
        undos = [s for s in self._steps if s.undo and s.index in self._applied]
        self._steps = []
        return undos


def apply_fault(scenario: Scenario, engine: Engine, project: str, containers: dict[str, ContainerInfo],
                step: Step, elapsed: float) -> Record:
    """Carry out one step on the containers (keyed by service) and return its `fault` record.

    The record is stamped before acting, so its effects follow it in the timeline."""
    fault = step.fault
    target, shaper = containers.get(fault.target), containers.get(f"{fault.target}-shaper")
    record: Record = {"v": 1, "ts": utc_timestamp(), "host": "lab", "role": "lab", "proto": None, "event": "fault",
                      "action": step.action, "target": fault.target, "t": round(elapsed, 3), "undo": step.undo,
                      "service": "lab", "container": "lab"}
    try:
        if scenario.is_node(fault.target):
            # A node, not a service: the engine cuts the node off the others (or puts it back).
            engine.act_on_node(fault.target, step.action)
        elif target is None:
            raise RunFailed(f"no container for {fault.target}")
        elif step.action in ("disconnect", "reconnect"):
            # The shaper owns the namespace where there is one; the echo program shares it.
            engine.act((shaper or target).id, step.action, network=engine.network_name(project))
        elif step.action == "impair":
            if shaper is None:
                raise RunFailed(f"{fault.target} has no shaper")
            # The new values replace the old ones whole; the undo puts back what was declared.
            values = scenario.impair_of(fault.target) if step.undo else fault.impair
            options = ["--clear", *(values.shaper_args(direction=False) if values else [])]
            record["impair"] = options
            status, output = engine.exec(shaper.id, ["python3", "-m", "lab.shaper", "set", *options])
            if status != 0:
                raise RunFailed(output.strip() or f"shaper set exited {status}")
        else:
            engine.act(target.id, step.action)
        record["ok"] = True
    except LabError as exc:
        record.update(ok=False, reason="failed", detail=str(exc))
    return record


