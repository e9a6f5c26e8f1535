"""The run's topology as geometry for the SVG template: the lab network as a bar, the server
above it, the clients below, a shaper box wherever traffic is impaired, and the capture point.
A run with several networks (lab/topology.py) gets one bar per network side by side, each host
on its own network's bar with its address there, and each router between the bars it joins.
Where the run spans nodes (a swarm), the clients are ordered by node and each node's hosts sit
in a frame that names it.

Read from the manifest (the resolved compose config and the containers' addresses) and the
shapers' own `applied` records, so the drawing shows what ran, not what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from lab.expect.query import Record

WIDTH = 900
BAR_Y = 170
MAX_CLIENTS = 6  # boxes drawn; the rest are summed up in one box


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    title: str
    lines: list[str]
    kind: str  # server | client | router | shaper | more | capture | node (a frame around one node's hosts)


@dataclass
class Topology:
    boxes: list[Box] = field(default_factory=list)
    links: list[tuple[float, float, float, float]] = field(default_factory=list)
    network: str = ""
    bars: list[tuple[float, float, str, str]] = field(default_factory=list)  # (x from, x to, network, label)
    capture: Box | None = None
    capture_at: list[float] = field(default_factory=list)  # where on the bars the captures sit (several networks)
    capture_note: str = ""
    width: int = WIDTH
    height: int = 330
    bar_y: int = BAR_Y


def topology(manifest: dict[str, Any], events: list[Record], capture: dict[str, Any] | None,
             capture_note: str) -> Topology:
    config = _config(manifest)
    services = _services(manifest, config)
    ips = {c.get("service"): c.get("ip") for c in (manifest.get("containers") or {}).values()}
    nodes = {c.get("service"): c.get("node") for c in (manifest.get("containers") or {}).values() if c.get("node")}
    shaping = {r.get("service"): r for r in events if r.get("role") == "shaper" and r.get("event") == "applied"}
    top = Topology()
    networks = list((config.get("networks") or {}).keys())
    top.network = " · ".join(filter(None, [", ".join(networks) or "lab network", manifest.get("subnet"),
                                           "internal (no route out)"]))
    servers = [s for s, role in services.items() if role == "server"] or ["server"]
    clients = [s for s, role in services.items() if role == "client"]
    if nodes:
        clients.sort(key=lambda name: (nodes.get(name) or "~", _natural(name)))  # unknown last
    model = manifest.get("scenario_model") or {}
    server_model = model.get("server") or {}
    protos = "/".join(server_model.get("proto") or ["tcp", "udp"])
    routers = [s for s, role in services.items() if role == "router"]
    if len(networks) > 1 or routers:
        _several_networks(top, config, servers, clients, routers, server_model, shaping, events)
        _capture(top, capture, capture_note, left=not any(b.kind == "server" and b.x < 300 for b in top.boxes))
        return top
    for index, name in enumerate(servers):
        w, x = 230, WIDTH / 2 - 115 + index * 250
        lines = [f"{ips.get(name) or '?'}:{server_model.get('port', 19200)} {protos}",
                 f"{server_model.get('mode', 'async')} server"]
        if name in nodes:
            top.boxes.append(_frame(nodes[name], x, x + w, 20, 62))
        top.boxes.append(Box(x, 20, w, 62, name, lines, "server"))
        _attach(top, name, x + w / 2, 82, BAR_Y, shaping)
    shown = clients if len(clients) <= MAX_CLIENTS else clients[:MAX_CLIENTS - 1]
    slots = len(shown) + (len(clients) > len(shown))
    gap = (WIDTH - 40) / max(slots, 1)
    w = min(150, gap - 12)
    for node, first, last in _runs([nodes.get(name) for name in shown]):
        x_first, x_last = (20 + gap * i + (gap - w) / 2 for i in (first, last))
        top.boxes.append(_frame(node, x_first, x_last + w, 250, 50))
    for index, name in enumerate(shown):
        x = 20 + gap * index + (gap - w) / 2
        top.boxes.append(Box(x, 250, w, 50, name, [ips.get(name) or "?"], "client"))
        _attach(top, name, x + w / 2, 250, BAR_Y, shaping)
    if len(clients) > len(shown):
        rest = clients[len(shown):]
        x = 20 + gap * len(shown) + (gap - w) / 2
        top.boxes.append(Box(x, 250, w, 50, f"+{len(rest)} clients", [f"{rest[0]} … {rest[-1]}"], "more"))
        top.links.append((x + w / 2, 250, x + w / 2, BAR_Y))
    _capture(top, capture, capture_note)
    return top


def _capture(top: Topology, capture: dict[str, Any] | None, capture_note: str, left: bool = True) -> None:
    """The capture point: on the bar, its box above it (in the server's row where there are
    several networks and routers in between, on the side the server leaves free)."""
    if capture:
        points = capture.get("points") or []
        where = (f"tcpdump on {len(points)} bridges: " + ", ".join(str(p.get("network")) for p in points)
                 if len(points) > 1 else
                 f"tcpdump on the {capture.get('point') or 'bridge'} {capture.get('interface') or ''}".strip())
        count = f"{capture.get('file') or 'capture'} · {capture.get('packets', '?')} packets"
        dropped = (capture.get("kernel_dropped") or 0) + (capture.get("interface_dropped") or 0)
        lines = [where, count] + ([f"{dropped} dropped by the capture"] if dropped else [])
        top.capture = Box(28, BAR_Y - 66, 240, 50, "capture", lines, "capture")
        if top.bars:
            # Several networks: in the first free corner (below the bars, right or left; else
            # above them on the side the server leaves free).
            corners = [Box(WIDTH - 268, 250, 240, 50, "", [], ""), Box(28, 250, 240, 50, "", [], ""),
                       Box(28 if left else WIDTH - 268, 20, 240, 50, "", [], "")]
            free = next((c for c in corners if not any(_overlap(c, b) for b in top.boxes)), corners[-1])
            top.capture.x, top.capture.y = free.x, free.y
            # On each captured network's bar: the points name their network; an older run names
            # only its one bridge, `lab-<token>-<network index>`.
            captured = [p.get("network") for p in points if p.get("network")]
            suffix = str(capture.get("interface") or "").rsplit("-", 1)[-1]
            if not captured and suffix.isdigit() and int(suffix) < len(top.bars):
                captured = [top.bars[int(suffix)][2]]
            top.capture_at = [x2 - 18 for _x1, x2, name, _label in top.bars if name in captured] or [top.bars[0][1] - 18]
    top.capture_note = capture_note


def _overlap(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def _several_networks(top: Topology, config: dict[str, Any], servers: list[str], clients: list[str],
                      routers: list[str], server_model: dict[str, Any], shaping: dict[str, Record],
                      events: list[Record]) -> None:
    """One bar per network in the compose file's order; the server above its network, each
    router in the row between, linked to every bar it joins, the clients below their own."""
    names = list((config.get("networks") or {}).keys())
    width = (WIDTH - 40) / max(len(names), 1)
    centre = {name: 20 + width * (i + 0.5) for i, name in enumerate(names)}
    for i, name in enumerate(names):
        spec = (config.get("networks") or {}).get(name) or {}
        subnets = [c.get("subnet") for c in ((spec.get("ipam") or {}).get("config") or []) if c.get("subnet")]
        top.bars.append((20 + width * i + 4, 20 + width * (i + 1) - 4, name, " · ".join([name, *subnets])))
    top.network = "internal networks (no route out)"
    nat = {r.get("service") or r.get("host"): r.get("nat") for r in events
           if r.get("role") == "netns" and r.get("event") == "applied" and r.get("nat")}
    port = server_model.get("port", 19200)
    protos = "/".join(server_model.get("proto") or ["tcp", "udp"])
    for name in servers:
        nets = _host_networks(config, name)
        net = next(iter(nets), names[0])
        x = centre.get(net, WIDTH / 2) - 115
        lines = [f"{_address(nets.get(net))}:{port} {protos}", f"{server_model.get('mode', 'async')} server"]
        top.boxes.append(Box(x, 20, 230, 62, name, lines, "server"))
        _attach(top, name, x + 115, 82, BAR_Y, shaping)
    for name in routers:
        nets = _host_networks(config, name)
        joined = [n for n in nets if n in centre] or names[:1]
        x = sum(centre[n] for n in joined) / len(joined)
        lines = [" ".join(_address(nets.get(n)) for n in joined)] + ([" + ".join(nat[name])] if nat.get(name) else [])
        top.boxes.append(Box(x - 85, 92, 170, 48 if len(lines) == 1 else 60, name, lines, "router"))
        for n in joined:
            bar_x = min(max(x, centre[n] - width / 2 + 24), centre[n] + width / 2 - 24)
            top.links.append((x, 140, bar_x, BAR_Y - 11))
    by_network: dict[str, list[str]] = {n: [] for n in names}
    for name in clients:
        nets = _host_networks(config, name)
        by_network.setdefault(next(iter(nets), names[0]), []).append(name)
    per_column = 3
    for net, members in by_network.items():
        if not members or net not in centre:
            continue
        shown = members if len(members) <= per_column else members[:per_column - 1]
        slots = len(shown) + (len(members) > len(shown))
        gap = width / slots
        w = min(150, gap - 12)
        left = centre[net] - width / 2
        for index, name in enumerate(shown):
            x = left + gap * index + (gap - w) / 2
            top.boxes.append(Box(x, 250, w, 50, name, [_address(_host_networks(config, name).get(net))], "client"))
            _attach(top, name, x + w / 2, 250, BAR_Y, shaping)
        if len(members) > len(shown):
            rest = members[len(shown):]
            x = left + gap * len(shown) + (gap - w) / 2
            top.boxes.append(Box(x, 250, w, 50, f"+{len(rest)} clients", [f"{rest[0]} … {rest[-1]}"], "more"))
            top.links.append((x + w / 2, 250, x + w / 2, BAR_Y))


def _host_networks(config: dict[str, Any], name: str) -> dict[str, list[str]]:
    """A host's networks and its addresses on each, from the compose file: an echo program that
    joins its route helper's namespace (`network_mode: service:<host>-net`) has the helper's."""
    services = config.get("services") or {}
    spec = services.get(name) or {}
    mode = str(spec.get("network_mode") or "")
    if mode.startswith("service:"):
        spec = services.get(mode.split(":", 1)[1]) or {}
    networks = spec.get("networks") or {}
    if isinstance(networks, list):
        return {n: [] for n in networks}
    return {n: [a for a in ((v or {}).get("ipv4_address"), (v or {}).get("ipv6_address")) if a]
            for n, v in networks.items()}


def _address(addresses: list[str] | None) -> str:
    """A host's address on one network as the drawing shows it: IPv4 first, IPv6 in brackets."""
    if not addresses:
        return "?"
    first = addresses[0]
    return f"[{first}]" if ":" in first else first


def _frame(node: str, left: float, right: float, y: float, h: float) -> Box:
    """A frame around the boxes from `left` to `right` (drawn behind them), named after their node."""
    return Box(left - 6, y - 17, right - left + 12, h + 23, node, [], "node")


def _runs(nodes: list[str | None]) -> list[tuple[str, int, int]]:
    """(node, first index, last index) of each run of equal, known nodes in order."""
    runs: list[tuple[str, int, int]] = []
    for index, node in enumerate(nodes):
        if node and runs and runs[-1][0] == node and runs[-1][2] == index - 1:
            runs[-1] = (node, runs[-1][1], index)
        elif node:
            runs.append((node, index, index))
    return runs


def _attach(top: Topology, service: str, x: float, y_from: float, y_to: float, shaping: dict[str, Record]) -> None:
    """A line from a box to the network bar, through its shaper when it has one."""
    applied = shaping.get(f"{service}-shaper")
    if not applied:
        top.links.append((x, y_from, x, y_to))
        return
    mid = (y_from + y_to) / 2
    top.boxes.append(Box(x - 95, mid - 16, 190, 32, "shaper", [impairment_text(applied)], "shaper"))
    top.links.append((x, y_from, x, mid - 16))
    top.links.append((x, mid + 16, x, y_to))


def impairment_text(applied: Record) -> str:
    """`loss 10% · both · userspace` from a shaper's `applied` record: only what is set."""
    parts = []
    if applied.get("delay_ms"):
        jitter = f"±{applied['jitter_ms']:g}" if applied.get("jitter_ms") else ""
        parts.append(f"delay {applied['delay_ms']:g}{jitter} ms")
    for key in ("loss", "duplicate", "reorder", "corrupt"):
        if applied.get(key):
            parts.append(f"{key} {100 * float(applied[key]):g}%")
    if applied.get("rate"):
        parts.append(f"rate {applied['rate']}")
    parts.append(str(applied.get("direction") or "egress"))
    if applied.get("backend"):
        parts.append(str(applied["backend"]))
    return " · ".join(parts)


def _services(manifest: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """Service name -> role, from the resolved compose config (else the containers)."""
    services = {}
    for name, spec in (config.get("services") or {}).items():
        labels = (spec or {}).get("labels") or {}
        services[name] = labels.get("io.socketlab.role") or ("client" if name.startswith("client") else name)
    if not services:
        for info in (manifest.get("containers") or {}).values():
            services[info.get("service")] = info.get("role")
    return dict(sorted(services.items(), key=lambda item: _natural(item[0])))


def _config(manifest: dict[str, Any]) -> dict[str, Any]:
    raw = manifest.get("compose_config")
    if isinstance(raw, dict):
        return raw
    try:
        # libyaml's loader when present: a 200-client compose config takes seconds in pure Python.
        parsed = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if raw else None
    except yaml.YAMLError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {}


def _natural(name: str) -> tuple[str, int]:
    stem = name.rstrip("0123456789")
    return stem, int(name[len(stem):] or -1)
