"""The userspace backend's data path: hold each queued packet, then let it go (changed or copied).

Delay and jitter are a heap of release times (verdicts may be given out of order by packet
id, so jitter reorders as netem's does); reorder lets a fraction go at once past the delayed
ones; corrupt flips one bit after the IP header so the transport checksum fails at the
receiver; duplicate re-sends a copy through a raw socket, marked so our rules skip it.
Packets on the drop queue were picked by the kernel's `statistic` match: they are dropped.
"""

from __future__ import annotations

import heapq
import random
import socket
import time
from collections.abc import Callable

from lab.shaper import netlink
from lab.shaper.plan import QueueConfig

SO_MARK = 36
_TCP, _UDP = 6, 17


def corrupt_bit(packet: bytes, rng: random.Random) -> bytes:
    """The packet with one bit flipped in its transport payload (or, if empty, the checksum).

    The IP header is left alone so the packet still reaches its receiver, whose transport
    checksum check then fails, as with netem's corrupt.
    """
    data = bytearray(packet)
    if len(data) < 20:
        return packet
    version = data[0] >> 4
    if version == 4:
        start, proto = (data[0] & 0x0F) * 4, data[9]
    elif version == 6 and len(data) >= 40:
        start, proto = 40, data[6]
    else:
        return packet
    if start >= len(data):
        return packet
    if proto == _TCP and start + 13 <= len(data):
        payload, checksum_at = start + (data[start + 12] >> 4) * 4, start + 16
    elif proto == _UDP:
        payload, checksum_at = start + 8, start + 6
    else:
        payload, checksum_at = start, start
    if payload < len(data):
        index = rng.randrange(payload, len(data))
    else:
        index = min(checksum_at, len(data) - 1)
    data[index] ^= 1 << rng.randrange(8)
    return bytes(data)


def ipv4_destination(packet: bytes) -> str | None:
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return socket.inet_ntoa(packet[16:20])
    return None


class PacketQueue:
    """Serves one NFQUEUE from a caller's event loop: `on_readable`, `release_due`, `next_deadline`."""

    def __init__(self, config: QueueConfig, on_error: Callable[[str, str], None],
                 rng: random.Random | None = None) -> None:
        self.sock = netlink.QueueSocket(config.queue_num, also=(config.drop_queue,))
        self.rng = rng or random.Random()
        self._on_error = on_error
        self._held: list[tuple[float, int, int, bytes | None, bytes | None]] = []
        self._order = 0
        self._raw: socket.socket | None = None
        self._raw_failed = False
        self.counts = {"seen": 0, "dropped": 0, "delayed": 0, "reordered": 0, "duplicated": 0,
                       "corrupted": 0, "max_held": 0}
        try:
            self.configure(config)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def configure(self, config: QueueConfig) -> None:
        """New parameters apply to packets arriving from now on; held ones keep their time.

        Raises OSError up front if duplicates are asked for but a raw socket is not allowed
        (the container lacks NET_RAW), rather than failing packet by packet later.
        """
        if config.duplicate and self._raw is None:
            self._raw = self._open_raw(config.dup_mark)
        self.config = config

    @staticmethod
    def _open_raw(mark: int) -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            raw.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        except OSError:
            raw.close()
            raise
        raw.setblocking(False)
        return raw

    def on_readable(self, now: float | None = None) -> None:
        for packet in self.sock.receive():
            self._admit(packet, time.monotonic() if now is None else now)
        self.release_due()

    def _admit(self, packet: netlink.Packet, now: float) -> None:
        cfg, rng = self.config, self.rng
        if packet.queue_num == cfg.drop_queue:
            self.sock.send_verdict(packet.queue_num, packet.packet_id, netlink.NF_DROP)
            self.counts["dropped"] += 1
            return
        self.counts["seen"] += 1
        payload = None
        if cfg.corrupt and rng.random() < cfg.corrupt:
            changed = corrupt_bit(packet.payload, rng)
            if changed != packet.payload:
                payload = changed
                self.counts["corrupted"] += 1
        copy = None
        if cfg.duplicate and rng.random() < cfg.duplicate:
            copy = payload if payload is not None else packet.payload
        hold_ms = cfg.delay_ms
        if cfg.jitter_ms:
            hold_ms = max(0.0, hold_ms + rng.uniform(-cfg.jitter_ms, cfg.jitter_ms))
        if cfg.reorder and rng.random() < cfg.reorder:
            hold_ms = 0.0
            self.counts["reordered"] += 1
        if hold_ms <= 0:
            self._let_go(packet.packet_id, payload, copy)
            return
        self.counts["delayed"] += 1
        self._order += 1
        heapq.heappush(self._held, (now + hold_ms / 1000.0, self._order, packet.packet_id, payload, copy))
        self.counts["max_held"] = max(self.counts["max_held"], len(self._held))

    def _let_go(self, packet_id: int, payload: bytes | None, copy: bytes | None) -> None:
        self.sock.send_verdict(self.config.queue_num, packet_id, netlink.NF_ACCEPT, payload)
        if copy is not None and self._send_copy(copy):
            self.counts["duplicated"] += 1

    def _send_copy(self, packet: bytes) -> bool:
        destination = ipv4_destination(packet)
        if destination is None or self._raw is None or self._raw_failed:
            return False  # IPv6 packets are not duplicated
        try:
            self._raw.sendto(packet, (destination, 0))
            return True
        except OSError as exc:
            if exc.errno in (1, 13):  # EPERM/EACCES: refused for good
                self._raw_failed = True
                self._on_error("duplicate-unavailable", f"cannot send duplicates: {exc}")
            return False

    def release_due(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        held = self._held
        while held and held[0][0] <= now:
            _due, _order, packet_id, payload, copy = heapq.heappop(held)
            self._let_go(packet_id, payload, copy)

    def next_deadline(self) -> float | None:
        return self._held[0][0] if self._held else None

    @property
    def held(self) -> int:
        return len(self._held)

    def flush(self) -> None:
        """Let every held packet go now (shutdown: nothing we hold is lost)."""
        while self._held:
            _due, _order, packet_id, payload, copy = heapq.heappop(self._held)
            self._let_go(packet_id, payload, copy)

    def close(self) -> None:
        self.flush()
        # Packets queued after the rules went away but before this point get their verdict too.
        for packet in self.sock.receive():
            self.sock.send_verdict(packet.queue_num, packet.packet_id, netlink.NF_ACCEPT)
        self.sock.close()
        if self._raw is not None:
            self._raw.close()
