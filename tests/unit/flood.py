"""A long run's records made on the fly, for the tests that hold the run's readers to a bound by
counting what they keep (records alive, messages held), never by timing.

`Flood(n)` is read again each time it is iterated, like lab.logs.EventFile, and notes the most
records alive at once while it is read: a reader that keeps records makes that grow with n.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
