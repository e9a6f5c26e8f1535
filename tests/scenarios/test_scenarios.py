"""Every scenario in scenarios/ is a test case, run through the orchestrator on the real engine.

Parametrised by discovery: a new scenario file is a new test. A failing case shows the failed
expectations, the clients that failed and where its run directory is. A scenario whose
impairments this host's kernel cannot apply is skipped with what the kernel lacks. Each case
runs in its own compose project, so `-n N` (pytest-xdist) runs them side by side.
"""

from __future__ import annotations

import pytest

from lab.doctor import cannot_run_here, scenario_impairments
from lab.home import project_root
from lab.run import run_scenario
from lab.scenario import load_scenario, scenario_names

SCENARIOS = project_root() / "scenarios"


@pytest.mark.parametrize("name", scenario_names(SCENARIOS))
def test_scenario(name, engine, node_image, tmp_path_factory, request):
    path = SCENARIOS / f"{name}.yaml"
    scenario = load_scenario(path)
    if scenario_impairments(scenario):
        reason = cannot_run_here(scenario, request.getfixturevalue("impairment_probe"))
        if reason:
            pytest.skip(reason)
    runs = tmp_path_factory.mktemp(f"runs-{name}")
    result = run_scenario(scenario, engine, runs, project_root(), source=path)
    problems = [f"{r.name}: measured {r.measured}, expected {r.expected} {r.detail or ''}"
                for r in result.expectations if not r.passed]
    problems += [f"{client} exited {code}" for client, code in sorted(result.clients.items()) if code != 0]
    if result.error:
        problems.append(result.error)
    if scenario.outcome == "failed":
        # A scenario that shows a broken program: the run fails, and every expectation (what the
        # lab must find and explain) holds.
        assert result.as_expected("failed"), (
            f"scenario {name} {result.verdict}; run directory: {result.directory}\n  " + "\n  ".join(problems))
        return
    assert result.verdict == "passed", (
        f"scenario {name} {result.verdict}; run directory: {result.directory}\n  " + "\n  ".join(problems)
    )
    assert result.expectations or not scenario.expect
    # Behind a masquerading router the server sees the router: those rows must say `nat`.
    masquerading = any(router.masquerade for router in scenario.routers.values())
    allowed = {"ok", "nat"} if masquerading else {"ok"}
    assert all(c.flag in allowed for c in result.conversations), [c.row() for c in result.conversations
                                                                   if c.flag not in allowed]
    assert not masquerading or any(c.flag == "nat" for c in result.conversations)
