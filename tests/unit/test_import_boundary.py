"""The in-container packages import only the standard library and each other, as allowed.

The node image carries `lab/echo`, `lab/shaper`, `lab/capture`, `lab/learner`, `lab/netns` and `lab/records`
and nothing else of the lab:
an import of the orchestrator or of a third-party package would fail only inside a container.
This reads every import statement (top level and inside functions) and fails on any other.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[2] / "lab"

# What each in-container package may import besides the standard library: itself and the
# shared record format. The shaper must not lean on the echo programs, nor the other way round.
ALLOWED = {
    "echo": ("lab.echo", "lab.records"),
    "shaper": ("lab.shaper", "lab.records"),
    "records": ("lab.records",),
    "capture": ("lab.capture", "lab.records"),
    "learner": ("lab.learner", "lab.records"),
    "netns": ("lab.netns", "lab.records"),
}


def imports_of(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, level) for every import in a file; level > 0 for relative imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def outside_boundary(package: str) -> list[str]:
    allowed = ALLOWED[package]
    bad = []
    for path in sorted((LAB / package).rglob("*.py")):
        for line, module, level in imports_of(path):
            where = f"{path.relative_to(LAB.parent)}:{line}"
            if level:
                # One import style in every in-container package: absolute, so a module reads the
                # same wherever it is moved and `python3 -m` of any module works.
                bad.append(f"{where}: relative import {'.' * level}{module}")
            elif module.split(".")[0] in sys.stdlib_module_names:
                continue
            elif not any(module == name or module.startswith(name + ".") for name in allowed):
                bad.append(f"{where}: imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_in_container_package_imports_only_stdlib_and_its_allowed_packages(package):
    assert (LAB / package / "__init__.py").exists()
    assert outside_boundary(package) == []


def test_the_check_sees_a_forbidden_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    import yaml\n    from lab.scenario import Scenario\n    from . import x\n")
    assert imports_of(module) == [(1, "json", 0), (4, "yaml", 0), (5, "lab.scenario", 0), (6, "", 1)]


def _copy_alone(tmp_path: Path, *packages: str) -> Path:
    """The given lab packages copied alone into a fresh directory (no lab/__init__.py either)."""
    for package in packages:
        shutil.copytree(LAB / package, tmp_path / "lab" / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _python_alone(cwd: Path, *args: str, **kwargs) -> subprocess.Popen:
    # -S: no site-packages, so neither the installed lab nor any third-party package is importable.
    return subprocess.Popen([sys.executable, "-S", "-m", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_echo_programs_run_from_a_copy_of_echo_and_records_alone(tmp_path):
    root = _copy_alone(tmp_path, "echo", "records")
    server = _python_alone(root, "lab.echo", "server", "--proto", "udp", "--port", "0", "--host", "127.0.0.1")
    try:
        listening = json.loads(server.stdout.readline())
        assert listening["event"] == "listening", listening
        port = listening["local"].rsplit(":", 1)[1]
        client = _python_alone(root, "lab.echo", "client", "--proto", "udp", "--port", port,
                               "--message", "copied", "--interval", "0", "--name", "alone")
        out, err = client.communicate(timeout=30)
        assert client.returncode == 0, err
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["event"] for r in records if r["event"] == "reply"] == ["reply"]
        assert {r["host"] for r in records} == {"alone"}
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_shaper_cli_runs_from_a_copy_of_shaper_and_records_alone(tmp_path):
    root = _copy_alone(tmp_path, "shaper", "records")
    bad = _python_alone(root, "lab.shaper", "run", "--loss", "2")
    _, err = bad.communicate(timeout=30)
    assert bad.returncode == 2
    assert err.strip().splitlines() == ["python3 -m lab.shaper: error: bad --loss 2.0: must be a fraction from 0 to 1"]
