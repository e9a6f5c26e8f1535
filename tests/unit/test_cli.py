"""The CLI's contract for bad input (no Docker needed): exit 2 and a one-line message."""

import json
import subprocess
import sys

from lab.home import project_root


def lab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=60, **kw)


def test_bad_scenario_file_exits_2_naming_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nclients: {count: -1}\n")
    result = lab("run", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "clients.count" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_scenario_name_exits_2():
    result = lab("run", "does-not-exist")
    assert result.returncode == 2
    assert "no scenario named 'does-not-exist'" in result.stderr and "basic" in result.stderr


def test_bad_client_count_is_a_usage_error():
    result = lab("run", "basic", "--clients", "0")
    assert result.returncode == 2 and "expected 1..500, got 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_shows_every_scenario_with_its_description():
    result = lab("list")
    assert result.returncode == 0
    names = sorted(p.stem for p in (project_root() / "scenarios").glob("*.yaml"))
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert listed == names


def test_logs_without_runs_says_how_to_start_one(tmp_path):
    result = lab("logs", "--out", str(tmp_path))
    assert result.returncode == 1 and "lab run basic" in result.stderr


def test_engine_unreachable_gives_one_line_and_the_doctor_hint(tmp_path):
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = lab("run", "basic", "--out", str(tmp_path), env=env)
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr and "lab doctor" in result.stderr
    assert "Traceback" not in result.stderr


def test_test_jobs_must_be_at_least_one():
    for bad in ("0", "-3"):
        result = lab("test", "-j", bad, "basic")
        assert result.returncode == 2, bad
        assert f"expected 1..256, got {bad}" in result.stderr and "Traceback" not in result.stderr


def test_test_unknown_name_or_glob_lists_the_known_scenarios(tmp_path):
    result = lab("test", "basic", "nope", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "no scenario named 'nope'" in result.stderr and "client-crash" in result.stderr
    result = lab("test", "zz*", "--out", str(tmp_path))
    assert result.returncode == 2 and "matches 'zz*'; known: basic" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing runs, nothing is written"


def test_test_bad_scenario_file_exits_2_with_a_junit_error_for_it(tmp_path):
    import junitparser

    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nclients: {count: -1}\n")
    junit = tmp_path / "report.xml"
    result = lab("test", "basic", str(bad), "--junit", str(junit), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and f"{bad}: clients.count" in result.stderr
    cases = {c.name: c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s}
    assert isinstance(cases["bad"].result[0], junitparser.Error)
    assert "clients.count" in cases["bad"].result[0].message
    assert cases["basic"].is_skipped and not (tmp_path / "runs").exists()


def test_test_with_the_engine_down_reports_every_scenario_as_an_error(tmp_path):
    import junitparser

    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    junit = tmp_path / "report.xml"
    result = lab("test", "basic", "udp-*", "--junit", str(junit), "--out", str(tmp_path), env=env)
    assert result.returncode == 1 and "lab doctor" in result.stderr and "Traceback" not in result.stderr
    suites = list(junitparser.JUnitXml.fromfile(str(junit)))
    assert [s.name for s in suites] == ["basic", "udp-loss", "udp-only"]
    assert all("cannot reach the Docker engine" in c.result[0].message for s in suites for c in s)


def write_run(runs, name: str, records: list[dict]) -> None:
    directory = runs / name
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"run_id": name, "started": name, "verdict": "passed"}))
    (directory / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_logs_says_which_stream_is_incomplete_and_which_cannot_be_told(tmp_path):
    base = {"ts": "2026-11-25T08:00:00.000000Z", "role": "server", "proto": "tcp", "event": "received"}
    write_run(tmp_path, "20261125-080000-basic-aaaaaa",
              [{**base, "container": "lab-a-server-1", "n": n} for n in (1, 2, 6)]
              + [{**base, "container": "lab-a-client1-1", "role": "client", "n": n} for n in (1, 2)])
    write_run(tmp_path, "20261125-070000-basic-bbbbbb", [{**base, "v": 1, "container": "lab-b-server-1"}])
    newer = lab("logs", "--out", str(tmp_path), "--json")
    assert newer.returncode == 0 and len(newer.stdout.splitlines()) == 5
    assert newer.stderr.strip() == "incomplete: lab-a-server-1 lost 3 record(s) (n 3-5)"
    older = lab("logs", "20261125-070000", "--out", str(tmp_path))
    assert "lab-b-server-1: 1 record(s) carry no sequence number (schema 1): completeness unknown" in older.stderr
