"""The wire view's two costs: extracting flows from a capture, and capturing during a run.

    python3 benchmarks/wire_bench.py parse [--packets 200000] [--rounds 5] [--baseline REV]
    python3 benchmarks/wire_bench.py capture [--rounds 3] [--scenario FILE]
    python3 benchmarks/wire_bench.py view [--messages 250000] [--baseline REV]

`parse`: a capture like the lab's own (clients each with a TCP connection: handshake, messages
and their echoes with ACKs, FIN both ways; and a UDP socket: each message and its echo), made
here with dpkt's writer, then read into packets and flows (lab.wire.pcap.read_capture and
lab.wire.flows.extract_flows). Figures: packets per second of wall time and of this process's
CPU time (the machine is shared: CPU time is what the extraction itself costs), the median of
the rounds after a warm-up, every reader measured in turn within each round so that all see the
same load. Beside the current code: the same two modules as git revision `--baseline` had them
(default: before issue 9's second speed-up), with the ratio of the two in each round; dpkt's
record reader alone (what reading every record through dpkt's reader costs, before any
decoding); dpkt decoding every frame itself (no fixed-offset shortcut) and scapy's reader when
it is installed, for the choice of library. Goal (issue 9): >= 200,000 packets/s.

`capture`: the same scenario with capture on and off (`--no-capture`), alternating, so both
see the same load; per round the median of every client's rtt p50 and the run's wall time.
Goals (issue 9): rtt p50 within 5% and wall time within 10% of the run without capture.
Needs the Docker engine and the node image (`lab build`).

`view`: peak memory (issue 8) of building a run's wire view with a capture, for a synthetic run
(tests/unit/flood.py: one client, a TCP and a UDP socket, `--messages` messages on each, every
7th UDP message lost; about 4 packets and 9 records per message) and for one 10x smaller: in a
fresh process each (`lab.logs.join_views`, `build_wire_view`, `write_wire_view`, the wire's check
records counted, and the report's reading of wire.json), its peak RSS from wait4. With
`--baseline REV`, the smaller run also with that revision's `lab` package (from `git archive`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.wire.flows import extract_flows  # noqa: E402
from lab.wire.pcap import read_capture  # noqa: E402

# The extraction before issue 9's second speed-up (whole-header struct reads, address pairs
# remembered, flows routed per direction): the default baseline of `parse`.
BASELINE = "e96589d"

SCENARIO = """\
description: wire benchmark, a steady conversation per client and protocol
clients:
  count: 4
  proto: [tcp, udp]
  message_count: 60
  interval: 0.02
timeout: 120
"""


def _frame(src: bytes, sport: int, dst: bytes, dport: int, payload: bytes, tcp: tuple | None) -> bytes:
    if tcp is None:
        transport = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        transport.ulen = 8 + len(payload)
        number = dpkt.ip.IP_PROTO_UDP
    else:
        flags, seq, ack = tcp
        transport = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, data=payload)
        number = dpkt.ip.IP_PROTO_TCP
    ip = dpkt.ip.IP(src=src, dst=dst, p=number, data=transport, ttl=64)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def make_capture(path: Path, packets: int) -> int:
    """Lab-like traffic until `packets` frames are written; returns how many were."""
    server = bytes([10, 77, 0, 2])
    syn, ack, psh, fin = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
    message = "#%d Wed Nov 25 15:01:41 2026 你好"
    written, ts = 0, 1_800_000_000.0
    with open(path, "wb") as fh:
        out = dpkt.pcap.Writer(fh)

        def put(data: bytes) -> None:
            nonlocal written, ts
            ts += 0.0001
            out.writepkt(data, ts=ts)
            written += 1

        client = 0
        while written < packets:
            client += 1
            me = bytes([10, 77, (client >> 8) & 0xFF, client & 0xFF or 1])
            port = 30000 + client % 30000
            cseq, sseq = 1000, 5000
            put(_frame(me, port, server, 19200, b"", (syn, cseq, 0)))
            put(_frame(server, 19200, me, port, b"", (syn | ack, sseq, cseq + 1)))
            cseq, sseq = cseq + 1, sseq + 1
            put(_frame(me, port, server, 19200, b"", (ack, cseq, sseq)))
            for seq in range(1, 41):
                body = (message % seq).encode()
                put(_frame(me, port, server, 19200, body, (psh, cseq, sseq)))
                put(_frame(server, 19200, me, port, b"", (ack, sseq, cseq + len(body))))
                put(_frame(server, 19200, me, port, body, (psh, sseq, cseq + len(body))))
                cseq, sseq = cseq + len(body), sseq + len(body)
                put(_frame(me, port, server, 19200, b"", (ack, cseq, sseq)))
            put(_frame(me, port, server, 19200, b"", (fin, cseq, sseq)))
            put(_frame(server, 19200, me, port, b"", (fin, sseq, cseq + 1)))
            put(_frame(me, port, server, 19200, b"", (ack, cseq + 1, sseq + 1)))
            for seq in range(1, 41):
                body = (message % seq).encode()
                put(_frame(me, port + 1, server, 19200, body, None))
                put(_frame(server, 19200, me, port + 1, body, None))
    return written


def _modules_at(rev: str) -> tuple[types.ModuleType, types.ModuleType] | None:
    """lab.wire.pcap and lab.wire.flows as git revision `rev` had them, loaded beside the
    current ones (flows importing that revision's pcap); None when git cannot show them."""
    sources = []
    for name in ("pcap", "flows"):
        shown = subprocess.run(["git", "show", f"{rev}:lab/wire/{name}.py"], cwd=ROOT, capture_output=True, text=True)
        if shown.returncode != 0:
            print(f"baseline {rev}: {shown.stderr.strip()}", file=sys.stderr)
            return None
        sources.append(shown.stdout)
    loaded, current = [], sys.modules["lab.wire.pcap"]
    try:
        for name, source in zip(("pcap", "flows"), sources, strict=True):
            module = types.ModuleType(f"wire_bench_{name}_at_{rev}")
            sys.modules[module.__name__] = module  # dataclasses look their module up
            exec(compile(source, f"{rev}:lab/wire/{name}.py", "exec"), module.__dict__)
            loaded.append(module)
            if name == "pcap":
                sys.modules["lab.wire.pcap"] = module  # what that revision's flows imports
    finally:
        sys.modules["lab.wire.pcap"] = current
    return loaded[0], loaded[1]


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _records_only(path: Path) -> None:
    """Only walking the records, from memory as read_capture does: what any dpkt-based reading costs."""
    for _ts, _frame in dpkt.pcap.Reader(io.BytesIO(path.read_bytes())):
        pass


def _dpkt_only(path: Path) -> None:
    """Every frame through dpkt's own decoders, as the comparison for the shortcut."""
    with open(path, "rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(frame).data
            _ = (ip.src, ip.dst, ip.data.sport, ip.data.dport, bytes(ip.data.data))


def _scapy(path: Path) -> None:
    from scapy.all import IP, PcapReader  # scapy.all registers the layers, so frames are decoded

    with PcapReader(str(path)) as reader:
        for packet in reader:
            ip = packet[IP]
            _ = (ip.src, ip.dst, ip.payload.sport, ip.payload.dport, bytes(ip.payload.payload))


def bench_parse(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        count = make_capture(path, args.packets)
        size = path.stat().st_size
        rows = [("lab.wire: read_capture + extract_flows", count, lambda: extract_flows(read_capture(path).packets))]
        old = _modules_at(args.baseline)
        if old is not None:
            old_pcap, old_flows = old
            rows.append((f"the same at {args.baseline} (baseline)", count,
                         lambda: old_flows.extract_flows(old_pcap.read_capture(path).packets)))
            new_flows = [_summary(f) for f in extract_flows(read_capture(path).packets)]
            if new_flows != [_summary(f) for f in old_flows.extract_flows(old_pcap.read_capture(path).packets)]:
                raise SystemExit(f"the flows differ from {args.baseline}'s: the comparison would mean nothing")
        rows.append(("dpkt's record reader alone (no decoding, no flows)", count, lambda: _records_only(path)))
        rows.append(("dpkt decoding every frame (no shortcut), no flows", count, lambda: _dpkt_only(path)))
        try:
            import scapy  # noqa: F401

            # scapy is two orders of magnitude slower: a slice is enough
            small = Path(tmp) / "small.pcap"
            n = make_capture(small, 20_000)
            rows.append(("scapy PcapReader, no flows (first 20,000 frames)", n, lambda: _scapy(small)))
        except ImportError:
            pass
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"capture: {count} packets, {size / 1e6:.1f} MB, {platform.machine()}, Python {platform.python_version()}, "
              f"dpkt {dpkt.__version__}, {when}")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _n, _fn in rows}
        for _name, _n, fn in rows:
            fn()  # warm-up
        for _ in range(args.rounds):  # in turn within each round: the same load for every reader
            for name, _n, fn in rows:
                times[name].append(_timed(fn))
        print("\n| reader | packets/s (CPU) | packets/s (wall) |\n|---|---|---|")
        rates = {}
        for name, n, _fn in rows:
            walls, cpus = zip(*times[name], strict=True)
            rates[name] = n / statistics.median(cpus)
            print(f"| {name} | {rates[name]:,.0f} | {n / statistics.median(walls):,.0f} |")
        if old is not None:
            now, before = times[rows[0][0]], times[rows[1][0]]
            ratios = sorted(b[1] / a[1] for a, b in zip(now, before, strict=True))
            print(f"\ncurrent/baseline, CPU time per round: median {statistics.median(ratios):.2f}x "
                  f"(rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x)")


def _summary(flow) -> tuple:
    """A flow's every figure and packet, comparable across the two revisions' classes."""
    packets = [(p.ts, p.dir, p.flags, p.seq, p.ack, p.len, p.retrans, p.payload) for p in flow.packets]
    return (flow.proto, flow.client, flow.server, flow.syn_ts, flow.synack_ts, flow.ack_ts,
            flow.retransmissions, flow.fin, flow.rst, packets)


def _one_run(scenario: Path, out: Path, capture: bool) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "lab", "run", str(scenario), "--out", str(out)] + ([] if capture else ["--no-capture"])
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    run = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    if proc.returncode != 0:
        raise SystemExit(f"the run failed ({run}):\n{proc.stdout[-2000:]}")
    with open(run / "clients.csv", newline="") as fh:
        p50s = [float(r["rtt_p50_ms"]) for r in csv.DictReader(fh) if r["rtt_p50_ms"]]
    manifest = json.loads((run / "manifest.json").read_text())
    dropped = (json.loads((run / "wire.json").read_text())["capture"].get("kernel_dropped") if capture else None)
    print(f"  capture {'on ' if capture else 'off'}: rtt p50 {statistics.median(p50s):.3f} ms, wall {wall:.1f} s, "
          f"verdict {manifest['verdict']}" + (f", kernel drops {dropped}" if capture else ""), flush=True)
    return statistics.median(p50s), wall


def bench_capture(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(args.scenario) if args.scenario else Path(tmp) / "wire-bench.yaml"
        if not args.scenario:
            scenario.write_text(SCENARIO)
        out = Path(tmp) / "runs"
        out.mkdir()
        results = {True: [], False: []}
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}", flush=True)
            for capture in ((True, False) if round_ % 2 == 0 else (False, True)):
                results[capture].append(_one_run(scenario, out, capture))
        on_p50, off_p50 = (statistics.median(r[0] for r in results[c]) for c in (True, False))
        on_wall, off_wall = (statistics.median(r[1] for r in results[c]) for c in (True, False))
        print("\n| | rtt p50 ms (median of rounds) | run wall time s |\n|---|---|---|")
        print(f"| capture off | {off_p50:.3f} | {off_wall:.1f} |")
        print(f"| capture on | {on_p50:.3f} | {on_wall:.1f} |")
        print(f"| on/off | {on_p50 / off_p50:.3f} | {on_wall / off_wall:.3f} |")


def bench_view(args) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from flood import Flood, flood_capture

    print(f"{platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("\n| code | messages | packets | records | events.jsonl MB | pcap MB | wire.json MB | peak RSS MB | CPU s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        codes = [("current", str(ROOT))]
        if args.baseline:
            old = Path(tmp) / "baseline"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline, "lab"], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
            codes.append((f"at {args.baseline}", str(old)))
        for n in (args.messages // 10, args.messages):
            run = Path(tmp) / f"run{n}"
            (run / "capture").mkdir(parents=True)
            flood = Flood(n)
            packets = flood_capture(run / "capture" / "lab.pcap", flood)
            records = 0
            with open(run / "events.jsonl", "w", encoding="utf-8") as fh:
                for record in flood:
                    fh.write(json.dumps(record, separators=(",", ":")) + "\n")
                    records += 1
            # The baseline only for the smaller run: before issue 8 the UDP matching took time
            # quadratic in a socket's messages.
            for name, path in codes if n < args.messages else codes[:1]:
                start = time.perf_counter()
                env = {**os.environ, "PYTHONPATH": path}
                child = subprocess.Popen([sys.executable, "-c", VIEW_CHILD, str(run)], env=env, cwd=tmp)
                _pid, status, usage = os.wait4(child.pid, 0)
                wall = time.perf_counter() - start
                if status != 0:
                    raise SystemExit(f"{name}: the view's process failed ({status})")
                size = {f: (run / f).stat().st_size / 1e6 for f in ("events.jsonl", "capture/lab.pcap", "wire.json")}
                print(f"| {name} | {n:,} | {packets:,} | {records:,} | {size['events.jsonl']:.0f} | "
                      f"{size['capture/lab.pcap']:.0f} | {size['wire.json']:.0f} | {usage.ru_maxrss / 1024:.0f} | "
                      f"{usage.ru_utime + usage.ru_stime:.0f} | {wall:.0f} |",
                      flush=True)
                (run / "wire.json").unlink()


# One fresh process (run with -c, so that PYTHONPATH alone says which `lab` it imports): the wire
# view of a run directory, as `lab run` and the report make it.
VIEW_CHILD = """
import sys
from pathlib import Path
from lab.html.wire import read_wire
from lab.logs import EventFile, join_views
from lab.wire.records import check_records
from lab.wire.file import write_wire_view
from lab.wire.view import build_wire_view

run = Path(sys.argv[1])
events = EventFile(run / "events.jsonl")
rows = join_views(events)
view = build_wire_view(run, events, rows, capture_on=True)
write_wire_view(run, view)
sum(1 for _ in check_records(view))
read_wire(run)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("parse")
    p.add_argument("--packets", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--baseline", default=BASELINE, help=f"a git revision to compare with (default {BASELINE})")
    p.set_defaults(func=bench_parse)
    p = sub.add_parser("capture")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenario", help="a scenario file (default: 4 clients, 60 messages each way, 20 ms apart)")
    p.set_defaults(func=bench_capture)
    p = sub.add_parser("view")
    p.add_argument("--messages", type=int, default=250_000, help="messages on each socket (about 4 packets each)")
    p.add_argument("--baseline", help="a git revision to compare with (its `lab` package)")
    p.set_defaults(func=bench_view)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
