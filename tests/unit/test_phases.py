"""The start barrier's two sides and a run's phases: pure logic, no Docker."""

import os
import stat
import threading
import time

import pytest

from lab.compose import START_FILE, render
from lab.echo.barrier import POLL_SECONDS, BarrierTimeout, mark_done, poll_interval, read_done, wait_for_start
from lab.phases import (
    Phases,
    await_ready,
    control_directory,
    finished,
    forget_done,
    last_client_record,
    let_go,
    release_start,
)
from lab.scenario import Scenario


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_client_waits_until_the_start_file_appears():
    fake = FakeTime()
    appears_at = 1.0
    opened = wait_for_start("/c/go", deadline=10, exists=lambda _: fake.now >= appears_at,
                            clock=fake.clock, sleep=fake.sleep, poll=0.05)
    assert opened is True
    assert appears_at <= fake.now < appears_at + 0.05 + 1e-9  # noticed within one poll
    assert max(fake.sleeps) <= 0.05


def test_a_client_gives_up_at_the_deadline_and_never_sleeps_past_it():
    fake = FakeTime()
    with pytest.raises(BarrierTimeout, match=r"/c/go did not come within 0.12 s"):
        wait_for_start("/c/go", deadline=0.12, exists=lambda _: False, clock=fake.clock, sleep=fake.sleep, poll=0.05)
    assert fake.now == pytest.approx(0.12)


def test_a_stopped_client_stops_waiting():
    fake = FakeTime()
    opened = wait_for_start("/c/go", deadline=10, stopped=lambda: fake.now >= 0.2, exists=lambda _: False,
                            clock=fake.clock, sleep=fake.sleep)
    assert opened is False and fake.now < 0.3


@pytest.mark.parametrize("waiting, interval", [(0, 0.02), (3, 0.02), (50, 0.02), (200, 0.08), (500, 0.2),
                                               (5000, 0.2)])
def test_the_waiting_clients_look_about_2500_times_a_second_in_all_within_20_ms_to_a_fifth(waiting, interval):
    assert poll_interval(waiting) == pytest.approx(interval)
    assert poll_interval(waiting) <= POLL_SECONDS


def test_rendered_clients_look_for_the_start_as_often_as_their_number_allows(tmp_path):
    def poll_of(count):
        services = render(scenario(clients={"count": count}), run_id="r", owner="o",
                          control_dir=str(tmp_path))["services"]
        command = services["client1"]["command"]
        return float(command[command.index("--start-poll") + 1])

    assert poll_of(3) == pytest.approx(0.02)
    assert poll_of(400) == pytest.approx(0.16)


def test_the_lab_looks_at_the_ready_files_as_often_as_the_clients_look_for_the_start(tmp_path):
    control = control_directory(tmp_path, ["client1", "client2"])
    fake = FakeTime()

    def sleep(seconds):
        fake.sleep(seconds)
        if fake.now >= 1:
            for name in ("client1", "client2"):
                (control / "ready" / name).write_text("waiting\n")

    assert await_ready(control, ["client1", "client2"], set, deadline=60, clock=fake.clock, sleep=sleep) == set()
    assert fake.sleeps == pytest.approx([poll_interval(2)] * len(fake.sleeps))
    assert 1 <= fake.now < 1 + poll_interval(2) + 1e-9


def test_release_creates_the_file_whole_and_readable_by_the_containers(tmp_path):
    old = os.umask(0o077)  # a strict umask must not lock the clients out
    try:
        control = control_directory(tmp_path)
        waiter = threading.Thread(target=wait_for_start, args=(str(control / "go"), 5))
        waiter.start()
        time.sleep(0.1)
        assert waiter.is_alive()  # the barrier holds until the release
        released = release_start(control, lambda: "2026-11-25T10:00:00.000000Z")
        waiter.join(5)
        assert not waiter.is_alive()
    finally:
        os.umask(old)
    go = control / START_FILE.rsplit("/", 1)[1]
    assert go.read_text() == released + "\n"
    assert stat.S_IMODE(control.stat().st_mode) == 0o755 and stat.S_IMODE(go.stat().st_mode) == 0o644
    assert sorted(p.name for p in control.iterdir()) == ["go", "ready"]  # no temporary file left


def test_each_client_gets_an_empty_ready_file_only_it_writes(tmp_path):
    control = control_directory(tmp_path, ["client1", "client2"])
    for name in ("client1", "client2"):
        ready = control / "ready" / name
        assert ready.read_text() == "" and stat.S_IMODE(ready.stat().st_mode) == 0o666
    assert stat.S_IMODE((control / "ready").stat().st_mode) == 0o755  # nobody adds files


def test_the_release_waits_for_every_client_to_be_ready_or_gone(tmp_path):
    control = control_directory(tmp_path, ["client1", "client2", "client3"])
    fake = FakeTime()
    asked = []

    def gone():
        asked.append(fake.now)
        return {"client3"} if fake.now >= 1 else set()  # client3 crashed before it was ready

    def sleep(seconds):
        fake.sleep(seconds)
        if fake.now >= 0.5:
            (control / "ready" / "client1").write_text("waiting\n")
        if fake.now >= 3:
            (control / "ready" / "client2").write_text("waiting\n")

    late = await_ready(control, ["client1", "client2", "client3"], gone, deadline=60, clock=fake.clock, sleep=sleep)
    assert late == set()
    assert 3 <= fake.now < 3.3  # released within one look of the last client being ready
    assert all(b - a >= 2 for a, b in zip(asked, asked[1:], strict=False))  # the daemon is asked sparingly


def test_the_release_does_not_wait_past_its_deadline(tmp_path):
    control = control_directory(tmp_path, ["client1", "client2"])
    (control / "ready" / "client1").write_text("waiting\n")
    fake = FakeTime()
    late = await_ready(control, ["client1", "client2"], set, deadline=5, clock=fake.clock, sleep=fake.sleep)
    assert late == {"client2"} and fake.now == pytest.approx(5)


def scenario(**data):
    return Scenario.model_validate({"name": "t", "description": "x", **data})


def test_only_lab_runs_put_clients_behind_the_barrier():
    plain = render(scenario(clients={"count": 2}))
    for name in ("client1", "client2"):
        assert "--start-file" not in plain["services"][name]["command"]
        assert "volumes" not in plain["services"][name]
    run = render(scenario(clients={"count": 2}), run_id="r1", control_dir="/runs/r1/control")
    for name in ("client1", "client2"):
        command = run["services"][name]["command"]
        assert command[command.index("--start-file") + 1] == START_FILE
        assert float(command[command.index("--start-deadline") + 1]) >= 120
        assert command[command.index("--ready-file") + 1] == "/lab/ready"
        assert run["services"][name]["volumes"] == [
            {"type": "bind", "source": "/runs/r1/control", "target": "/lab/control", "read_only": True},
            {"type": "bind", "source": f"/runs/r1/control/ready/{name}", "target": "/lab/ready"}]
    assert "volumes" not in run["services"]["server"]  # only the clients wait; nothing can write there


def test_start_after_counts_from_the_release():
    compose = render(scenario(clients={"count": 1, "start_after": 2.5}), run_id="r1", control_dir="/c")
    command = compose["services"]["client1"]["command"]
    assert command[0] == "python3"  # no shell sleep before the program: it waits after the barrier
    assert command[command.index("--start-delay") + 1] == "2.5"


def test_the_server_weighs_as_much_as_all_its_clients():
    assert render(scenario(clients={"count": 1}))["services"]["server"]["cpu_shares"] == 1024
    assert render(scenario(clients={"count": 200}))["services"]["server"]["cpu_shares"] == 200 * 1024
    assert render(scenario(clients={"count": 500}))["services"]["server"]["cpu_shares"] == 262144  # kernel max
    shaped = render(scenario(clients={"count": 10}, server={"impair": {"delay_ms": 10}}))["services"]
    assert shaped["server-shaper"]["cpu_shares"] == 10 * 1024
    assert "cpu_shares" not in shaped["client1"]


def test_phases_are_timed_even_when_one_fails_and_teardown_is_stop_plus_removal():
    ticks = iter([0.0, 12.0, 12.0, 15.5, 15.5, 16.0, 16.0, 16.5, 16.5, 18.0])
    phases = Phases(clock=lambda: next(ticks))
    with phases.timed("bring_up") as notes:
        notes["containers"] = 51
    with pytest.raises(KeyboardInterrupt), phases.timed("conversation"):
        raise KeyboardInterrupt
    for name in ("stopping", "collection", "removal"):
        with phases.timed(name):
            pass
    phases.note("conversation", clients_talked=3.0)
    assert phases.reported() == {"bring_up": 12.0, "conversation": 3.5, "collection": 0.5, "teardown": 2.0}
    assert phases.summary() == ("bring-up 12.0 s (51 containers, 0.24 s each) · conversation 3.5 s "
                                "(the clients talked for 3.0 s) · collection 0.5 s · teardown 2.0 s")
    detail = phases.manifest()["detail"]
    assert detail["bring_up"] == {"seconds": 12.0, "containers": 51}
    assert detail["stopping"] == {"seconds": 0.5} and detail["removal"] == {"seconds": 1.5}


def test_how_long_the_clients_talked_comes_from_their_last_record():
    records = [
        {"role": "server", "ts": "2026-11-25T10:00:09.000000Z"},
        {"role": "client", "ts": "2026-11-25T10:00:03.250000Z"},
        {"role": "client", "ts": "2026-11-25T10:00:02.000000Z"},
        {"role": "lab", "ts": "2026-11-25T10:00:08.000000Z"},
    ]
    assert last_client_record(records, "2026-11-25T10:00:00.000000Z") == 3.25
    assert last_client_record(records[:1], "2026-11-25T10:00:00.000000Z") is None


@pytest.mark.parametrize("text, status", [
    ("done 0\n", 0), ("done 1\n", 1), ("done 3", 3),
    ("", None), ("waiting\n", None), ("done\n", None), ("done x\n", None), ("don", None)])
def test_a_ready_file_says_a_client_is_done_only_with_its_status_written_whole(text, status):
    assert read_done(text) == status


def test_the_finished_clients_are_those_whose_ready_file_says_done(tmp_path):
    control = control_directory(tmp_path, ["client1", "client2", "client3"])
    mark_done(str(control / "ready" / "client1"), 0)
    mark_done(str(control / "ready" / "client3"), 1)
    (control / "ready" / "client2").write_text("waiting\n")
    assert finished(control, ["client1", "client2", "client3", "client4"]) == {"client1": 0, "client3": 1}
    forget_done(control, "client3")  # started again by a fault: not done until it says so anew
    assert finished(control, ["client1", "client2", "client3"]) == {"client1": 0}


def test_letting_go_creates_the_leave_file_the_clients_are_told_of(tmp_path):
    control = control_directory(tmp_path, ["client1"])
    let_go(control, lambda: "2026-11-26T01:00:00.000000Z")
    compose = render(scenario(clients={"count": 1}), run_id="r", owner="o",
                     control_dir=str(control))
    command = compose["services"]["client1"]["command"]
    leave = command[command.index("--leave-file") + 1]
    assert (control / leave.rsplit("/", 1)[1]).read_text() == "2026-11-26T01:00:00.000000Z\n"
    assert stat.S_IMODE((control / "leave").stat().st_mode) == 0o644
