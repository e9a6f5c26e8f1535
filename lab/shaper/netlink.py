"""NFQUEUE over a raw netlink socket, with the kernel's structs packed by hand (stdlib only).

Layouts from linux/netlink.h, linux/netfilter/nfnetlink.h and nfnetlink_queue.h: a netlink
header (host byte order), an nfgenmsg (queue number big-endian), then attributes whose
payloads are big-endian.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import struct

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_CFG_CMD_PF_BIND = 3
NFQNL_CFG_CMD_PF_UNBIND = 4
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 0x1  # accept instead of drop when the queue is full

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_MARK = 3
NFQA_PAYLOAD = 10

NF_DROP = 0
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5


class NetlinkError(OSError):
    """The kernel refused a request (an NLMSG_ERROR with a non-zero code)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def message(msg_type: int, queue_num: int, attrs: bytes, flags: int = NLM_F_REQUEST,
            seq: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    """A whole nfnetlink queue message: header, nfgenmsg, attributes."""
    body = _NFGENMSG.pack(family, 0, queue_num) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def config_cmd(queue_num: int, command: int, pf: int = socket.AF_INET, seq: int = 0) -> bytes:
    """NFQNL_MSG_CONFIG carrying one command (bind, unbind, pf bind/unbind), asking for an ack."""
    payload = struct.pack("!BxH", command, pf)
    return message(NFQNL_MSG_CONFIG, queue_num, attr(NFQA_CFG_CMD, payload),
                   NLM_F_REQUEST | NLM_F_ACK, seq)


def config_params(queue_num: int, copy_range: int = 0xFFFF, maxlen: int = 4096,
                  flags: int = NFQA_CFG_F_FAIL_OPEN, seq: int = 0) -> bytes:
    """NFQNL_MSG_CONFIG setting copy-packet mode, the queue length and the queue flags."""
    attrs = (attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET))
             + attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
             + attr(NFQA_CFG_FLAGS, struct.pack("!I", flags))
             + attr(NFQA_CFG_MASK, struct.pack("!I", flags)))
    return message(NFQNL_MSG_CONFIG, queue_num, attrs, NLM_F_REQUEST | NLM_F_ACK, seq)


def verdict(queue_num: int, packet_id: int, decision: int, payload: bytes | None = None) -> bytes:
    """NFQNL_MSG_VERDICT for one packet; with `payload` the kernel replaces the packet's bytes."""
    attrs = attr(NFQA_VERDICT_HDR, struct.pack("!II", decision, packet_id))
    if payload is not None:
        attrs += attr(NFQA_PAYLOAD, payload)
    return message(NFQNL_MSG_VERDICT, queue_num, attrs)


def parse_attrs(data: bytes | memoryview) -> dict[int, bytes]:
    """Attributes as {type: payload}; a malformed tail ends the parse."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        attrs[kind & NLA_TYPE_MASK] = bytes(data[offset + _NLATTR.size: offset + length])
        offset += _align(length)
    return attrs


@dataclasses.dataclass
class Packet:
    """One queued packet as the kernel handed it to us."""

    packet_id: int
    hw_protocol: int
    hook: int
    payload: bytes
    queue_num: int
    mark: int = 0


def parse_messages(data: bytes | memoryview) -> list[tuple[int, int, bytes]]:
    """Split a datagram into (type, seq, body-after-netlink-header) tuples."""
    out = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        out.append((kind, seq, bytes(data[offset + _NLMSGHDR.size: offset + length])))
        offset += _align(length)
    return out


def parse_packet(body: bytes) -> Packet | None:
    """An NFQNL_MSG_PACKET body (nfgenmsg + attributes) as a Packet; None if it has no header."""
    _family, _version, queue_num = _NFGENMSG.unpack_from(body, 0)
    attrs = parse_attrs(memoryview(body)[_NFGENMSG.size:])
    header = attrs.get(NFQA_PACKET_HDR)
    if header is None or len(header) < 7:
        return None
    packet_id, hw_protocol, hook = struct.unpack_from("!IHB", header)
    mark = struct.unpack("!I", attrs[NFQA_MARK])[0] if len(attrs.get(NFQA_MARK, b"")) == 4 else 0
    return Packet(packet_id, hw_protocol, hook, attrs.get(NFQA_PAYLOAD, b""), queue_num, mark)


def error_code(body: bytes) -> int:
    """The (positive) errno of an NLMSG_ERROR body; 0 is an ack."""
    return -struct.unpack_from("=i", body)[0]


class QueueSocket:
    """A bound NFQUEUE: receive packets, send verdicts. Non-blocking after bind."""

    def __init__(self, queue_num: int, rcvbuf: int = 8 << 20, maxlen: int = 4096,
                 also: tuple[int, ...] = ()) -> None:
        self.queues = (queue_num, *also)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._seq = 0
        try:
            self.sock.bind((0, 0))
            self._grow_buffer(rcvbuf)
            try:
                self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
            except OSError:
                pass
            # PF (un)bind are no-ops on current kernels but needed on old ones; errors ignored.
            self._request(config_cmd(queue_num, NFQNL_CFG_CMD_PF_UNBIND, seq=self._next()), check=False)
            self._request(config_cmd(queue_num, NFQNL_CFG_CMD_PF_BIND, seq=self._next()), check=False)
            for number in self.queues:  # one socket may serve several queues
                self._request(config_cmd(number, NFQNL_CFG_CMD_BIND, seq=self._next()))
                self._request(config_params(number, maxlen=maxlen, seq=self._next()))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _grow_buffer(self, size: int) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE: beyond rmem_max
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def _request(self, data: bytes, check: bool = True) -> None:
        """Send a config message and wait for its ack (the socket is still blocking here)."""
        seq = _NLMSGHDR.unpack_from(data)[3]
        self.sock.send(data)
        self.sock.settimeout(2.0)
        while True:
            for kind, got_seq, body in parse_messages(self.sock.recv(65536)):
                if kind == NLMSG_ERROR and got_seq == seq:
                    code = error_code(body)
                    if code and check:
                        raise NetlinkError(code, f"nfqueue config refused: {os.strerror(code)}")
                    return

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[Packet]:
        """All packets waiting now (possibly none); ENOBUFS (we fell behind) reads as none."""
        packets: list[Packet] = []
        while True:
            try:
                data = self.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                return packets
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return packets
                raise
            for kind, _seq, body in parse_messages(data):
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    packet = parse_packet(body)
                    if packet is not None:
                        packets.append(packet)
            if len(packets) >= 256:
                return packets

    def send_verdict(self, queue_num: int, packet_id: int, decision: int, payload: bytes | None = None) -> None:
        data = verdict(queue_num, packet_id, decision, payload)
        while True:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                continue  # the kernel's side never stays full for long; a verdict must not be lost

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            for number in self.queues:
                self._request(config_cmd(number, NFQNL_CFG_CMD_UNBIND, seq=self._next()), check=False)
        except OSError:
            pass
        self.sock.close()
