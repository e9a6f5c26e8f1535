"""Read the kernel's socket tables (`/proc/net/tcp`, `tcp6`, `udp`, `udp6`) into plain rows.

Each line of those files is one socket: hex `address:port` pairs in the kernel's byte order,
a hex state, the send/receive queue lengths and the inode. For a listening TCP socket the
receive queue is the number of connections the kernel completed that the program has not
`accept`ed yet: what shows an iterative server keeping its clients waiting. A connection
still waiting there has inode 0 (no program owns it yet).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TCP_STATES = {
    0x01: "established", 0x02: "syn-sent", 0x03: "syn-recv", 0x04: "fin-wait1", 0x05: "fin-wait2",
    0x06: "time-wait", 0x07: "close", 0x08: "close-wait", 0x09: "last-ack", 0x0A: "listen", 0x0B: "closing",
    0x0C: "new-syn-recv",
}
TABLES = (("tcp", "tcp"), ("tcp", "tcp6"), ("udp", "udp"), ("udp", "udp6"))


@dataclass(frozen=True)
class SocketRow:
    """One socket of the namespace, as the kernel lists it."""

    proto: str  # tcp | udp
    local: str  # `ip:port`, `[v6]:port`
    remote: str  # `0.0.0.0:0` when unconnected
    state: str  # a TCP state name; for UDP `bound` or `connected`
    tx_queue: int
    rx_queue: int
    uid: int
    inode: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        """Identity across samples: the same socket keeps its addresses and inode."""
        return (self.proto, self.local, self.remote, self.inode)


def _address(text: str) -> str:
    """`0100007F:4B00` -> `127.0.0.1:19200`; IPv6 is four 32-bit words, each in host order."""
    hex_ip, hex_port = text.split(":")
    raw = bytes.fromhex(hex_ip)
    words = b"".join(struct.pack("@I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    port = int(hex_port, 16)
    if ip.version == 6:
        if ip.ipv4_mapped:
            return f"{ip.ipv4_mapped}:{port}"
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"


def parse_table(proto: str, text: str) -> list[SocketRow]:
    """The rows of one table's text (its header line is skipped; damaged lines too)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            local, remote = _address(fields[1]), _address(fields[2])
            code = int(fields[3], 16)
            tx_hex, rx_hex = fields[4].split(":")
            uid, inode = int(fields[7]), int(fields[9])
        except ValueError:
            continue
        if proto == "tcp":
            state = TCP_STATES.get(code, f"state-{code:#x}")
        else:
            state = "bound" if remote.endswith(":0") and _unspecified(remote) else "connected"
        rows.append(SocketRow(proto, local, remote, state, int(tx_hex, 16), int(rx_hex, 16), uid, inode))
    return rows


def _unspecified(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_unspecified


def read_tables(proc_net: Path = Path("/proc/net"), tables: Iterable[tuple[str, str]] = TABLES) -> list[SocketRow]:
    """Every socket of this network namespace (a missing table, e.g. no IPv6, is skipped)."""
    rows: list[SocketRow] = []
    for proto, name in tables:
        try:
            text = (proc_net / name).read_text()
        except OSError:
            continue
        rows += parse_table(proto, text)
    return rows


def family_of(address: str) -> int:
    return socket.AF_INET6 if address.startswith("[") else socket.AF_INET
