"""Small traffic tools the live tests run inside network namespaces (`ip netns exec NS python3 netprobe.py ...`).

`echo` answers UDP datagrams; `ping` measures rtt, loss and duplicates over a numbered burst;
`sink`/`blast` measure what a UDP flood gets through; `tcp-sink`/`tcp-send` measure TCP
throughput. Each prints one JSON line (servers print `ready` first) and exits.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import statistics
import struct
import sys
import time

_HEAD = struct.Struct("!Id")  # sequence number, send time


def echo(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", args.port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def ping(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect((args.to, args.port))
    pad = b"x" * max(0, args.size - _HEAD.size)
    rtts: dict[int, float] = {}
    replies = duplicates = bad = 0
    order: list[int] = []
    interval = args.interval_ms / 1000.0
    start = time.monotonic()
    next_send, sent = start, 0
    deadline = None
    while True:
        now = time.monotonic()
        if sent < args.count and now >= next_send:
            sock.send(_HEAD.pack(sent, now) + pad)
            sent += 1
            next_send += interval
            if sent == args.count:
                deadline = time.monotonic() + args.wait_ms / 1000.0
            continue
        wake = next_send if sent < args.count else deadline
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if ready:
            data = sock.recv(65535)
            arrived = time.monotonic()
            if len(data) != args.size or not data.endswith(pad):
                bad += 1
                continue
            seq, sent_at = _HEAD.unpack_from(data)
            replies += 1
            if seq in rtts:
                duplicates += 1
                continue
            rtts[seq] = (arrived - sent_at) * 1000.0
            order.append(seq)
        elif deadline is not None and time.monotonic() >= deadline:
            break
    values = sorted(rtts.values())
    out_of_order = sum(1 for a, b in zip(order, order[1:], strict=False) if b < a)
    print(json.dumps({
        "sent": sent, "received": len(rtts), "replies": replies, "duplicates": duplicates,
        "bad": bad, "lost": sent - len(rtts), "out_of_order": out_of_order,
        "rtt_p50_ms": statistics.median(values) if values else None,
        "rtt_min_ms": values[0] if values else None,
        "rtt_max_ms": values[-1] if values else None,
    }), flush=True)


def sink(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", args.port))
    print("ready", flush=True)
    total = count = 0
    first = last = None
    while True:
        ready, _, _ = select.select([sock], [], [], args.idle_ms / 1000.0 if first else 30.0)
        if not ready:
            break
        data = sock.recv(65535)
        last = time.monotonic()
        first = first or last
        total += len(data)
        count += 1
    print(json.dumps({"bytes": total, "datagrams": count,
                      "span_s": (last - first) if first else 0.0}), flush=True)


def blast(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((args.to, args.port))
    data = b"b" * args.size
    sent = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            sock.send(data)
            sent += 1
        except OSError:  # ENOBUFS when a qdisc is full: that is the point of the test
            time.sleep(0.0005)
    print(json.dumps({"sent": sent, "bytes": sent * args.size}), flush=True)


def tcp_sink(args: argparse.Namespace) -> None:
    server = socket.create_server(("0.0.0.0", args.port))
    print("ready", flush=True)
    conn, _ = server.accept()
    total, start = 0, time.monotonic()
    while chunk := conn.recv(1 << 16):
        total += len(chunk)
    span = time.monotonic() - start
    print(json.dumps({"bytes": total, "seconds": span, "mbit_s": total * 8 / span / 1e6}), flush=True)


def tcp_send(args: argparse.Namespace) -> None:
    sock = socket.create_connection((args.to, args.port))
    block = b"t" * (1 << 16)
    total, end = 0, time.monotonic() + args.seconds
    while time.monotonic() < end:
        sock.sendall(block)
        total += len(block)
    sock.close()
    print(json.dumps({"bytes": total}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("echo", "sink", "tcp-sink"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--idle-ms", type=float, default=500)
    for name in ("ping", "blast", "tcp-send"):
        p = sub.add_parser(name)
        p.add_argument("--to", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--count", type=int, default=20)
        p.add_argument("--interval-ms", type=float, default=10)
        p.add_argument("--wait-ms", type=float, default=300)
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    {"echo": echo, "ping": ping, "sink": sink, "blast": blast,
     "tcp-sink": tcp_sink, "tcp-send": tcp_send}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
