"""The CI recipes in docs/ci.md run what this repository's own CI (`.ci/run`) runs, in the same
order, so a recipe cannot drift into commands nobody has run."""

from __future__ import annotations

import re
import shlex
import subprocess

import yaml

from lab.home import project_root

ROOT = project_root()
LAB_COMMAND = re.compile(r"^(bash scripts/|\.venv/bin/|make\b)")  # the lab's own steps, not the CI's provisioning


def recipes() -> dict[str, list[str]]:
    """The lab's commands of each YAML block in docs/ci.md, by CI system."""
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
        data = yaml.safe_load(block)
        if "jobs" in data:  # GitHub Actions
            commands = [step["run"] for job in data["jobs"].values() for step in job["steps"] if "run" in step]
            found["github"] = commands
        else:  # GitLab CI: the job's script (before_script only installs the job image's tools)
            (job,) = data.values()
            found["gitlab"] = list(job["script"])
    return found


def ci_run_commands() -> list[str]:
    """What `.ci/run` runs, with `make test` expanded into make's own list of commands."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith(("set ", "cd ")):
            continue
        if shlex.split(line)[0] == "make":
            made = subprocess.run(["make", "-n", "-C", str(ROOT), *shlex.split(line)[1:]], capture_output=True,
                                  text=True, check=True).stdout
            commands += [c for c in made.splitlines() if not c.startswith("make")]
        else:
            commands.append(line)
    return commands


def is_in_order(wanted: list[str], commands: list[str]) -> bool:
    it = iter(commands)
    return all(any(c == w for c in it) for w in wanted)


def test_both_recipes_run_the_commands_of_ci_in_its_order():
    found = recipes()
    assert set(found) == {"github", "gitlab"}
    ran = ci_run_commands()
    assert "bash scripts/setup.sh" in ran and any(c.startswith(".venv/bin/lab test") for c in ran)
    for system, commands in found.items():
        lab_steps = [c for c in commands if LAB_COMMAND.match(c)]
        assert lab_steps == ["bash scripts/setup.sh", ".venv/bin/lab test --junit runs/junit.xml"], system
        assert is_in_order(lab_steps, ran), f"{system}: {lab_steps} not run by .ci/run in this order: {ran}"


def test_recipes_keep_the_report_and_run_directories_even_on_failure():
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    github = next(b for b in blocks if "jobs" in b)
    uploads = [s for job in github["jobs"].values() for s in job["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["if"] == "always()" and uploads[0]["with"]["path"] == "runs/"
    gitlab = next(b for b in blocks if "jobs" not in b)
    (job,) = gitlab.values()
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["reports"]["junit"] == "runs/junit.xml"
    assert "runs/" in job["artifacts"]["paths"]
