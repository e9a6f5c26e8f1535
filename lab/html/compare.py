"""Two runs side by side: what was set differently, how each measured number moved, which
expectations changed verdict and which client sockets changed flag or loss.

Pure over two `RunData`; `lab diff` prints it as tables and writes it as a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.expect.query import parse_ts
from lab.html.rundata import AT_SERVER, TO_CLIENT, TO_SERVER, RunData, Socket, lost_by_where, marks_of


@dataclass
class MetricRow:
    name: str
    a: float | None
    b: float | None
    unit: str = ""
    better: str = "lower"  # which way is good, for colouring: lower | higher | none

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ratio(self) -> float | None:
        return None if self.a in (None, 0) or self.b is None else self.b / self.a

    @property
    def trend(self) -> str:
        """`better`, `worse` or `same`, for colouring the delta."""
        delta = self.delta
        if delta is None or abs(delta) < 1e-9 or self.better == "none":
            return "same"
        return "better" if (delta < 0) == (self.better == "lower") else "worse"


@dataclass
class ExpectationChange:
    name: str
    a: bool | None  # None: not in that run
    b: bool | None
    measured_a: str = ""
    measured_b: str = ""

    @property
    def change(self) -> str:
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        if self.a == self.b:
            return "same"
        return "now passes" if self.b else "now FAILS"


@dataclass
class SocketChange:
    client: str
    proto: str
    index: int  # the client's n-th socket of that proto (ports differ between runs)
    a: str  # flag and loss in A, "–" when absent
    b: str


@dataclass
class Comparison:
    a: RunData
    b: RunData
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    metrics: list[MetricRow] = field(default_factory=list)
    expectations: list[ExpectationChange] = field(default_factory=list)
    sockets: list[SocketChange] = field(default_factory=list)


def compare(a: RunData, b: RunData) -> Comparison:
    result = Comparison(a=a, b=b)
    result.settings = _settings(a.manifest.get("scenario_model") or {}, b.manifest.get("scenario_model") or {})
    ma, mb = measure(a), measure(b)
    for name in dict.fromkeys([*ma, *mb]):
        unit, better = _kind(name)
        result.metrics.append(MetricRow(name, ma.get(name), mb.get(name), unit, better))
    result.expectations = _expectations(a.manifest.get("expectations") or [], b.manifest.get("expectations") or [])
    result.sockets = _socket_changes(a.sockets, b.sockets)
    return result


def measure(run: RunData) -> dict[str, float | None]:
    """The numbers worth comparing, by name, in a stable order."""
    out: dict[str, float | None] = {
        "run wall time": _seconds(run.manifest.get("started"), run.manifest.get("ended")),
        "clients": len(run.clients()),
        "client sockets": len(run.sockets),
        "clients not ok": sum(1 for code in (run.manifest.get("clients") or {}).values() if code != 0),
        "rows flagged": sum(1 for s in run.sockets if s.conversation.flag != "ok"),
    }
    for proto in sorted({s.conversation.proto for s in run.sockets}):
        # Every message counted as the run was read, drawn or not (lab.html.journeys).
        sockets = [s for s in run.sockets if s.conversation.proto == proto]
        sent = sum(s.sent_count for s in sockets)
        legs: dict[str, int] = {}
        for sock in sockets:
            for where, n in lost_by_where(sock).items():
                legs[where] = legs.get(where, 0) + n
        lost = sum(legs.values())
        rtt = run.rtt.get(proto) or {}
        out[f"{proto} messages sent"] = sent
        out[f"{proto} lost"] = lost
        out[f"{proto} loss %"] = round(100 * lost / sent, 2) if sent else None
        for leg in (TO_SERVER, AT_SERVER, TO_CLIENT):
            out[f"{proto} lost {leg}"] = legs.get(leg, 0)
        out[f"{proto} rtt p50"] = rtt.get("p50")
        out[f"{proto} rtt p95"] = rtt.get("p95")
        out[f"{proto} rtt max"] = rtt.get("max")
        if proto == "tcp":
            out["tcp reconnects"] = sum(marks_of(s, "reconnect") for s in sockets)
            if run.has_wire:  # from the capture
                out["tcp retransmitted segments"] = sum((s.wire or {}).get("retransmitted", 0) for s in sockets)
    return out


def _kind(name: str) -> tuple[str, str]:
    if "rtt" in name:
        return "ms", "lower"
    if name == "run wall time":
        return "s", "lower"
    if "lost" in name or "loss" in name or "not ok" in name or "flagged" in name or "reconnects" in name:
        return "", "lower"
    return "", "none"


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return round((parse_ts(end) - parse_ts(start)).total_seconds(), 2)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return None


def _settings(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Scenario fields set differently (dotted paths); the name, description and expectations are
    left out (the expectations have their own table)."""
    out = []
    for key in dict.fromkeys([*a, *b]):
        if not prefix and key in ("name", "description", "expect"):
            continue
        va, vb, path = a.get(key), b.get(key), f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(_settings(va, vb, path + "."))
        elif va != vb:
            out.append((path, va, vb))
    return out


def _expectations(a: list[dict], b: list[dict]) -> list[ExpectationChange]:
    by_a = {e.get("name"): e for e in a}
    by_b = {e.get("name"): e for e in b}
    out = []
    for name in dict.fromkeys([*by_a, *by_b]):
        ea, eb = by_a.get(name), by_b.get(name)
        out.append(ExpectationChange(
            name=str(name), a=ea.get("passed") if ea else None, b=eb.get("passed") if eb else None,
            measured_a=str(ea.get("measured", "")) if ea else "", measured_b=str(eb.get("measured", "")) if eb else ""))
    return out


def _socket_changes(a: list[Socket], b: list[Socket]) -> list[SocketChange]:
    """Sockets matched by client, proto, session and order (ports differ between runs); those
    whose flag, wire flag or loss differ."""
    ka, kb = _keyed(a), _keyed(b)
    out = []
    for key in dict.fromkeys([*ka, *kb]):
        sa, sb = _state(ka.get(key)), _state(kb.get(key))
        if sa != sb:
            out.append(SocketChange(client=key[0], proto=key[1], index=key[3], a=sa, b=sb))
    return out


def _keyed(sockets: list[Socket]) -> dict[tuple[str, str, int, int], Socket]:
    out: dict[tuple[str, str, int, int], Socket] = {}
    seen: dict[tuple[str, str, int], int] = {}
    for sock in sockets:
        c = sock.conversation
        base = (c.client, c.proto, int(c.session or 0))
        seen[base] = seen.get(base, 0) + 1
        out[(*base, seen[base])] = sock
    return out


def _state(sock: Socket | None) -> str:
    if sock is None:
        return "–"
    parts = [sock.conversation.flag]
    wire_flag = (sock.wire or {}).get("flag")
    if wire_flag and wire_flag != "ok":
        parts.append(f"wire {wire_flag}")
    lost = sock.lost_count
    if lost:
        parts.append(f"{lost} lost")
    return ", ".join(parts)
