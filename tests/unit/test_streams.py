"""Gap detection on each program's numbered record stream (docs/log-schema.md, field `n`)."""

import pytest

from lab.streams import KEPT_RANGES, StreamCheck, check_streams, problems


def checked(*numbers) -> StreamCheck:
    check = StreamCheck("lab-x-server-1")
    for n in numbers:
        check.see(n)
    return check


def test_an_unbroken_stream_is_complete():
    check = checked(1, 2, 3, 4)
    assert check.complete and check.missing == 0 and check.starts == 1 and check.problem() is None


def test_a_restart_begins_again_at_one_and_loses_nothing():
    check = checked(1, 2, 3, 1, 2)
    assert check.complete and check.starts == 2


@pytest.mark.parametrize(("numbers", "missing", "ranges", "start_missing"), [
    ((1, 2, 5, 6), 2, [(3, 4)], False),
    ((4, 5, 6), 3, [(1, 3)], True),
    ((1, 2, 3, 3), 2, [(1, 2)], False),  # back below: a new start whose first records are gone
    ((1, 3, 5, 9), 5, [(2, 2), (4, 4), (6, 8)], False),
])
def test_gaps_and_a_missing_start_are_found(numbers, missing, ranges, start_missing):
    check = checked(*numbers)
    assert not check.complete
    assert (check.missing, check.ranges, check.start_missing) == (missing, ranges, start_missing)
    assert check.problem().startswith(f"lab-x-server-1 lost {missing} record(s)")


def test_the_problem_names_the_ranges_and_the_cause():
    check = checked(4001, 4002, 4010)
    check.cause = "json-file log driver keeps max-size 10m x 3"
    assert check.problem() == ("lab-x-server-1 lost 4007 record(s) including its start (n 1-4000, 4003-4009): "
                               "json-file log driver keeps max-size 10m x 3")


def test_memory_per_stream_is_bounded_however_many_gaps():
    check = checked(*range(1, 20_000, 2))
    assert check.missing == 9_999 and len(check.ranges) == KEPT_RANGES
    assert check.problem().endswith(", ...)")


def test_records_without_numbers_make_completeness_unknown():
    check = checked(None, None)
    assert not check.complete and check.missing == 0
    assert "no sequence number (schema 1): completeness unknown" in check.problem()


def test_a_timeline_is_checked_per_container_and_skips_output_and_lab_records():
    timeline = [
        {"container": "a", "role": "server", "event": "listening", "n": 1},
        {"container": "b", "role": "client", "event": "connected", "n": 1},
        {"container": "a", "role": "server", "event": "output", "text": "Traceback"},
        {"role": "lab", "event": "fault"},
        {"container": "a", "role": "server", "event": "accepted", "n": 3},
        {"container": "b", "role": "client", "event": "sent", "n": 2},
    ]
    checks = check_streams(timeline)
    assert sorted(checks) == ["a", "b"]
    assert checks["b"].complete and checks["a"].ranges == [(2, 2)]
    assert problems(checks.values()) == ["a lost 1 record(s) (n 2)"]
