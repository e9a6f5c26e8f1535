"""JUnit XML for `lab test`, in the dialect CI dashboards read (the Jenkins xUnit `junit-10.xsd`).

One `<testsuite>` per run, holding one `<testcase>` (classname `scenarios`, the scenario as
name) and the run's properties; the schema has no properties on a test case, so they sit on
its suite. A run that failed carries `<failure>`: its failing expectations as the message,
the run's tables as the body. One that could not run carries `<error>`; one this host cannot
run, or that never started, `<skipped>` with the reason.
"""

from __future__ import annotations

import io
import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from lab.suite import Outcome

CLASSNAME = "scenarios"
FAILED = ("failed", "timeout")


def junit_tree(outcomes: Sequence[Outcome], name: str = "lab scenarios", seconds: float | None = None) -> ET.ElementTree:
    """The report as an element tree (see the module docstring for its shape). `seconds` is the
    whole suite's wall time; runs overlap, so it is not the sum of theirs."""
    root = ET.Element("testsuites", name=name)
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total = 0.0
    host = socket.gethostname()
    for outcome in outcomes:
        kind = _kind(outcome)
        suite = ET.SubElement(root, "testsuite", name=outcome.planned.label, tests="1",
                              failures=str(int(kind == "failure")), errors=str(int(kind == "error")),
                              skipped=str(int(kind == "skipped")), time=_time(outcome.seconds), hostname=host)
        if outcome.started_at:
            suite.set("timestamp", outcome.started_at)
        properties = ET.SubElement(suite, "properties")
        for key, value in _properties(outcome):
            ET.SubElement(properties, "property", name=key, value=value)
        case = ET.SubElement(suite, "testcase", classname=CLASSNAME, name=outcome.planned.label,
                             time=_time(outcome.seconds))
        if kind:
            message, body = _explain(outcome)
            node = ET.SubElement(case, kind, message=message)
            if kind != "skipped":
                node.set("type", outcome.status)
            if body:
                node.text = body
        if outcome.result is not None:
            ET.SubElement(case, "system-out").text = f"run directory: {outcome.result.directory}\n"
        totals["tests"] += 1
        if kind:
            totals[kind if kind == "skipped" else kind + "s"] += 1
        total += outcome.seconds
    for key in ("tests", "failures", "errors"):  # the schema has no `skipped` on <testsuites>
        root.set(key, str(totals[key]))
    root.set("time", _time(total if seconds is None else seconds))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, outcomes: Sequence[Outcome], name: str = "lab scenarios",
                seconds: float | None = None) -> None:
    """Write the report whole or not at all (a Ctrl-C mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    junit_tree(outcomes, name, seconds).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)


def _kind(outcome: Outcome) -> str | None:
    status = outcome.status
    if status == "passed":
        return None
    if status in FAILED:
        return "failure"
    if status in ("skipped", "interrupted"):
        return "skipped"
    return "error"


def _properties(outcome: Outcome) -> list[tuple[str, str]]:
    props = [("scenario", outcome.planned.name), ("scenario_file", str(outcome.planned.path))]
    if outcome.planned.repeats > 1:
        props.append(("repeat", f"{outcome.planned.index}/{outcome.planned.repeats}"))
    if outcome.result is not None:
        props += [("run_directory", str(outcome.result.directory)), ("run_id", outcome.result.run_id),
                  ("verdict", str(outcome.result.verdict))]
        if getattr(outcome.result, "report", None):
            props.append(("report", str(outcome.result.report)))
    return props


def _explain(outcome: Outcome) -> tuple[str, str]:
    """The one-line message a dashboard lists, and the body it shows when opened."""
    result = outcome.result
    if outcome.status == "skipped" or result is None:
        reason = outcome.skipped or outcome.error or outcome.status
        return reason, reason if outcome.error else ""
    if outcome.status == "interrupted":
        return "interrupted before it finished (partial logs kept)", f"run directory: {result.directory}"
    problems = failing_expectations(outcome)
    problems += [f"{client} exited {code}" for client, code in sorted(result.clients.items()) if code != 0]
    if result.verdict == "timeout":
        problems.insert(0, f"timed out after {outcome.planned.scenario.timeout:g} s" if outcome.planned.scenario
                        else "timed out")
    if result.error:
        problems.append(result.error)
    message = "; ".join(problems) or str(result.verdict)
    return message, f"run directory: {result.directory}\n\n{run_tables(outcome)}"


def failing_expectations(outcome: Outcome) -> list[str]:
    """`kind (what): measured X, expected Y` for each expectation that failed."""
    result = outcome.result
    if result is None:
        return []
    kinds = [getattr(e, "check", "?") for e in (outcome.planned.scenario.expect if outcome.planned.scenario else [])]
    lines = []
    for i, r in enumerate(result.expectations):
        if not r.passed:
            kind = kinds[i] if i < len(kinds) else "?"
            lines.append(f"{kind} ({r.name}): measured {r.measured}, expected {r.expected}"
                         + (f" - {r.detail}" if r.detail else ""))
    return lines


def run_tables(outcome: Outcome) -> str:
    """The run's per-client table and its expectations, as plain text."""
    from rich.console import Console

    from lab.report import conversation_table, expectation_table

    result = outcome.result
    if result is None:
        return ""
    buffer = io.StringIO()
    out = Console(file=buffer, width=160, color_system=None, force_terminal=False, highlight=False)
    out.print(conversation_table(result.conversations, title=f"{outcome.planned.name}: one row per client socket"))
    if result.expectations:
        out.print(expectation_table(result.expectations))
    return buffer.getvalue()


def _time(seconds: float) -> str:
    return f"{seconds:.3f}"
