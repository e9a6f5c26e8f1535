"""Read a capture file into packets with dpkt, keeping everything before any damage.

dpkt (a small, pure-Python, long-maintained pcap library) reads the file format (pcap and
pcapng) and decodes Ethernet, IPv4/IPv6, TCP and UDP; see docs/wire.md for why it was chosen
over scapy and tshark, with the measured parse speed. One shortcut, for speed: the plain case
the lab's bridge carries almost exclusively (Ethernet, IPv4 without options or fragments, TCP or
UDP) has its fixed header fields read at their fixed offsets; every other frame goes through
dpkt's decoders, and a unit test holds both to the same answers.

A second shortcut: a classic pcap's records are walked a chunk of the file at a time with dpkt's
own record header (its fields and byte order for the file's magic) rather than through dpkt's
reader, which builds an object per record header; dpkt still reads and checks the file header,
and reads pcapng (from the file, as it goes).

The file is read as a stream (`iter_capture`): a chunk of it and a batch of packets at a time,
so what is held does not grow with the capture (issue 8).

A run killed mid-capture leaves a torn last record: the packets before it are returned and
`damage` says where the file stopped making sense.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import struct
from collections.abc import Iterator
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


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Python's cycle collector paused while a capture's packets and flows are made: they hold
    no reference cycles, so its passes over hundreds of thousands of new objects free nothing
    (they were a fifth of the extraction's time). Nested uses leave it as the outer one found it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    """Every TCP/UDP packet of a pcap or pcapng file, up to the first damage, in a list: for a
    small capture (tests, tools). The wire view streams them instead (`iter_capture`).

    Raises OSError when the file cannot be opened and ValueError when it is not a capture file
    at all (no valid file header)."""
    capture = Capture()
    for batch in iter_capture(path, capture):
        capture.packets += batch
    return capture


def iter_capture(path: Path, capture: Capture) -> Iterator[list[Packet]]:
    """The TCP/UDP packets of a capture file in file order (time order: tcpdump writes them as
    they come), a batch at a time, up to the first damage; `capture`'s counts and `damage` are
    filled in as they are read (complete once the batches are exhausted), its `packets` left alone.

    Holds one read chunk of the file and one batch of packets, whatever the file's size (issue
    8). Raises OSError when the file cannot be opened and ValueError when it is not a capture file
    at all (no valid file header), both before the first batch."""
    fh = open(path, "rb")
    try:
        frames, snaplen, decode, at = _open_frames(fh)
    except BaseException:
        fh.close()
        raise
    return _batches(fh, frames, snaplen, decode, at, capture)


def _open_frames(fh: BinaryIO):
    """The file header read and checked by dpkt; the records' (time, frame) walker for its format."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(4)
    fh.seek(0)
    magic = int.from_bytes(head, "big")
    classic = magic in dpkt.pcap.MAGIC_TO_PKT_HDR
    # A torn record can only be the last one: a pcapng reader's reads are watched for a short one.
    tracked = None if classic else _ShortReads(fh)
    try:
        reader = dpkt.pcap.UniversalReader(tracked or fh)  # the file header, read and checked by dpkt
    except dpkt.dpkt.UnpackError as exc:  # NeedData included: an empty or cut file header
        # An empty file is what tcpdump leaves when it is stopped before its first write.
        raise ValueError(f"no whole capture file header ({size} bytes): {exc}") from exc
    snaplen = getattr(reader, "snaplen", 0) or 0
    decode = _decoder(reader.datalink())
    at = _Reading()
    if classic:
        fh.seek(dpkt.pcap.FileHdr.__hdr_len__)
        frames = _classic_records(fh, magic, at)
    else:
        tracked.short = None  # the file header was read whole
        frames = _pcapng_records(reader, fh, size, tracked, at)
    return frames, snaplen, decode, at


BATCH = 2048  # packets handed on at a time: few enough to hold, many enough to cost nothing per packet


def _batches(fh: BinaryIO, frames, snaplen: int, decode, at: _Reading, capture: Capture) -> Iterator[list[Packet]]:
    # The loop runs once per packet: its names are bound locally.
    batch: list[Packet] = []
    append, plain = batch.append, decode is _from_ethernet
    limit = snaplen or float("inf")
    records = 0
    try:
        with no_collection():
            try:
                for ts, frame in frames:
                    if len(frame) > limit:
                        at.damage = f"a record of {len(frame)} bytes exceeds the snapshot length {snaplen}"
                        break
                    records += 1
                    if not (plain and _plain(append, ts, frame)):
                        _add(capture, decode, ts, frame, append)
                    if len(batch) >= BATCH:
                        capture.records = records
                        yield batch
                        batch = []
                        append = batch.append
            except (dpkt.dpkt.UnpackError, ValueError, OverflowError) as exc:
                at.damage = f"an unreadable record header ({exc or type(exc).__name__})"
        capture.records = records
        if at.damage is not None:
            capture.damage = {"after_packets": records, "offset": at.offset, "detail": at.damage}
        if batch:
            yield batch
    finally:
        fh.close()


class _Reading:
    """Where the reading is (the offset of the record at hand) and why it stopped early, if it did."""

    offset = 0
    damage: str | None = None


_NANO = {dpkt.pcap.TCPDUMP_MAGIC_NANO, dpkt.pcap.PMUDPCT_MAGIC_NANO}
CHUNK = 1 << 20  # bytes of the file read at a time


def _classic_records(fh: BinaryIO, magic: int, at: _Reading) -> Iterator[tuple[float, bytes]]:
    """(time, frame) of each classic pcap record, walked a chunk of the file at a time with the
    record header that dpkt reads this file's records with (its fields and byte order for this
    magic), without dpkt's object per record header: that object was the largest single cost of
    a capture's extraction (docs/benchmarks.md). `tests/unit/test_wire_paths.py` holds both to
    the same records."""
    header = dpkt.pcap.MAGIC_TO_PKT_HDR[magic]
    unpack, length = struct.Struct(header.__hdr_fmt__).unpack_from, header.__hdr_len__
    divisor = 1e9 if magic in _NANO else 1e6
    base = dpkt.pcap.FileHdr.__hdr_len__  # the file offset of data[0]
    data, offset, end = b"", 0, 0
    while True:
        if offset + length <= end:
            sec, fraction, caplen = unpack(data, offset)[:3]
            start = offset + length
            stop = start + caplen
            if stop <= end:
                at.offset = base + offset
                offset = stop
                yield sec + fraction / divisor, data[start:stop]
                continue
            need = length + caplen
        else:
            need = length
        # The record at hand is not whole in this chunk: its rest and the next chunk.
        more = fh.read(max(CHUNK, need - (end - offset)))
        base += offset
        data, offset = data[offset:] + more, 0
        end = len(data)
        if len(more) < need - (end - len(more)):  # the file ends inside this record
            at.offset = base
            if end == 0:
                return
            if end < length:
                at.damage = f"an unreadable record header ({end} of its {length} bytes)"
            else:
                at.damage = f"the last record is torn: {end - length} of {unpack(data, 0)[2]} bytes"
            return


def _pcapng_records(reader, fh: BinaryIO, size: int, tracked: _ShortReads,
                    at: _Reading) -> Iterator[tuple[float, bytes]]:
    """(time, frame) of each pcapng packet block, read by dpkt from the file as it goes; a short
    read at the end is a torn one."""
    at.offset = fh.tell()
    for ts, frame in reader:
        after = fh.tell()
        if after == size and tracked.short is not None:
            at.damage = "the last record is torn: {1} of {0} bytes".format(*tracked.short)
            return
        yield ts, frame
        at.offset = after


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


# The plain frame's fields, each at its fixed offset: EtherType, IPv4 version and header
# length, total length, flags and fragment offset, protocol; for TCP also (after the addresses
# and ports) seq, ack, data offset and flags, read in the same call when the frame is that long.
_IPV4 = struct.Struct("!12xHBxH2xHxB")
_IPV4_TCP = struct.Struct("!12xHBxH2xHxB14xIIBB")
_MF_AND_OFFSET = 0xBFFF  # every bit of the fragment field but DF: a fragment or a reserved bit
_PORTS = struct.Struct("!HH")
_pairs: dict[bytes, tuple[str, str]] = {}


def _pair(addresses: bytes) -> tuple[str, str]:
    """(`ip:port`, `ip:port`) of a frame's 12 bytes of IPv4 source, destination and ports,
    remembered in _pairs: a capture repeats the same few conversations."""
    if len(_pairs) > 100_000:
        _pairs.clear()
    sport, dport = _PORTS.unpack_from(addresses, 8)
    names = _pairs[addresses] = (f"{socket.inet_ntoa(addresses[:4])}:{sport}",
                                 f"{socket.inet_ntoa(addresses[4:8])}:{dport}")
    return names


def _plain(append, ts: float, frame: bytes) -> bool:
    """The plain case at fixed offsets: Ethernet, IPv4 with a 20-byte header, not a fragment,
    TCP or UDP, all headers present. False when the frame is anything else (dpkt decodes it)."""
    if len(frame) >= 54:
        kind, version, total, fragment, proto, seq, ack, offset, flags = _IPV4_TCP.unpack_from(frame)
    elif len(frame) >= 42:
        kind, version, total, fragment, proto = _IPV4.unpack_from(frame)
        if proto == 6:
            return False  # too short for a TCP header
    else:
        return False
    if kind != 0x0800 or version != 0x45 or fragment & _MF_AND_OFFSET:
        return False
    end = 14 + total
    if proto == 6:
        start = 34 + (offset >> 4) * 4
        if start < 54 or start > end:
            return False
        addresses = frame[26:38]
        src, dst = _pairs.get(addresses) or _pair(addresses)
        append(Packet(ts, TCP, src, dst, frame[start:end], flags, seq, ack))
        return True
    if proto == 17:
        addresses = frame[26:38]
        src, dst = _pairs.get(addresses) or _pair(addresses)
        append(Packet(ts, UDP, src, dst, frame[42:end]))
        return True
    return False


def _add(capture: Capture, decode, ts: float, frame: bytes, append=None) -> None:
    """Any frame, through dpkt's decoders; a packet goes to `append` (default: capture.packets)."""
    append = append or capture.packets.append
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
        append(Packet(ts, proto, src, dst, payload, transport.flags, transport.seq, transport.ack))
    else:
        append(Packet(ts, proto, src, dst, payload))
