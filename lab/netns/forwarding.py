"""Turning IPv4 forwarding on in this namespace only once a router's rules are in force.

Why not a compose sysctl: the kernel applies it when the namespace is made, so a restarted
router forwarded for the moment before its program put its NAT rules back, and a packet in that
moment left a connection-tracking entry without NAT that kept the flow untranslated for good.
The router therefore starts with `net.ipv4.ip_forward=0` and this module switches forwarding
on, interface by interface, after the rules. `/proc/sys` is read-only in a container, so it
goes through rtnetlink (`RTM_NEWLINK` carrying `IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF`),
which needs only `CAP_NET_ADMIN` in this namespace; IPv4 forwards a packet when the interface
it came in on has forwarding on.

IPv6 has no such switch over netlink, so an IPv6 router keeps its compose sysctl.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

RTM_NEWLINK = 16
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
IFLA_AF_SPEC = 26
IFLA_INET_CONF = 1
IPV4_DEVCONF_FORWARDING = 1


def _attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute: length, type, payload, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def forwarding_request(ifindex: int, sequence: int) -> bytes:
    """The RTM_NEWLINK message that sets forwarding on interface `ifindex`."""
    conf = _attribute(IFLA_INET_CONF, _attribute(IPV4_DEVCONF_FORWARDING, struct.pack("=I", 1)))
    spec = _attribute(IFLA_AF_SPEC, _attribute(socket.AF_INET, conf))
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, 0, 0) + spec
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body


def acknowledgement(reply: bytes) -> int:
    """The errno of the kernel's answer (0 when it acknowledged)."""
    _length, kind, _flags, _sequence, _pid = struct.unpack_from("=IHHII", reply)
    if kind != NLMSG_ERROR:
        return 0
    (error,) = struct.unpack_from("=i", reply, 16)
    return -error


def enable_ipv4_forwarding() -> None:
    """Forwarding on for every interface of this namespace; OSError names the one refused."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # NETLINK_ROUTE
        sock.bind((0, 0))
        for sequence, (index, name) in enumerate(socket.if_nameindex(), start=1):
            sock.send(forwarding_request(index, sequence))
            error = acknowledgement(sock.recv(8192))
            if error:
                raise OSError(error, f"IPv4 forwarding on {name}: {os.strerror(error)}")


def switches() -> dict[str, str]:
    """The forwarding switches as the kernel reports them: the namespace-wide ones, then each
    interface's IPv4 one (`ipv4:eth0`), the switch IPv4 forwarding actually follows."""
    found = {}
    for name, path in (("ipv4", "/proc/sys/net/ipv4/ip_forward"), ("ipv6", "/proc/sys/net/ipv6/conf/all/forwarding")):
        try:
            found[name] = Path(path).read_text().strip()
        except OSError:
            pass
    for _index, name in socket.if_nameindex():
        try:
            found[f"ipv4:{name}"] = Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").read_text().strip()
        except OSError:
            pass
    return found
