"""Collecting a run's records: peak memory and throughput, against how much was recorded.

Writes synthetic records files as a flood run's programs would (a server and TCP clients,
512-byte messages, schema 2), then, each step in a fresh process so its peak RSS is its own:

- `collect`: lab.collect.collect_run, the records files into events.jsonl (normalise each
  container's stream, heap-merge them); throughput = records-file bytes / seconds, by the wall
  clock and per CPU second of the collecting process (on a shared machine, the second says
  what one core gives; the child's start-up and imports are included in both);
- `join`: lab.logs.join_views over events.jsonl read back as a stream (clients.csv's rows);
- `judge`: the `basic` scenario's expectations over events.jsonl (lab.expect.evaluate);
- `load-all` (reference, the way before streaming, run at --reference-size only): every record
  parsed into a list and sorted by time, as the collector did before.

Usage: python3 benchmarks/collect_bench.py [--size-mb 2048] [--reference-size-mb 200] [--dir DIR]
It needs about 3.5x --size-mb of free disk in DIR (records, events.jsonl, and the merge's
per-container files while it runs), and removes everything it wrote.
"""

from __future__ import annotations

import argparse
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


def run_size(size_mb: int, base: Path, reference: bool) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="collect-bench-", dir=base))
    try:
        started = time.perf_counter()
        size = write_records(directory, size_mb * 1_000_000)
        print(f"wrote {size / 1e6:.0f} MB of records in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        results = {"records_mb": round(size / 1e6, 1)}
        for kind in ("collect", "join", "judge", *(("load-all",) if reference else ())):
            results[kind] = measure(kind, directory)
            print(json.dumps(results[kind]), file=sys.stderr)
        # Wall clock, and per CPU second (what one idle core gives, whatever else runs on the machine).
        results["collect"]["mb_per_s"] = round(size / 1e6 / results["collect"]["seconds"], 1)
        results["collect"]["mb_per_cpu_s"] = round(size / 1e6 / results["collect"]["cpu_seconds"], 1)
        results["events_mb"] = round((directory / "events.jsonl").stat().st_size / 1e6, 1)
        return results
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--reference-size-mb", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--step", choices=["collect", "join", "judge", "load-all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.dir)))
        return
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "reference": run_size(args.reference_size_mb, args.dir, reference=True),
        "full": run_size(args.size_mb, args.dir, reference=False),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
