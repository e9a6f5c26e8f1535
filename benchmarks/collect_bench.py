"""Collecting a run's records: peak memory and throughput, against how much was recorded.

Writes synthetic records files as a flood run's programs would (a server and TCP clients,
512-byte messages, schema 2), then, each step in a fresh process so its peak RSS is its own:

- `collect`: lab.collect.collect_run, the records files into events.jsonl (normalise each
  container's stream, heap-merge them); throughput = records-file bytes / seconds, by the wall
  clock and per CPU second of the collecting process (on a shared machine, the second says
  what one core gives; the child's start-up and imports are included in both);
- `join`: lab.logs.join_views over events.jsonl read back as a stream (clients.csv's rows);
- `judge`: the `basic` scenario's expectations over events.jsonl (lab.expect.evaluate);
- `wire`: the wire view as `lab run` builds it for a run without a capture (the benchmark
  writes no pcap; benchmarks/wire_bench.py measures reading one): the conversation rows it is
  joined with, then lab.wire.view.build_wire_view and write_wire_view (wire.json, a line per
  message);
- `report`: lab.html.write_report on the run directory (report.html), after `wire`, as in
  `lab run`;
- `logs`: `lab logs RUN` (the readable lines, written to /dev/null) and `logs-json`:
  `lab logs RUN --json`, through lab.cli.main;
- `load-all` (reference, the way before streaming, run at --reference-size only): every record
  parsed into a list and sorted by time, as the collector did before.

Usage: python3 benchmarks/collect_bench.py [--size-mb 2048] [--reference-size-mb 200] [--dir DIR]
                                          [--reference-only] [--full-only] [--steps a,b,...]
It needs about 3.5x --size-mb of free disk in DIR (records, events.jsonl, and the merge's
per-container files while it runs), and removes everything it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS = 4
TEXT = ("lorem ipsum dolor sit amet " * 20)[:512]
RUN_ID = "20261125-100000-flood-bench00"  # the run directory's name, inside the benchmark's own directory
STEPS = ("collect", "join", "judge", "wire", "report", "logs", "logs-json")


def write_records(directory: Path, size: int) -> int:
    """Records files for a server and CLIENTS clients, each a time-ordered stream, `size` bytes in
    all; returns the bytes written. Timestamps interleave the clients as a real flood would."""
    records = directory / "records"
    records.mkdir(parents=True)
    files = {name: open(records / f"{name}.jsonl", "w", encoding="utf-8")
             for name in ["server", *(f"client{i}" for i in range(1, CLIENTS + 1))]}
    n = dict.fromkeys(files, 0)
    written = 0

    def emit(name: str, micros: int, rest: str) -> None:
        nonlocal written
        n[name] += 1
        seconds, micro = divmod(micros, 1_000_000)
        minute, second = divmod(seconds, 60)
        line = (f'{{"v":2,"n":{n[name]},"ts":"2026-11-25T10:{minute % 60:02d}:{second:02d}.{micro:06d}Z",'
                f'"host":"{name}",{rest}}}\n')
        files[name].write(line)
        written += len(line)

    server = '"role":"server","proto":"tcp"'
    emit("server", 0, f'{server},"event":"listening","local":"0.0.0.0:19200","mode":"async","backlog":100')
    for i in range(1, CLIENTS + 1):
        local = f"10.77.0.{10 + i}:4{i:04d}"
        client = f'"role":"client","proto":"tcp","session":0,"local":"{local}","peer":"10.77.0.2:19200"'
        emit(f"client{i}", 10 + i, f'{client},"event":"connected","attempt":1')
        emit("server", 20 + i, f'{server},"event":"accepted","local":"10.77.0.2:19200","peer":"{local}","conn":{i}')
    seq, clock = 0, 1000
    while written < size:
        seq += 1
        for i in range(1, CLIENTS + 1):
            local = f"10.77.0.{10 + i}:4{i:04d}"
            client = f'"role":"client","proto":"tcp","session":0,"local":"{local}","peer":"10.77.0.2:19200"'
            clock += 37
            emit(f"client{i}", clock, f'{client},"event":"sent","seq":{seq},"bytes":512,"text":"{TEXT}"')
            emit("server", clock + 5, f'{server},"event":"received","local":"10.77.0.2:19200","peer":"{local}",'
                                      f'"conn":{i},"bytes":512,"text":"{TEXT}"')
            emit("server", clock + 9, f'{server},"event":"echoed","peer":"{local}","conn":{i},"bytes":512')
            emit(f"client{i}", clock + 14, f'{client},"event":"reply","seq":{seq},"bytes":512,"rtt_ms":0.31,'
                                           f'"reads":1,"intact":true')
    for i in range(1, CLIENTS + 1):
        emit(f"client{i}", clock + 100 + i, f'"role":"client","proto":"tcp","event":"summary","planned":{seq},'
                                            f'"sent":{seq},"echoed":{seq},"ok":true')
    for fh in files.values():
        fh.close()
    return written


def step(kind: str, directory: Path) -> dict:
    """One step, in this process (called in a child): seconds and this process's peak RSS."""
    from lab.collect import collect_run
    from lab.engine import ContainerInfo
    from lab.logs import EventFile, join_views

    started = time.perf_counter()
    if kind == "collect":
        containers = [ContainerInfo(name=f"lab-bench-{p.stem}-1", service=p.stem,
                                    role="server" if p.stem == "server" else "client", status="exited",
                                    exit_code=0, ip=f"10.77.0.{2 if p.stem == 'server' else 10 + int(p.stem[6:])}",
                                    id=p.stem)
                      for p in sorted((directory / "records").iterdir())]
        errors: list[str] = []
        checks = collect_run(None, containers, directory, [], errors)  # type: ignore[arg-type]
        assert not errors and all(c.complete for c in checks.values()), (errors, checks)
        detail = {"records": sum(c.records for c in checks.values())}
    elif kind == "join":
        rows = join_views(EventFile(directory / "events.jsonl"))
        assert len(rows) == CLIENTS and all(r.flag == "ok" for r in rows), rows
        detail = {"rows": len(rows), "echoed": sum(r.echoed for r in rows)}
    elif kind == "judge":
        from lab.expect import evaluate
        from lab.scenario import load_scenario

        expectations = load_scenario(ROOT / "scenarios" / "basic.yaml").expect
        results = evaluate(expectations, EventFile(directory / "events.jsonl", slim=True))
        detail = {"expectations": {r.name: r.passed for r in results}}
    elif kind == "wire":
        from lab.wire.file import write_wire_view
        from lab.wire.view import build_wire_view

        events = EventFile(directory / "events.jsonl")
        view = build_wire_view(directory, events, join_views(events), capture_on=False)
        path = write_wire_view(directory, view)
        detail = {"wire_json_mb": round(path.stat().st_size / 1e6, 1)}
    elif kind == "report":
        from lab.html import write_report
        from lab.html.page import load_with_wire

        path = write_report(directory)
        detail = {"report_kb": round(path.stat().st_size / 1e3, 1)}
        if os.environ.get("BENCH_CHECK"):  # what the page counted and drew (loads the run again)
            run = load_with_wire(directory)
            detail.update(messages=sum(s.sent_count for s in run.sockets), drawn=sum(len(s.journeys) for s in run.sockets))
    elif kind in ("logs", "logs-json"):
        from lab.cli import main as lab

        with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            code = lab(["logs", directory.name, "--out", str(directory.parent),
                        *(["--json"] if kind == "logs-json" else [])])
        assert code == 0, code
        detail = {}
    else:  # load-all: the whole timeline in memory, as before
        records = []
        for path in sorted((directory / "records").iterdir()):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    record = json.loads(line)
                    record["container"] = path.stem
                    records.append(record)
        records.sort(key=lambda r: r["ts"])
        detail = {"records": len(records)}
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"step": kind, "seconds": round(seconds, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **detail}


def measure(kind: str, directory: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--step", kind, "--dir", str(directory)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def write_manifest(directory: Path) -> None:
    """What `lab report` and `lab logs` need of a run directory besides its records."""
    containers = {f"lab-bench-{name}-1": {"service": name, "role": "server" if name == "server" else "client",
                                          "ip": "10.77.0.2" if name == "server" else f"10.77.0.{10 + int(name[6:])}",
                                          "exit_code": 0}
                  for name in ["server", *(f"client{i}" for i in range(1, CLIENTS + 1))]}
    manifest = {"run_id": RUN_ID, "scenario": "flood", "started": "2026-11-25T10:00:00.000000Z",
                "ended": "2026-11-25T11:00:00.000000Z", "verdict": "passed", "containers": containers,
                "clients": {f"client{i}": 0 for i in range(1, CLIENTS + 1)}}
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def run_size(size_mb: int, base: Path, reference: bool, steps: tuple[str, ...] = STEPS) -> dict:
    parent = Path(tempfile.mkdtemp(prefix="collect-bench-", dir=base))
    directory = parent / RUN_ID
    directory.mkdir()
    try:
        started = time.perf_counter()
        size = write_records(directory, size_mb * 1_000_000)
        write_manifest(directory)
        print(f"wrote {size / 1e6:.0f} MB of records in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = {"records_mb": round(size / 1e6, 1)}
        for kind in ("collect", *(s for s in steps if s != "collect"), *(("load-all",) if reference else ())):
            results[kind] = measure(kind, directory)
            print(json.dumps(results[kind]), file=sys.stderr)
        # Wall clock, and per CPU second (what one idle core gives, whatever else runs on the machine).
        results["collect"]["mb_per_s"] = round(size / 1e6 / results["collect"]["seconds"], 1)
        results["collect"]["mb_per_cpu_s"] = round(size / 1e6 / results["collect"]["cpu_seconds"], 1)
        results["events_mb"] = round((directory / "events.jsonl").stat().st_size / 1e6, 1)
        return results
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--reference-size-mb", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--reference-only", action="store_true", help="only the --reference-size-mb set")
    parser.add_argument("--full-only", action="store_true", help="only the --size-mb set")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"the steps to measure after `collect`, of {', '.join(STEPS)}")
    parser.add_argument("--step", choices=[*STEPS, "load-all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.dir)))
        return
    steps = tuple(s for s in args.steps.split(",") if s)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if not args.full_only:
        report["reference"] = run_size(args.reference_size_mb, args.dir, reference=True, steps=steps)
    if not args.reference_only:
        report["full"] = run_size(args.size_mb, args.dir, reference=False, steps=steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
