"""The layers of docs/architecture.md, held against the code: no import points up a layer, and
only the engine package talks to Docker.

Every `import`/`from ... import` in `lab/` (top level and inside functions) is read with ast.
A module's layer is the first prefix of its dotted name found in LAYERS.
"""

from __future__ import annotations

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"

# Lowest first. A module may import its own layer and the ones below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("in-container programs and the record format",
     ("lab.records", "lab.echo", "lab.shaper", "lab.capture", "lab.learner", "lab.netns")),
    ("shared names", ("lab.errors", "lab.home", "lab.labels", "lab.readiness", "lab.verdict", "lab.progress",
                      "lab.fault_actions")),
    ("model", ("lab.scenario", "lab.placement", "lab.topology", "lab.programs.spec", "lab.expect")),
    ("evidence", ("lab.logs", "lab.streams", "lab.wire", "lab.programs", "lab.report", "lab.html")),
    ("rendering and engines", ("lab.compose", "lab.compose_topology", "lab.rendering", "lab.engine", "lab.hostrules")),
    ("run logic", ("lab.run", "lab.phases", "lab.collect", "lab.salvage", "lab.faults", "lab.suite", "lab.junit",
                   "lab.images", "lab.cleanup", "lab.doctor")),
    ("terminal", ("lab.console",)),
    ("command line", ("lab.cli", "lab.__main__")),
]
ENGINE_MAY_IMPORT = ("lab.engine", "lab.errors", "lab.labels")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer): the longest prefix decides
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LAB.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(p for p in LAB.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_of_the_lab_has_a_layer():
    assert [module_name(p) for p in SOURCES if layer_of(module_name(p)) is None and module_name(p) != "lab"] == []


def test_no_import_points_up_a_layer():
    upward = []
    for path in SOURCES:
        me = module_name(path)
        mine = layer_of(me)
        for line, target in imports(path):
            theirs = layer_of(target) if target.startswith("lab.") else None
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(LAB.parent)}:{line}: {me} ({LAYERS[mine][0]}) imports "
                              f"{target} ({LAYERS[theirs][0]})")
    assert upward == []


def test_only_the_engine_package_talks_to_docker_and_it_knows_nothing_of_runs():
    wrong = []
    for path in SOURCES:
        me, where = module_name(path), path.relative_to(LAB.parent)
        for line, target in imports(path):
            if me.startswith("lab.engine."):
                if target.startswith("lab.") and not target.startswith(ENGINE_MAY_IMPORT):
                    wrong.append(f"{where}:{line}: the engine imports {target}")
            elif target == "docker" or target.startswith("docker."):
                wrong.append(f"{where}:{line}: imports the docker SDK outside lab/engine")
    assert wrong == []
