"""Render runs for people: the per-client table, expectation verdicts, the run list, a timeline."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.expect import Record, who
from lab.logs import Conversation, has_nodes
from lab.verdict import Verdict

FLAG_STYLE = {"ok": "green", "nat": "cyan", "client-only": "yellow", "server-only": "yellow", "address-mismatch": "red"}
VERDICT_STYLE = {Verdict.PASSED: "green", Verdict.FAILED: "red", Verdict.TIMEOUT: "red", Verdict.INTERRUPTED: "yellow",
                 Verdict.ERROR: "red", Verdict.RUNNING: "cyan"}


def conversation_table(rows: list[Conversation], title: str = "Conversations") -> Table:
    """One row per client socket. Where the run spans nodes (a swarm), a `nodes` column says which
    node each end ran on; a one-host run's table has no such column."""
    nodes = has_nodes(rows)
    table = Table(title=title, title_justify="left")
    # A run captured on both sides of a router: the wire's address on each side, between the
    # client's own view and the server's.
    two_sides = any(c.wire.get("wire_client_near") for c in rows)
    for name, justify in [
        ("client", "left"), ("proto", "left"), ("client's own view\n(getsockname)", "left"),
        *([("wire: client's network\n→ server's network", "left")] if two_sides else []),
        ("server saw\n(accept/recvfrom)", "left"), *([("nodes\nclient → server", "left")] if nodes else []),
        ("sent", "right"), ("echoed", "right"), ("bytes", "right"),
        ("rtt p50\nms", "right"), ("rtt p95\nms", "right"), ("flag", "left"),
    ]:
        table.add_column(name, justify=justify)
    for c in rows:
        wire = [escape(_sides(c.wire))] if two_sides else []
        session = f"#{c.session}" if c.session else ""
        echoed_style = "green" if c.sent and c.echoed == c.sent else ("red" if c.sent else "")
        table.add_row(
            f"{c.client}{session}",
            c.proto,
            # escaped: an IPv6 `[addr]:port` is not console markup
            escape(c.own_address or "-"),
            *wire,
            escape(c.server_saw or "-"),
            *([node_pair(c)] if nodes else []),
            str(c.sent),
            f"[{echoed_style}]{c.echoed}[/]" if echoed_style else str(c.echoed),
            str(c.bytes),
            _num(c.rtt_p50_ms),
            _num(c.rtt_p95_ms),
            f"[{FLAG_STYLE.get(c.flag, 'yellow')}]{c.flag}[/]",  # a flag without a colour of its own: yellow
        )
    return table


def node_pair(c: Conversation) -> str:
    """`node2 → node1`: the client's node, then the server's (`-` where a side is unknown)."""
    return f"{escape(c.client_node or '-')} → {escape(c.server_node or '-')}"


def _sides(wire: dict[str, Any]) -> str:
    """A row's address on the wire on each side of its router: `near → server side`."""
    near, far = wire.get("wire_client_near"), wire.get("wire_client")
    if near and far:
        return f"{near} → {far}"
    return near or far or "-"


def expectation_table(results: Iterable[Any]) -> Table:
    table = Table(title="Expectations", title_justify="left")
    for name in ("", "expectation", "measured", "expected", "detail"):
        table.add_column(name)
    for r in results:
        mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(mark, r.name, str(r.measured), str(r.expected), r.detail or "")
    return table


def diagnosis_lines(diagnoses: Iterable[Any]) -> list[str]:
    """What the lab found wrong with a learner's programs: one line each, with the fix."""
    return [f"[bold]why[/] ({d.kind}) {d.text}" for d in diagnoses]


def runs_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(title_justify="left")
    for name in ("run", "scenario", "started (UTC)", "verdict", "clients"):
        table.add_column(name)
    for run in runs:
        verdict = run.get("verdict", "?")
        clients = run.get("clients") or {}
        ok = sum(1 for code in clients.values() if code == 0)
        table.add_row(
            run.get("run_id", "?"),
            run.get("scenario", "?"),
            (run.get("started") or "")[:19].replace("T", " "),
            f"[{VERDICT_STYLE.get(verdict, '')}]{verdict}[/]",
            f"{ok}/{len(clients)} ok" if clients else "-",
        )
    return table


def cluster_table(name: str, nodes: list[Any]) -> Table:
    """`lab cluster status`: one row per node (`lab.engine.swarm.cluster.Node`)."""
    table = Table(title=f"cluster {name}")
    for column in ("node", "container", "state", "address", "swarm", "role", "images"):
        table.add_column(column)
    for n in nodes:
        table.add_row(n.hostname, n.container, n.status, n.ip or "-", n.swarm, n.role or "-",
                      "-" if n.images is None else str(n.images))
    return table


def timeline_lines(events: Iterable[Record]) -> Iterator[str]:
    """One readable line per record: time, who, proto, event and the fields that matter; a line
    as each record comes (`lab logs` passes a stream: a run's records may be gigabytes)."""
    for r in events:
        ts = (r.get("ts") or "")[11:26]
        parts = [ts, f"{who(r):<16}", f"{(r.get('proto') or '-'):<4}", f"{r.get('event', '?'):<10}"]
        if r.get("event") == "fault":
            parts.append(f"{r.get('action')} {r.get('target')} at t={r.get('t')}s" + (" (undo)" if r.get("undo") else ""))
            if r.get("ok") is False:
                parts.append(f"FAILED: {r.get('detail')}")
        else:
            if r.get("local"):
                parts.append(f"local={r['local']}")
            if r.get("local_route"):
                parts.append(f"route={r['local_route']}")
            if r.get("peer"):
                parts.append(f"peer={r['peer']}")
            for key in ("session", "conn", "seq", "bytes", "rtt_ms", "reads", "intact", "reason", "attempt"):
                if r.get(key) is not None and not (key == "session" and r[key] == 0):
                    parts.append(f"{key}={r[key]}")
            if r.get("event") == "summary":
                for key in ("family", "sent", "echoed", "lost", "mismatched", "rtt_p50_ms", "rtt_p95_ms", "connections",
                            "datagrams", "ok"):
                    if r.get(key) is not None:
                        parts.append(f"{key}={r[key]}")
            if r.get("text") is not None and r.get("event") in ("sent", "received", "output", "error"):
                text = str(r["text"])
                text = text if len(text) <= 60 else text[:57] + "..."
                parts.append(("b64:" if r.get("b64") else "") + repr(text))
            if r.get("detail"):
                parts.append(str(r["detail"]))
        yield "  ".join(parts)


def comparison_tables(comparison: Any) -> list[Table]:
    """`lab diff` in the terminal: settings that differ, metrics with deltas, expectation changes,
    client sockets whose flag or loss changed."""
    from lab.html.page import number, signed

    a, b = comparison.a, comparison.b
    tables = []
    if comparison.settings:
        table = Table(title="Set differently", title_justify="left")
        for name in ("setting", f"A {a.run_id}", f"B {b.run_id}"):
            table.add_column(name, overflow="fold")
        for path, va, vb in comparison.settings:
            table.add_row(path, str(va), str(vb))
        tables.append(table)
    table = Table(title=f"Measured: A {a.run_id} ({a.manifest.get('verdict')}) vs B {b.run_id} "
                        f"({b.manifest.get('verdict')})", title_justify="left")
    for name, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B - A", "right"), ("B / A", "right")):
        table.add_column(name, justify=justify)
    trend_style = {"better": "green", "worse": "red", "same": ""}
    for m in comparison.metrics:
        style = trend_style[m.trend]
        delta = signed(m.delta)
        table.add_row(m.name + (f" ({m.unit})" if m.unit else ""), number(m.a), number(m.b),
                      f"[{style}]{delta}[/]" if style else delta, "-" if m.ratio is None else f"x{m.ratio:.2f}")
    tables.append(table)
    table = Table(title="Expectations", title_justify="left")
    for name in ("expectation", "A", "B", "change"):
        table.add_column(name)

    def verdict(passed: bool | None, measured: str) -> str:
        return "-" if passed is None else ("[green]pass[/] " if passed else "[red]FAIL[/] ") + measured

    for e in comparison.expectations:
        change = e.change
        table.add_row(e.name, verdict(e.a, e.measured_a), verdict(e.b, e.measured_b),
                      "" if change == "same" else f"[{'red' if 'FAIL' in change else 'yellow'}]{change}[/]")
    tables.append(table)
    table = Table(title="Client sockets whose flag or loss changed", title_justify="left")
    for name in ("client", "proto", "socket", "A", "B"):
        table.add_column(name)
    for s in comparison.sockets:
        table.add_row(s.client, s.proto, str(s.index), s.a, s.b)
    if not comparison.sockets:
        table.add_row("(none)", "", "", "", "")
    tables.append(table)
    return tables


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def console(stderr: bool = False) -> Console:
    """A console that keeps tables whole in logs and CI output (no 80-column squeeze)."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)
