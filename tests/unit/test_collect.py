"""Collecting a run's records as streams: every line kept, time order by merging, memory bounded.

Boundedness is checked by counting what is held (lines read but not yet written, records alive),
never by timing.
"""

from __future__ import annotations

import io
import json

from flood import Held

from lab.collect import Normaliser, docker_ts, merge, normalise
from lab.logs import Origin, join_views

ORIGIN = Origin(container="lab-x-client1-1", service="client1", role="client", ip="10.77.0.11")


def ts(second: float) -> str:
    whole = int(second)
    return f"2026-11-25T08:00:{whole:02d}.{round((second - whole) * 1e6):06d}Z"


def written(n: int, second: float, event: str = "sent", **fields) -> bytes:
    """A record line as the writer prints it: v, n and ts first."""
    record = {"v": 2, "n": n, "ts": ts(second), "host": "client1", "role": "client", "proto": "tcp",
              "event": event, **fields}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def docker_line(second: float, text: str) -> bytes:
    return ts(second).replace("Z", "123Z").encode() + b" " + text.encode() + b"\n"


def test_docker_timestamps_become_record_times():
    assert docker_ts(b"2026-11-25T08:55:41.780206123Z") == b"2026-11-25T08:55:41.780206Z"
    assert docker_ts(b"2026-11-25T08:55:41.7Z") == b"2026-11-25T08:55:41.700000Z"


def test_every_line_is_kept_tagged_and_time_ordered():
    records = [written(1, 1, "connected", local="10.77.0.11:40000"), written(2, 3, text="你好"),
               b'{"v":1,"ts":"' + ts(4).encode() + b'","role":"client","event":"summary"}\n']
    docker = [docker_line(2, "Traceback (most recent call last):"), docker_line(2.5, '{"half a json'),
              docker_line(5, "")]
    out, raw = io.BytesIO(), io.BytesIO()
    check = normalise(ORIGIN, records, docker, out, raw=raw)
    lines = out.getvalue().splitlines()
    events = [json.loads(line.split(b"\t", 1)[1]) for line in lines]
    assert [e["event"] for e in events] == ["connected", "output", "output", "sent", "summary"]
    assert [line[:27].decode() for line in lines] == [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert events[1]["text"] == "Traceback (most recent call last):" and events[1]["ts"] == ts(2)
    assert events[3]["text"] == "你好"
    assert all(e["container"] == ORIGIN.container and e["service"] == "client1" and e["ip"] == "10.77.0.11"
               for e in events)
    # The raw copy is Docker's output as printed, without Docker's timestamps.
    assert raw.getvalue().decode().splitlines() == ["Traceback (most recent call last):", '{"half a json', ""]
    # Two numbered records and one from before numbering.
    assert (check.records, check.missing, check.unnumbered) == (3, 0, 1)


def test_a_torn_last_line_is_kept_as_output():
    normaliser = Normaliser(ORIGIN)
    torn = written(7, 1)[:40]
    line = normaliser.record_line(torn)
    record = json.loads(line.split(b"\t", 1)[1])
    assert record["event"] == "output" and record["text"] == torn.decode()


def test_the_sequence_check_sees_a_gap_in_the_records_file():
    check = normalise(ORIGIN, [written(1, 1), written(2, 2), written(5, 3)], [], io.BytesIO())
    assert check.missing == 2 and check.ranges == [(3, 4)]


def test_merge_is_time_ordered_and_keeps_each_streams_order():
    def stream(name, *timed):
        return [ts(s).encode() + b"\t" + json.dumps({"c": name, "i": i}).encode() + b"\n" for s, i in timed]

    # Each stream's own order stays, even for records with the same time whose text would sort
    # the other way (b's "i": 1 before its "i": 0).
    streams = [stream("a", (1, 0), (3, 1), (3, 2)), stream("b", (2, 1), (2, 0), (3, 2)), stream("c", (0.5, 0), (4, 1))]
    out = io.BytesIO()
    merge(streams, out)
    got = [(r["c"], r["i"]) for r in map(json.loads, out.getvalue().splitlines())]
    assert got == [("c", 0), ("a", 0), ("b", 1), ("b", 0), ("a", 1), ("a", 2), ("b", 2), ("c", 1)]


class Counting:
    """A stream of lines that counts what it has handed out; a sink that counts what it got."""

    def __init__(self) -> None:
        self.read = 0
        self.written = 0
        self.most_held = 0

    def lines(self, make, count: int):
        for i in range(count):
            self.read += 1
            self.most_held = max(self.most_held, self.read - self.written)
            yield make(i)

    def write(self, data: bytes) -> None:
        self.written += 1

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)


def test_normalise_holds_a_line_or_two_however_many_records():
    count = Counting()
    records = count.lines(lambda i: written(i + 1, i * 0.001), 20_000)
    docker = count.lines(lambda i: docker_line(i * 0.01 + 0.0005, f"stderr line {i}"), 2_000)
    check = normalise(ORIGIN, records, docker, count)
    assert count.written == 22_000 and check.complete
    assert count.most_held <= 3


def test_merge_holds_one_line_per_stream_however_many_records():
    count = Counting()
    streams = [count.lines(lambda i, s=s: ts(i * 0.001 + s * 0.0001).encode() + b"\t{}\n", 10_000)
               for s in range(8)]
    merge(streams, count)
    assert count.written == 80_000
    assert count.most_held <= 8 + 1


def test_join_holds_no_records_however_many_messages():
    most_alive = 0

    def conversation(messages: int):
        nonlocal most_alive
        yield Held(role="client", service="client1", proto="tcp", event="connected", session=0,
                   local="10.77.0.11:40000")
        yield Held(role="server", service="server", proto="tcp", event="accepted", peer="10.77.0.11:40000", conn=1)
        for seq in range(1, messages + 1):
            most_alive = max(most_alive, Held.alive)
            yield Held(role="client", service="client1", proto="tcp", event="sent", session=0, seq=seq,
                       text=f"message {seq}")
            yield Held(role="server", service="server", proto="tcp", event="received", peer="10.77.0.11:40000",
                       conn=1, text=f"message {seq}")
            yield Held(role="client", service="client1", proto="tcp", event="reply", session=0, seq=seq,
                       intact=True, bytes=9, rtt_ms=0.5)

    (row,) = join_views(conversation(30_000))
    assert (row.flag, row.sent, row.echoed) == ("ok", 30_000, 30_000)
    assert most_alive <= 2


def test_stderr_lines_in_the_records_file_sit_at_the_time_of_the_record_before():
    records = [written(1, 1), b"Traceback (most recent call last):\n", b"RuntimeError: boom\n", written(2, 2)]
    out = io.BytesIO()
    check = normalise(ORIGIN, records, [], out)
    events = [json.loads(line.split(b"\t", 1)[1]) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["ts"]) for e in events] == [("sent", ts(1)), ("output", ts(1)), ("output", ts(1)),
                                                       ("sent", ts(2))]
    assert events[2]["text"] == "RuntimeError: boom" and check.complete


def test_a_run_s_records_files_and_docker_s_copy_merge_into_one_time_ordered_file(tmp_path):
    from fake_engine import FakeEngine

    from lab.collect import collect_run, prepare_records, records_file
    from lab.engine import ContainerInfo

    prepare_records(tmp_path, ["server", "client1"])
    records_file(tmp_path, "server").write_bytes(
        b"".join(written(n, n * 0.2, "listening" if n == 1 else "echo") for n in range(1, 6)))
    records_file(tmp_path, "client1").write_bytes(  # a gap: record 3 is missing
        b"".join(written(n, n * 0.2 + 0.1) for n in (1, 2, 4)))
    engine = FakeEngine(outputs={"client2": written(1, 0.55).decode() + "a traceback line\n"})
    containers = [ContainerInfo(name=f"lab-x-{s}-1", service=s, role=s.rstrip("12"), status="exited", exit_code=0,
                                ip=f"10.77.0.{i}", id=f"id-{s}", labels={}) for i, s in enumerate(
                                    ("server", "client1", "client2"), start=2)]
    engine.running = {c.name: c for c in containers}
    errors: list[str] = []
    lab = [{"ts": ts(0.45), "event": "fault", "role": "lab"}]
    checks = collect_run(engine, containers, tmp_path, lab, errors)
    assert errors == []
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events) and len(events) == 5 + 3 + 2 + 1
    assert [e["n"] for e in events if e.get("service") == "client1"] == [1, 2, 4]
    assert {e["ip"] for e in events if e.get("service") == "server"} == {"10.77.0.2"}
    assert checks["lab-x-server-1"].complete and checks["lab-x-client2-1"].complete
    assert not checks["lab-x-client1-1"].complete and checks["lab-x-client1-1"].missing
    assert (tmp_path / "logs" / "lab-x-client2-1.log").read_text().endswith("a traceback line\n")
    assert not (tmp_path / ".timeline").exists()
