"""A real impaired run's report, opened in headless Chromium with the network off (~30 s)."""

from __future__ import annotations

import json

import pytest

from lab.html.rundata import TO_CLIENT, TO_SERVER
from tests.docker.conftest import only_run_dir, run_lab

pytestmark = pytest.mark.browser


def test_udp_loss_report_names_both_directions_of_loss(engine, node_image, tmp_path, open_page):
    """udp-loss drops 10% both ways at the server: among 80 UDP round trips some requests and some
    echoes are lost (no loss at all in one direction has odds of about 1 in 5000)."""
    result = run_lab("run", "udp-loss", "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    report = run_dir / "report.html"
    assert f"report: {report}" in result.stdout
    opened = open_page(report)
    page = opened.page
    page.locator("#problems").check()
    opened.screenshot(tmp_path / "udp-loss-live.png")
    opened.assert_clean(report)
    header = [h.split("\n")[0] for h in page.locator("#conv thead th").all_inner_texts()]
    rows = page.locator("#conv tbody tr:visible")
    column = " ".join(rows.nth(i).locator("td").nth(header.index("lost where")).inner_text() for i in range(rows.count()))
    assert TO_SERVER in column and TO_CLIENT in column
    assert page.locator("details.client").count() == 4
    for name in ("client1", "client2", "client3", "client4"):
        assert page.locator(f"details.client[data-client={name}] svg.ladder").count() >= 1
    wire = run_dir / "wire.json"
    if wire.exists() and json.loads(wire.read_text())["capture"]["status"] == "ok":
        # With the capture the ladders are drawn from the packets and the table has the wire view.
        assert page.locator('svg.ladder[data-source="wire"]').count() == 4
        # (the loss may drop a SYN or SYN-ACK, so each is there at least once, perhaps again)
        labels = page.locator("details.client[data-client=client3] g.step.handshake text:not(.t)").all_text_contents()
        assert {"SYN", "SYN-ACK"} <= set(labels)
        assert all(text.strip() not in ("", "–") for text in page.locator("#conv tbody tr td.wire").all_inner_texts())
