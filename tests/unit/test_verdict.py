"""Verdicts: one enum, the same strings on disk as before, the same exit codes."""

from __future__ import annotations

import json

from lab.report import VERDICT_STYLE
from lab.verdict import Verdict


def test_on_disk_strings_are_unchanged():
    # Run directories written before the enum existed must read back the same.
    assert [v.value for v in Verdict] == ["running", "passed", "failed", "timeout", "interrupted", "error"]
    assert json.dumps({"verdict": Verdict.TIMEOUT}) == '{"verdict": "timeout"}'
    assert Verdict("interrupted") is Verdict.INTERRUPTED and f"{Verdict.PASSED:<8}|" == "passed  |"


def test_exit_codes_and_failures():
    assert {v: v.exit_code for v in Verdict if v.exit_code != 1} == {Verdict.PASSED: 0, Verdict.INTERRUPTED: 130}
    assert {v for v in Verdict if v.is_failure} == {Verdict.FAILED, Verdict.TIMEOUT}


def test_a_manifest_verdict_string_finds_its_style():
    assert all(VERDICT_STYLE[v.value] for v in Verdict)
