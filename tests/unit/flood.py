"""A long run's records made on the fly, for the tests that hold the run's readers to a bound by
counting what they keep (records alive, messages held), never by timing.

`Flood(n)` is read again each time it is iterated, like lab.logs.EventFile, and notes the most
records alive at once while it is read: a reader that keeps records makes that grow with n.
`flood_capture` writes the packets those records describe, for the wire view's tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import socket
import struct
from collections.abc import Iterator

START = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)
CLIENT = {"role": "client", "service": "client1", "host": "client1", "ip": "10.0.0.5", "session": 0,
          "peer": "10.0.0.2:19200"}
SERVER = {"role": "server", "service": "server", "host": "server", "ip": "10.0.0.2"}
TCP_LOCAL, UDP_LOCAL = "10.0.0.5:40000", "10.0.0.5:50000"


class Held(dict):
    """A record that counts how many records are alive."""

    alive = 0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        Held.alive += 1

    def __del__(self) -> None:
        Held.alive -= 1


class Flood:
    """client1 with a TCP and a UDP socket, `n` messages on each. The server logs every fifth TCP
    read before the client logs the send (as a busy host stamps them); every `lose`-th UDP message
    never reaches the server. With `restart`, the server is restarted halfway: the TCP socket
    drops and client1 reconnects from another port."""

    def __init__(self, n: int, lose: int = 7, restart: bool = False) -> None:
        self.n, self.lose, self.restart = n, lose, restart
        self.most_alive = 0

    def __iter__(self) -> Iterator[dict]:
        tick = itertools.count()

        def rec(base: dict, **fields) -> Held:
            ts = (START + dt.timedelta(microseconds=10 * next(tick))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.most_alive = max(self.most_alive, Held.alive)
            return Held({**base, "ts": ts, **fields})

        tcp, udp = {**CLIENT, "proto": "tcp"}, {**CLIENT, "proto": "udp"}
        local = TCP_LOCAL
        yield rec(tcp, event="connected", local=local, attempt=1)
        yield rec(SERVER, proto="tcp", event="accepted", local="10.0.0.2:19200", peer=local, conn=1)
        yield rec(udp, event="bound", local=UDP_LOCAL)
        for seq in range(1, self.n + 1):
            if self.restart and seq == self.n // 2:
                yield rec({"role": "lab", "service": "lab", "host": "lab"}, event="fault", action="restart",
                          target="server", t=1.0, ok=True)
                yield rec(tcp, event="closed", local=local, reason="eof")
                yield rec(tcp, event="reconnect", reason="eof")
                local = "10.0.0.5:40001"
                yield rec(tcp, event="connected", local=local, attempt=2)
                yield rec(SERVER, proto="tcp", event="accepted", local="10.0.0.2:19200", peer=local, conn=2)
            text = f"m{seq:07d}"
            sent = {"event": "sent", "local": local, "seq": seq, "bytes": 8, "text": text}
            read = {"event": "received", "peer": local, "bytes": 8, "text": text}
            first, second = ((SERVER, read), (tcp, sent)) if seq % 5 == 0 else ((tcp, sent), (SERVER, read))
            yield rec(first[0], proto="tcp", **first[1])
            yield rec(second[0], proto="tcp", **second[1])
            yield rec(SERVER, proto="tcp", event="echoed", peer=local, bytes=8)
            yield rec(tcp, event="reply", local=local, seq=seq, bytes=8, rtt_ms=0.2 + seq % 3 / 10, intact=True)
            yield rec(udp, event="sent", local=UDP_LOCAL, seq=seq, bytes=8, text=f"u{seq:07d}")
            if seq % self.lose:
                yield rec(SERVER, proto="udp", event="received", peer=UDP_LOCAL, bytes=8, text=f"u{seq:07d}")
                yield rec(SERVER, proto="udp", event="echoed", peer=UDP_LOCAL, bytes=8)
                yield rec(udp, event="reply", local=UDP_LOCAL, seq=seq, bytes=8, rtt_ms=0.3, intact=True)
        for proto in ("tcp", "udp"):
            yield rec({**CLIENT, "proto": proto}, event="summary", ok=True)
        if self.restart:
            yield rec(tcp, event="closed", local=local, reason="done")


# The capture of a Flood: what its records say crossed the wire, written as raw pcap records
# (dpkt's writer builds an object per frame: too slow for the long captures these tests make).
_ETH = b"\x04" * 6 + b"\x02" * 6 + b"\x08\x00"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SERVER_ADDR = ("10.0.0.2", 19200)


def _micros(ts: str) -> int:
    when = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


def _ip(src: str, dst: str, proto: int, transport: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 0, 0x4000, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return _ETH + header + transport


def _udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    return _ip(src[0], dst[0], 17, struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload)


def _tcp(src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int, ack: int, payload: bytes = b"") -> bytes:
    return _ip(src[0], dst[0], 6, struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 0x50, flags, 65535, 0, 0)
               + payload)


def flood_capture(path, flood: Flood) -> int:
    """Write the packets a Flood's records describe (a TCP handshake for each connection, each
    message and each echo the client got, each lost datagram's request) into a pcap file, a
    microsecond or three before the record that follows them; returns how many."""
    syn, ack, psh = 0x02, 0x10, 0x18
    count = 0
    seqs: dict[str, list[int]] = {}
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))

        def put(micros: int, frame: bytes) -> None:
            nonlocal count
            fh.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)) + frame)
            count += 1

        for record in flood:
            if record.get("role") != "client":
                continue
            at, event, proto = _micros(record["ts"]), record["event"], record["proto"]
            if proto == "tcp":
                local = record.get("local") or ""
                me = (local.split(":")[0], int(local.split(":")[1])) if local else None
                if event == "connected":
                    seqs[local] = [1001, 5001]
                    put(at - 3, _tcp(me, _SERVER_ADDR, syn, 1000, 0))
                    put(at - 2, _tcp(_SERVER_ADDR, me, syn | ack, 5000, 1001))
                    put(at - 1, _tcp(me, _SERVER_ADDR, ack, 1001, 5001))
                elif event == "sent":
                    mine = seqs[local]
                    text = record["text"].encode()
                    put(at - 1, _tcp(me, _SERVER_ADDR, psh, mine[0], mine[1], text))
                    mine[0] += len(text)
                elif event == "reply":
                    mine = seqs[local]
                    text = f"m{record['seq']:07d}".encode()
                    put(at - 1, _tcp(_SERVER_ADDR, me, psh, mine[1], mine[0], text))
                    mine[1] += len(text)
            elif proto == "udp" and event in ("sent", "reply"):
                me = (UDP_LOCAL.split(":")[0], int(UDP_LOCAL.split(":")[1]))
                text = f"u{record['seq']:07d}".encode()
                if event == "sent":
                    put(at - 1, _udp(me, _SERVER_ADDR, text))
                else:
                    put(at - 1, _udp(_SERVER_ADDR, me, text))
    return count
