"""Render a run (or two) as one self-contained HTML file: Jinja2 templates, SVG drawn from the
data, the stylesheet and the few lines of script inlined. Nothing is fetched when it opens.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined, select_autoescape

from lab.html.charts import loss_bars, rtt_chart
from lab.html.compare import Comparison, compare
from lab.html.journeys import HEAD, NOTABLE, TAIL
from lab.html.ladder import ladder
from lab.html.rundata import (
    AT_SERVER,
    TO_CLIENT,
    TO_SERVER,
    RunData,
    Socket,
    load_run,
    loss_by_direction,
    lost_by_place,
    lost_by_where,
)
from lab.html.topology import topology
from lab.html.wire import attach_wire, capture_points, message_places, read_wire
from lab.logs import has_nodes

REPORT_FILE = "report.html"
PAGE_ROWS = 50  # table rows per page; the clients' ladders page by the same count
# Arrow heads in the ladders, one marker per kind (SVG markers cannot take their line's colour).
ARROW_COLOURS = {"handshake": "#7c3aed", "message": "#2563eb", "echo": "#16a34a", "close": "#64748b",
                 "reset": "#dc2626", "retransmission": "#ea580c", "ack": "#94a3b8", "lost": "#dc2626"}


@functools.cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("lab.html", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      bytecode_cache=_compiled_templates())
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:.2f}"
    env.filters["secs"] = lambda v: "–" if v is None else f"{v:.3f} s"
    return env


def _compiled_templates() -> FileSystemBytecodeCache | None:
    """Jinja2's own cache of compiled templates, in a directory of this user's own under the
    temporary directory, checked against each template's source: compiling the two templates
    was 0.4 s of every `lab run` (docs/benchmarks.md). Without a usable directory, no cache."""
    try:
        return FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        return None


def write_report(directory: Path) -> Path:
    """Write `report.html` into a run directory and return its path."""
    run = load_with_wire(directory)
    path = directory / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(run), encoding="utf-8")
    tmp.replace(path)
    return path


def load_with_wire(directory: Path) -> RunData:
    """The run and its wire view: the wire's places of the lost round trips are given to the
    journeys as they are followed, so the counts by place are every message's."""
    wire, note = read_wire(directory)
    run = load_run(directory, message_places(wire))
    attach_wire(run, wire, note)
    return run


def write_diff(a: Path, b: Path, path: Path | None = None) -> tuple[Comparison, Path]:
    """Compare two run directories; write the page (default: in B's directory) and return both."""
    comparison = compare(load_with_wire(a), load_with_wire(b))
    path = path or b / f"diff-{a.name}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_diff(comparison), encoding="utf-8")
    tmp.replace(path)
    return comparison, path


def render_diff(comparison: Comparison) -> str:
    return environment().get_template("diff.html.j2").render(
        a=comparison.a, b=comparison.b, c=comparison, css=_asset("report.css"), num=number, signed=signed)


def number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def signed(value: float | None) -> str:
    if value is None:
        return "–"
    return ("+" if value > 0 else "") + number(value) if value else "0"


def render_report(run: RunData) -> str:
    server = _server_address(run)
    clients = []
    for name in run.clients():
        sockets = [s for s in run.sockets if s.conversation.client == name]
        clients.append({
            "name": name,
            "sockets": sockets,
            "ladders": [ladder(s, server) for s in sockets],
            "lost": sum(s.lost_count for s in sockets),
            "messages": sum(s.sent_count for s in sockets),
            "left_out": sum(s.left_out for s in sockets),
            "protos": "+".join(dict.fromkeys(s.conversation.proto for s in sockets)),
            "flags": sorted({s.conversation.flag for s in sockets}),
        })
    manifest = run.manifest
    model = manifest.get("scenario_model") or {}
    loss_rows = loss_by_direction(run.sockets)
    context = {
        "run": run,
        "m": manifest,
        "title": f"{manifest.get('scenario', '?')} · {run.run_id}",
        "description": " ".join(str(model.get("description") or "").split()),
        "verdict": manifest.get("verdict", "?"),
        "duration": _duration(manifest),
        "topology": topology(manifest, run.applied, run.wire_summary, run.wire_note),
        "capture_points": capture_points(run.wire_summary),
        "rows": [_row(s) for s in run.sockets],
        "has_nodes": has_nodes(s.conversation for s in run.sockets),
        "clients": clients,
        "chart": rtt_chart(run.samples, run.faults),
        "left_out": run.left_out,
        "kept": {"head": HEAD, "tail": TAIL, "notable": NOTABLE},
        "loss_rows": loss_rows,
        "loss_bars": loss_bars(loss_rows),
        "legs": [TO_SERVER, AT_SERVER, TO_CLIENT],
        "expectations": manifest.get("expectations") or [],
        "clients_exit": manifest.get("clients") or {},
        "page_rows": PAGE_ROWS,
        "arrow_colours": ARROW_COLOURS,
        "css": _asset("report.css"),
        "js": _asset("report.js"),
    }
    return environment().get_template("report.html.j2").render(**context)


def _row(sock: Socket) -> dict[str, Any]:
    """One table row: the three views side by side, the counts, where the lost ones went."""
    c = sock.conversation
    lost, places = lost_by_where(sock), lost_by_place(sock)  # every message's, drawn or not
    wire = sock.wire or {}
    return {
        "id": sock.row_id,
        "client": c.client + (f" #{c.session}" if c.session else ""),
        "proto": c.proto,
        "client_view": sock.address or "–",
        "nodes": f"{c.client_node or '–'} → {c.server_node or '–'}",
        "server_view": (c.server_saw or "–") + (f" conn {c.server_conn}" if c.server_conn is not None else ""),
        "wire_view": wire.get("summary") or "",
        "wire_flag": wire.get("flag"),
        "sent": c.sent,
        "echoed": c.echoed,
        "lost": sum(lost.values()),
        "lost_where": ", ".join(f"{n} {where}" for where, n in sorted(lost.items())),
        "lost_places": "; ".join(f"{n} {place}" for place, n in sorted(places.items())),
        "p50": c.rtt_p50_ms,
        "p95": c.rtt_p95_ms,
        "flag": c.flag,
        "problem": c.flag not in ("ok", "nat") or bool(lost) or (wire.get("flag") not in (None, "ok")),
    }


def _server_address(run: RunData) -> str | None:
    model = (run.manifest.get("scenario_model") or {}).get("server") or {}
    for info in (run.manifest.get("containers") or {}).values():
        if info.get("role") == "server" and info.get("ip"):
            return f"{info['ip']}:{model.get('port', 19200)}"
    return None


def _duration(manifest: dict[str, Any]) -> str:
    from lab.expect.query import parse_ts

    try:
        seconds = (parse_ts(manifest["ended"]) - parse_ts(manifest["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return "?"
    return f"{seconds:.1f} s"


@functools.cache
def _asset(name: str) -> str:
    return (Path(__file__).parent / "templates" / name).read_text(encoding="utf-8")


