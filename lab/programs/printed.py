"""Socket addresses in a program's own printed output: the program's view without any records.

A learner's program prints addresses the way Python shows them, or the way people write them:

    connected by ('10.77.0.5', 48606)          the repr of an AF_INET address tuple
    ('fd00::5', 48606, 0, 0)                   the repr of an AF_INET6 address tuple
    10.77.0.5:48606                            ip:port
    [fd00::5]:48606                            [v6]:port

`addresses_in(line)` returns every address found in a line, normalised to the record format's
`ip:port` / `[addr]:port`, so they join with the server's view and the wire like the lab's
own records. Only real IP addresses count (validated by `ipaddress`), and a port must be in
0..65535: a time of day such as `12:30:45` or a version such as `1.2:3` is not an address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_QUOTE = r"""['"]"""
# ('host', port) and ('v6host', port, flowinfo, scope_id): the repr of a socket address tuple.
_TUPLE = re.compile(rf"\(\s*{_QUOTE}(?P<host>[0-9A-Fa-f:.%\w]+){_QUOTE}\s*,\s*(?P<port>\d{{1,5}})\s*(?:,\s*\d+\s*,\s*\d+\s*)?\)")
_BRACKETED = re.compile(r"\[(?P<host>[0-9A-Fa-f:.%\w]+)\]:(?P<port>\d{1,5})\b")
_V4_COLON = re.compile(r"(?<![\w.:])(?P<host>(?:\d{1,3}\.){3}\d{1,3}):(?P<port>\d{1,5})(?![\d.:])")


@dataclass(frozen=True)
class PrintedAddress:
    """One address a program printed: normalised text, and where it stood in the line."""

    address: str  # `ip:port` or `[v6]:port`
    host: str
    port: int
    start: int


def _normal(host: str, port_text: str) -> tuple[str, int] | None:
    port = int(port_text)
    if port > 65535:
        return None
    bare = host.split("%", 1)[0]  # a link-local scope (`fe80::1%eth0`) is not part of the address
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # `::ffff:10.0.0.3` is the IPv4 client a dual-stack socket saw
    return (f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip}:{port}"), port


def addresses_in(line: str) -> list[PrintedAddress]:
    """Every socket address printed in one line, in the order they appear, each once."""
    found: dict[int, PrintedAddress] = {}
    taken: list[range] = []
    for pattern in (_TUPLE, _BRACKETED, _V4_COLON):
        for match in pattern.finditer(line):
            if any(match.start() in span for span in taken):
                continue  # already read as part of a tuple or a bracketed address
            normal = _normal(match["host"], match["port"])
            if normal is None:
                continue
            address, port = normal
            found[match.start()] = PrintedAddress(address, match["host"], port, match.start())
            taken.append(range(match.start(), match.end()))
    return [found[k] for k in sorted(found)]
