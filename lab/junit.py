"""JUnit XML for `lab test`: one test case per scenario, failures carry the failed expectations."""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from pathlib import Path

from lab.verdict import Verdict


def write_junit(path: Path, results: list) -> None:
    """`results` is a list of (Scenario, RunResult)."""
    suite = ET.Element("testsuite", name="lab scenarios", tests=str(len(results)),
                       timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    failures = errors = 0
    for scenario, result in results:
        case = ET.SubElement(suite, "testcase", classname="scenarios", name=scenario.name)
        lines = [f"run directory: {result.directory}", f"verdict: {result.verdict}"]
        lines += [f"{name}: exit {code}" for name, code in sorted(result.clients.items()) if code != 0]
        lines += [f"expectation failed: {r.name}: measured {r.measured}, expected {r.expected}. {r.detail or ''}"
                  for r in result.expectations if not r.passed]
        if result.error:
            lines.append(f"error: {result.error}")
        if result.verdict.is_failure:
            failures += 1
            node = ET.SubElement(case, "failure", message=f"{scenario.name} {result.verdict}")
            node.text = "\n".join(lines)
        elif result.verdict != Verdict.PASSED:
            errors += 1
            node = ET.SubElement(case, "error", message=f"{scenario.name} {result.verdict}")
            node.text = "\n".join(lines)
        ET.SubElement(case, "system-out").text = "\n".join(lines[:2])
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
