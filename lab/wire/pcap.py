"""Read a capture file into packets with dpkt, keeping everything before any damage.

dpkt (a small, pure-Python, long-maintained pcap library) reads the file format (pcap and
pcapng) and decodes Ethernet, IPv4/IPv6, TCP and UDP; see docs/wire.md for why it was chosen
over scapy and tshark, with the measured parse speed. One shortcut, for speed: the plain case
the lab's bridge carries almost exclusively (Ethernet, IPv4 without options or fragments, TCP or
UDP) has its fixed header fields read at their fixed offsets; every other frame goes through
dpkt's decoders, and a unit test holds both to the same answers.

A run killed mid-capture leaves a torn last record: the packets before it are returned and
`damage` says where the file stopped making sense.
"""

from __future__ import annotations

import io
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import dpkt

TCP, UDP = "tcp", "udp"


@dataclass(slots=True)
class Packet:
    """One TCP or UDP packet as the capture saw it."""

    ts: float
    proto: str
    src: str  # ip:port, IPv6 as [addr]:port (the log schema's form)
    dst: str
    payload: bytes
    flags: int = 0  # TCP flags (dpkt.tcp.TH_*)
    seq: int = 0
    ack: int = 0


@dataclass
class Capture:
    """What a capture file held: its packets and how well it could be read."""

    packets: list[Packet] = field(default_factory=list)
    records: int = 0  # pcap records read (every frame, whatever it carried)
    other: int = 0  # frames that are not TCP or UDP over IP (ARP, ICMP, ...)
    undecodable: int = 0  # frames whose headers do not parse
    damage: dict[str, Any] | None = None


class _ShortReads:
    """A file that notes when a read returns less than asked: dpkt's reader asks for each
    record's header and then for its `caplen` bytes, so a short read means a torn record."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.short: tuple[int, int] | None = None  # (asked, got) of the first short read

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if size > 0 and len(data) < size and self.short is None:
            self.short = (size, len(data))  # at the very end of the file this is just EOF
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def read_capture(path: Path) -> Capture:
    """Every TCP/UDP packet of a pcap or pcapng file, up to the first damage.

    Raises OSError when the file cannot be opened and ValueError when it is not a capture file
    at all (no valid file header)."""
    capture = Capture()
    with open(path, "rb") as fh:
        raw = io.BytesIO(fh.read())  # a lab run's capture is small; reading from memory is faster
        tracked = _ShortReads(raw)
        reader = dpkt.pcap.UniversalReader(tracked)
        snaplen = getattr(reader, "snaplen", 0) or 0
        link = reader.datalink()
        decode = _decoder(link)
        tracked.short = None  # the file header was read whole
        # The loop runs once per packet: its names are bound locally.
        tell, append, plain = raw.tell, capture.packets.append, decode is _from_ethernet
        limit = snaplen or float("inf")
        offset_before = tell()
        try:
            for ts, frame in reader:
                if tracked.short is not None:
                    asked, got = tracked.short
                    capture.damage = _damage(capture, offset_before,
                                             f"the last record is torn: {got} of {asked} bytes")
                    break
                if len(frame) > limit:
                    capture.damage = _damage(capture, offset_before,
                                             f"a record of {len(frame)} bytes exceeds the snapshot length {snaplen}")
                    break
                capture.records += 1
                offset_before = tell()
                if not (plain and _plain(append, ts, frame)):
                    _add(capture, decode, ts, frame)
        except (dpkt.dpkt.UnpackError, ValueError, OverflowError) as exc:
            capture.damage = _damage(capture, offset_before, f"an unreadable record header ({exc or type(exc).__name__})")
    return capture


def _damage(capture: Capture, offset: int, detail: str) -> dict[str, Any]:
    return {"after_packets": capture.records, "offset": offset, "detail": detail}


def _decoder(link: int):
    """The function that turns one frame of this link type into its IP packet, or None."""
    if link == dpkt.pcap.DLT_EN10MB:
        return _from_ethernet
    if link in (dpkt.pcap.DLT_RAW, 101):  # LINKTYPE_RAW: the frame is the IP packet
        return _from_raw_ip
    if link == dpkt.pcap.DLT_LINUX_SLL:
        return lambda frame: _from_raw_ip(frame[16:]) if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    raise ValueError(f"link type {link} is not one the lab captures (Ethernet, raw IP, Linux cooked)")


def _from_ethernet(frame: bytes):
    kind = frame[12:14]
    if kind == b"\x08\x00":
        return dpkt.ip.IP(frame[14:])
    if kind == b"\x86\xdd":
        return dpkt.ip6.IP6(frame[14:])
    if kind == b"\x81\x00":  # 802.1Q tag: the type follows it
        return _from_ethernet(frame[:12] + frame[16:])
    return None


def _from_raw_ip(frame: bytes):
    version = frame[0] >> 4 if frame else 0
    if version == 4:
        return dpkt.ip.IP(frame)
    if version == 6:
        return dpkt.ip6.IP6(frame)
    return None


_FIXED = struct.Struct("!HHIIBB")  # TCP: ports, seq, ack, data offset, flags
_PORTS = struct.Struct("!HH")
_TOTAL = struct.Struct("!H")
_names: dict[tuple[bytes, int], str] = {}


def _name(ip: bytes, port: int) -> str:
    """`ip:port` of an IPv4 address, remembered: a capture repeats the same few endpoints."""
    key = (ip, port)
    name = _names.get(key)
    if name is None:
        if len(_names) > 100_000:
            _names.clear()
        name = _names[key] = f"{socket.inet_ntoa(ip)}:{port}"
    return name


def _plain(append, ts: float, frame: bytes) -> bool:
    """The plain case at fixed offsets: Ethernet, IPv4 with a 20-byte header, not a fragment,
    TCP or UDP, all headers present. False when the frame is anything else (dpkt decodes it)."""
    if frame[12:14] != b"\x08\x00" or len(frame) < 42 or frame[14] != 0x45 or frame[20:22] not in (b"\x00\x00", b"\x40\x00"):
        return False
    proto = frame[23]
    end = 14 + _TOTAL.unpack_from(frame, 16)[0]
    if proto == 6 and len(frame) >= 54:
        sport, dport, seq, ack, offset, flags = _FIXED.unpack_from(frame, 34)
        start = 34 + (offset >> 4) * 4
        if start < 54 or start > end:
            return False
        append(Packet(ts, TCP, _name(frame[26:30], sport), _name(frame[30:34], dport), frame[start:end], flags, seq, ack))
        return True
    if proto == 17:
        sport, dport = _PORTS.unpack_from(frame, 34)
        append(Packet(ts, UDP, _name(frame[26:30], sport), _name(frame[30:34], dport), frame[42:end]))
        return True
    return False


def _add(capture: Capture, decode, ts: float, frame: bytes) -> None:
    """Any frame, through dpkt's decoders."""
    try:
        ip = decode(frame)
    except (dpkt.dpkt.UnpackError, IndexError, ValueError):
        capture.undecodable += 1
        return
    if ip is None:
        capture.other += 1
        return
    transport = ip.data
    if isinstance(transport, dpkt.tcp.TCP):
        proto = TCP
    elif isinstance(transport, dpkt.udp.UDP):
        proto = UDP
    else:
        capture.other += 1
        return
    if isinstance(ip, dpkt.ip6.IP6):
        src = f"[{socket.inet_ntop(socket.AF_INET6, ip.src)}]:{transport.sport}"
        dst = f"[{socket.inet_ntop(socket.AF_INET6, ip.dst)}]:{transport.dport}"
    else:
        src = f"{socket.inet_ntoa(ip.src)}:{transport.sport}"
        dst = f"{socket.inet_ntoa(ip.dst)}:{transport.dport}"
    payload = bytes(transport.data)
    if proto == TCP:
        capture.packets.append(Packet(ts, proto, src, dst, payload, transport.flags, transport.seq, transport.ack))
    else:
        capture.packets.append(Packet(ts, proto, src, dst, payload))
