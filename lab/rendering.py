"""The committed compose files, rendered from the scenarios so plain `docker compose` can run them.

`compose.yaml` at the root is the `basic` scenario; `scenarios/compose/NAME.yaml` is every
scenario. A unit test fails when a scenario changed and its compose file was not re-rendered.
"""

from __future__ import annotations

from pathlib import Path

from lab.compose import render, to_yaml
from lab.compose_topology import routed_bridges
from lab.scenario import load_scenario, scenario_names

DEFAULT_SCENARIO = "basic"
HEADER = (
    "# Rendered from scenarios/{name}.yaml by `lab render`; edit the scenario, not this file.\n"
    "# {how}\n"
)


def expected_files(root: Path, scenarios: Path) -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name in scenario_names(scenarios):
        scenario = load_scenario(scenarios / f"{name}.yaml")
        rel = f"scenarios/compose/{name}.yaml"
        how = f"Run it: docker compose -f {rel} up --exit-code-from finished finished"
        bridges = routed_bridges(scenario, None)
        if bridges:
            # lab run adds and removes these itself (lab/hostrules.py); plain compose cannot.
            rules = "; ".join(f"iptables -{{op}} DOCKER-USER -i {b} -o {b} -j ACCEPT" for b in bridges)
            how += ("\n# Its router's traffic crosses Docker's isolation of internal networks: as root, first\n"
                    f"#   {rules.format(op='I')}\n# and afterwards\n#   {rules.format(op='D')}")
        if scenario.faults:
            how += "\n" + faults_note(scenario)
        files[root / rel] = to_yaml(render(scenario, build_context="../.."), HEADER.format(name=name, how=how))
        if name == DEFAULT_SCENARIO:
            how = "Run it: docker compose up   (ends by itself: docker compose up --exit-code-from finished finished)"
            files[root / "compose.yaml"] = to_yaml(render(scenario, build_context="."), HEADER.format(name=name, how=how))
    return files


def faults_note(scenario) -> str:
    """What a scenario with faults loses under plain compose: compose has no timeline, and only
    `lab run` acts on the containers while the clients talk."""
    timeline = ", ".join(f"{f.action} {f.target} at {f.at:g} s" for f in scenario.faults)
    return (f"# Its faults ({timeline}) need `lab run`, which applies them while the clients talk:\n"
            "# plain compose runs the same services without them, so what they show does not happen.")


def render_committed(root: Path, scenarios: Path, check: bool = False) -> list[Path]:
    """Write the files (or with `check`, list the ones that differ); returns the paths concerned."""
    changed = []
    for path, text in expected_files(root, scenarios).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            changed.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return changed
