"""Where a run spans nodes (a swarm), each row names the node of each end: in the records, the
terminal table, clients.csv and the HTML report (its topology groups hosts by node). A one-host
run's table, csv and report stay as they were: no node anywhere.

The multi-node run is the recorded `basic` run with the nodes a swarm run records added."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from rich.console import Console

from lab.collect import Normaliser, normalise
from lab.html.page import render_report
from lab.html.rundata import build_run, load_run
from lab.logs import CONVERSATION_COLUMNS, WIRE_COLUMNS, Origin, conversations_csv, join_views, read_events
from lab.report import conversation_table

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
NODES = {"server": "node1", "client1": "node2", "client2": "node3", "client3": "node2"}


def on_nodes(tmp_path: Path) -> Path:
    """The `basic` run as if each service had run on the node in NODES."""
    run = shutil.copytree(RUNS / "basic", tmp_path / "swarm-run")
    events = [{**r, "node": NODES[r["service"]]} for r in read_events(run / "events.jsonl")]
    (run / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in events), encoding="utf-8")
    manifest = json.loads((run / "manifest.json").read_text())
    for info in manifest["containers"].values():
        info["node"] = NODES[info["service"]]
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run


def table_text(rows) -> str:
    console = Console(width=220, record=True, color_system=None)
    console.print(conversation_table(rows))
    return console.export_text()


def test_each_row_names_the_node_that_saw_each_end(tmp_path):
    rows = join_views(read_events(on_nodes(tmp_path) / "events.jsonl"))
    assert rows and all(r.flag == "ok" for r in rows)
    assert {(r.client, r.client_node, r.server_node) for r in rows} == {
        ("client1", "node2", "node1"), ("client2", "node3", "node1"), ("client3", "node2", "node1")}


def test_the_csv_gains_a_node_column_after_each_ends_address_only_when_the_run_has_nodes(tmp_path):
    plain = conversations_csv(join_views(read_events(RUNS / "basic" / "events.jsonl")))
    assert plain.splitlines()[0].split(",") == CONVERSATION_COLUMNS + WIRE_COLUMNS
    assert "node" not in plain

    placed = list(csv.DictReader(io.StringIO(conversations_csv(join_views(read_events(on_nodes(tmp_path) / "events.jsonl"))))))
    columns = list(placed[0])
    assert columns[columns.index("client_ip") + 1] == "client_node"
    assert columns[columns.index("server_saw") + 1] == "server_node"
    assert [c for c in columns if c not in ("client_node", "server_node")] == CONVERSATION_COLUMNS + WIRE_COLUMNS
    assert {(r["client"], r["client_node"], r["server_node"]) for r in placed} == {
        ("client1", "node2", "node1"), ("client2", "node3", "node1"), ("client3", "node2", "node1")}


def test_the_terminal_table_shows_the_nodes_only_when_the_run_has_them(tmp_path):
    text = table_text(join_views(read_events(on_nodes(tmp_path) / "events.jsonl")))
    assert "client → server" in text
    client2 = [line for line in text.splitlines() if "client2" in line]
    assert client2 and all("node3 → node1" in line for line in client2)
    plain = table_text(join_views(read_events(RUNS / "basic" / "events.jsonl")))
    assert "node" not in plain and "→" not in plain


def test_the_report_groups_hosts_by_node_and_its_table_names_them(tmp_path):
    page = render_report(build_run(tmp_path, *_parts(on_nodes(tmp_path))))
    frames = [line.strip() for line in page.splitlines() if 'class="node-name"' in line]
    # The server's node above the network; below it the clients ordered by node, one frame per node.
    assert [f.split(">")[1].split("<")[0] for f in frames] == ["node1", "node2", "node3"]
    assert "<th>nodes<br><small>client → server</small></th>" in page
    assert "<td>node3 → node1</td>" in page
    plain = render_report(load_run(RUNS / "basic"))
    assert 'class="node-name"' not in plain and "client → server" not in plain


def test_client_boxes_are_ordered_by_node_in_the_drawing(tmp_path):
    from lab.html.topology import topology

    run = on_nodes(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    drawn = [b.title for b in topology(manifest, [], None, "").boxes if b.kind in ("client", "node")]
    assert drawn == ["node1", "node2", "node3", "client1", "client3", "client2"]


def test_collected_records_carry_their_containers_node_and_only_where_there_is_one():
    line = json.dumps({"v": 2, "n": 1, "ts": "2026-11-25T08:00:01.000000Z", "host": "client1", "role": "client",
                       "proto": "tcp", "event": "sent"}).encode() + b"\n"
    for node in ("node2", None):
        origin = Origin(container="c1", service="client1", role="client", ip="10.0.0.5", node=node)
        out = io.BytesIO()
        normalise(origin, [line], [], out)
        fast = json.loads(out.getvalue().split(b"\t", 1)[1])
        torn = json.loads(Normaliser(origin).record_line(b'{"v": 2, "half')[:-1].split(b"\t", 1)[1])
        for record in (fast, torn):
            assert record.get("node") == node and ("node" in record) == (node is not None)


def _parts(run: Path):
    return json.loads((run / "manifest.json").read_text()), read_events(run / "events.jsonl")
