"""Collect a run's records into its directory as streams: memory bounded, whatever the volume.

Each container's records come from the file its program appended them to on the run's records
mount (`records/<service>.jsonl`: every record and every stderr line, complete whatever the
Docker daemon's log settings). Without one (an older image, a program that could not open it,
one that died before it could), Docker's log store is the source, with Docker's timestamps, and
the sequence check says what the daemon did not keep.

The steps never hold more than a line per stream:
- `normalise` turns one container's lines into timeline lines (`ts<TAB>json`), adds who printed
  each record, and checks the stream's sequence numbers as they pass;
- `merge` heap-merges the containers' timelines (each already in time order) into events.jsonl:
  a records file is normalised on its way into the merge; only Docker's copy of a container's
  output is written to a timeline file first.
"""

from __future__ import annotations

import heapq
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lab.errors import LabError
from lab.logs import Origin, infer_ip
from lab.streams import StreamCheck

if TYPE_CHECKING:
    from lab.engine import ContainerInfo, Engine

# A record as the writer prints it starts with these fields in this order (lab/records/writer.py):
# the collector reads `n` and `ts` from the front and appends the container's fields at the end,
# without decoding the rest. Anything else takes the slow path through the JSON parser.
_FRONT = re.compile(rb'\{"v":\d+,"n":(\d+),"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"')
_NO_TS = b"0000-00-00T00:00:00.000000Z"


def docker_ts(stamp: bytes) -> bytes:
    """Docker's `2026-11-25T08:55:41.780206123Z` (nanoseconds) as a record's microsecond `ts`."""
    stamp = stamp.rstrip(b"Z")
    head, _, frac = stamp.partition(b".")
    return head + b"." + (frac + b"000000")[:6] + b"Z"


def split_docker_line(line: bytes) -> tuple[bytes, bytes]:
    """A `docker logs --timestamps` line as (record ts, the line as printed)."""
    stamp, _, rest = line.partition(b" ")
    return docker_ts(stamp), rest


class Normaliser:
    """Turns one container's output into timeline lines and checks its stream on the way."""

    def __init__(self, origin: Origin, check: StreamCheck | None = None) -> None:
        self.origin = origin
        self.check = check or StreamCheck(origin.container)
        fields = {"container": origin.container, "service": origin.service}
        if origin.ip:
            fields["ip"] = origin.ip
        if origin.node:
            fields["node"] = origin.node
        self._last_ts: bytes | None = None
        self._suffix = b"," + json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[1:].encode()

    def record_line(self, line: bytes) -> bytes | None:
        """A line the program wrote as a record (its records file): `ts<TAB>json`."""
        line = line.rstrip(b"\r\n")
        if not line.strip():
            return None
        front = _FRONT.match(line)
        if front and line.endswith(b"}"):
            self.check.see(int(front.group(1)))
            self._last_ts = front.group(2)
            return self._last_ts + b"\t" + line[:-1] + self._suffix + b"\n"
        # A line of stderr the program copied here: at the time of the record before it.
        return self._slow(line, self._last_ts)

    def timeline(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """`record_line` over a whole records file, the common case inlined: this is the loop
        every byte of a run's records goes through."""
        front_of = _FRONT.match
        check = self.check
        tail = self._suffix + b"\n"
        for line in lines:
            front = front_of(line)
            if front is not None and line.endswith(b"}\n"):
                n = int(front[1])
                last = check.last
                if last is not None and n == last + 1:
                    check.records += 1
                    check.last = n
                else:
                    check.see(n)
                self._last_ts = ts = front[2]
                yield b"%b\t%b%b" % (ts, line[:-2], tail)
            else:
                timeline = self.record_line(line)
                if timeline is not None:
                    yield timeline

    def output_line(self, ts: bytes, line: bytes) -> bytes | None:
        """A line as Docker kept it (with its time): a record if it is one, else an `output`."""
        line = line.rstrip(b"\r\n")
        if not line.strip():
            return None
        return self._slow(line, ts)

    def _slow(self, line: bytes, ts: bytes | None) -> bytes:
        record: dict[str, Any] | None = None
        if line.startswith(b"{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and "event" in parsed and "ts" in parsed:
                record = parsed
                self.check.see(record.get("n"))
                self._last_ts = str(record["ts"]).encode()
        if record is None:
            # Nothing is dropped: a traceback or a stray print is kept at the time Docker saw it.
            record = {"v": 2, "ts": (ts or _NO_TS).decode(), "host": self.origin.service, "role": self.origin.role,
                      "proto": None, "event": "output", "text": line.decode("utf-8", "replace")}
        record["container"] = self.origin.container
        record["service"] = self.origin.service
        record.setdefault("role", self.origin.role)
        if self.origin.ip:
            record["ip"] = self.origin.ip
        if self.origin.node:
            record["node"] = self.origin.node
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        # The merge key is the first 27 bytes: a record's `ts` has exactly that many.
        key = str(record["ts"]).encode()[:27].ljust(27, b"0")
        return key + b"\t" + text.encode() + b"\n"


def normalise(origin: Origin, records: Iterable[bytes] | None, docker: Iterable[bytes] | None, out: IO[bytes],
              check: StreamCheck | None = None, raw: IO[bytes] | None = None) -> StreamCheck:
    """One container's timeline lines into `out`, in time order.

    `records`: the lines of its records file. `docker`: Docker's output lines with timestamps
    (`docker logs --timestamps`), copied as printed into `raw` when given. Either may be None;
    both are in time order and are merged on the fly.
    """
    normaliser = Normaliser(origin, check)

    def from_docker(lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            ts, printed = split_docker_line(line)
            if raw is not None:
                raw.write(printed if printed.endswith(b"\n") else printed + b"\n")
            timeline = normaliser.output_line(ts, printed)
            if timeline is not None:
                yield timeline

    sources = [*([normaliser.timeline(records)] if records is not None else []),
               *([from_docker(docker)] if docker is not None else [])]
    out.writelines(sources[0] if len(sources) == 1 else heapq.merge(*sources, key=_ts_of))
    return normaliser.check


def _ts_of(line: bytes) -> bytes:
    return line[:27]


def merge(timelines: Iterable[Iterable[bytes]], out: IO[bytes]) -> None:
    """Heap-merge time-ordered timeline streams into JSON lines.

    Each stream's own order is always kept; lines of different streams with the same time come
    in the order of their text (the timeline's text starts with the time, so no key is needed).
    """
    out.writelines(map(itemgetter(slice(28, None)), heapq.merge(*timelines)))


_TS = re.compile(rb'"ts": ?"([^"]*)"')


def _record_ts(line: bytes) -> bytes:
    found = _TS.search(line)
    return found.group(1) if found else b""


def add_records(events: Path, records: Iterable[dict[str, Any]]) -> None:
    """Records made after collection (derived views, diagnoses) merged into events.jsonl by
    time, as a stream; the file is rewritten only when there is something to add."""
    extra = sorted(records, key=lambda r: str(r.get("ts") or ""))
    if not extra:
        return
    lines = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in extra]
    tmp = events.with_suffix(".jsonl.tmp")
    with open(events, "rb") as existing, open(tmp, "wb") as out:
        out.writelines(heapq.merge(existing, lines, key=_record_ts))
    tmp.replace(events)


# --- a run's containers -----------------------------------------------------------------------

RECORDS_DIR = "records"
TIMELINE_DIR = ".timeline"


def records_file(directory: Path, service: str) -> Path:
    """Where a service's program appends its records on the run's records mount."""
    return directory / RECORDS_DIR / f"{service}.jsonl"


def prepare_records(directory: Path, services: Iterable[str]) -> None:
    """One empty records file per service, writable by the containers whatever uid `lab` runs as
    (the echo programs run as uid 10001, the shapers as a root without CAP_DAC_OVERRIDE)."""
    (directory / RECORDS_DIR).mkdir(exist_ok=True)
    for service in services:
        path = records_file(directory, service)
        path.touch()
        path.chmod(0o666)


def collect_run(engine: Engine, containers: Iterable[ContainerInfo], directory: Path,
                lab_records: list[dict[str, Any]], errors: list[str]) -> dict[str, StreamCheck]:
    """Every container's records into `events.jsonl` (time-ordered), Docker's output of each into
    `logs/<container>.log` for one without a records file; returns each container's stream check.
    Errors are added to `errors`."""
    containers = sorted(containers, key=lambda c: c.name)
    by_service = {c.service: c for c in containers}
    timeline_dir = directory / TIMELINE_DIR
    timeline_dir.mkdir(exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    checks: dict[str, StreamCheck] = {}
    timelines: list[Path] = []
    own_files: list[tuple[Path, Normaliser]] = []
    for info in containers:
        own_file = records_file(directory, info.service)
        has_file = own_file.exists() and own_file.stat().st_size > 0
        if info.ip is None and info.role not in ("shaper", "capture"):
            # No IP of its own in Docker's view: an echo container behind its shaper, a learner's
            # program behind its socket watcher.
            owner = by_service.get(f"{info.service}-shaper") or by_service.get(f"{info.service}-sockets")
            info.ip = (owner.ip if owner else None) or _infer_ip(own_file, engine, info.id, has_file)
        origin = Origin(container=info.name, service=info.service, role=info.role, ip=info.ip, node=info.node)
        if has_file:
            # Its own records file has all of its output, already in time order: it goes
            # straight into the merge, normalised on the way (no copy of it written and read back).
            normaliser = Normaliser(origin)
            own_files.append((own_file, normaliser))
            checks[info.name] = normaliser.check
            continue
        # Without one, Docker's copy is read (and kept as it was printed in logs/).
        timeline = timeline_dir / f"{info.name}.tl"
        try:
            with open(timeline, "wb") as out, open(directory / "logs" / f"{info.name}.log", "wb") as raw:
                check = normalise(origin, None, engine.container_output(info.id), out, raw=raw)
        except (LabError, OSError) as exc:
            errors.append(f"logs of {info.name}: {exc}")
            continue
        if check.missing:
            check.cause = _safe(lambda i=info: engine.log_limits(i.id)) or "Docker's log store did not keep them"
        checks[info.name] = check
        timelines.append(timeline)
    lab_timeline = timeline_dir / "lab.tl"
    with open(lab_timeline, "wb") as out:
        for record in sorted(lab_records, key=lambda r: r.get("ts") or ""):
            out.write(str(record["ts"]).encode()[:27] + b"\t"
                      + json.dumps(record, ensure_ascii=False).encode() + b"\n")
    timelines.append(lab_timeline)
    events = directory / "events.jsonl"
    with ExitStack() as stack:
        streams = [normaliser.timeline(stack.enter_context(open(path, "rb"))) for path, normaliser in own_files]
        streams += [stack.enter_context(open(path, "rb")) for path in timelines]
        out = stack.enter_context(open(events.with_suffix(".jsonl.tmp"), "wb"))
        merge(streams, out)
    events.with_suffix(".jsonl.tmp").replace(events)
    shutil.rmtree(timeline_dir, ignore_errors=True)
    return checks


def _infer_ip(own_file: Path, engine: Engine, container_id: str, has_file: bool, looked_at: int = 200) -> str | None:
    """A container's IP from its first records (for an exited container Docker no longer knows)."""
    with (open(own_file, "rb") if has_file else _nothing()) as fh:
        source = fh if has_file else (split_docker_line(line)[1] for line in engine.container_output(container_id))
        head = []
        for line, _ in zip(source, range(looked_at), strict=False):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                head.append(record)
    return infer_ip(head)


@contextmanager
def _nothing():
    yield ()


def _safe(fn):
    try:
        return fn()
    except LabError:
        return None
