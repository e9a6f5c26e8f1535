"""The report as a person sees it: opened in headless Chromium with the network off.

Each test keeps a screenshot in its tmp dir and prints the path (`pytest -s` shows it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.html import write_report
from lab.html.page import PAGE_ROWS, write_diff
from lab.html.rundata import TO_CLIENT, TO_SERVER, load_run
from tests.fixtures.runs.scaled import scale_run

pytestmark = pytest.mark.browser

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"


def report_of(name: str, tmp_path: Path) -> Path:
    return write_report(shutil.copytree(RUNS / name, tmp_path / name))


def test_basic_report_shows_every_row_and_a_ladder_per_client(open_page, tmp_path):
    path = report_of("basic", tmp_path)
    run = load_run(path.parent)
    opened = open_page(path)
    page = opened.page
    opened.screenshot(tmp_path / "basic.png")
    opened.assert_clean(path)
    rows = page.locator("#conv tbody tr")
    assert rows.count() == len(run.sockets) == 6
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    for sock, cell in zip(run.sockets, cells, strict=True):
        assert cell[0] == sock.conversation.client and cell[1] == sock.conversation.proto
        assert cell[2] == sock.address and cell[3].startswith(sock.conversation.server_saw)
        assert cell[-1] == "ok"
    # One collapsible section per client, each with a drawn ladder per socket; the first is open.
    clients = page.locator("details.client")
    assert clients.count() == 3
    for i, name in enumerate(["client1", "client2", "client3"]):
        section = clients.nth(i)
        assert section.locator("summary b").inner_text() == name
        assert section.locator("svg.ladder").count() == 2  # tcp and udp
    first = clients.nth(0).locator("svg.ladder").first
    assert first.is_visible() and first.bounding_box()["height"] > 200
    labels = first.locator("g.step text:not(.t)").all_text_contents()
    assert labels[0] == "connect() → accept()" and labels[1].startswith("#1 24 B") and labels[2].startswith("echo #1")
    assert not clients.nth(1).locator("svg.ladder").first.is_visible()  # collapsed until opened
    # The other parts are drawn, and every expectation is listed with its verdict.
    assert page.locator("svg.topology .box.client").count() == 3
    assert page.locator("svg.chart circle.pt").count() == 24
    assert page.locator("table.expect tbody tr").all_inner_texts()[0].startswith("pass")


def test_a_table_row_opens_its_ladder(open_page, tmp_path):
    path = report_of("basic", tmp_path)
    page = open_page(path).page
    page.locator("#conv a.to-ladder", has_text="client3").first.click()
    ladder = page.locator("details.client[data-client=client3] svg.ladder").first
    assert ladder.is_visible()


def test_a_captured_run_shows_the_wire_view(open_page, tmp_path):
    path = report_of("basic-wire", tmp_path)
    opened = open_page(path)
    page = opened.page
    opened.screenshot(tmp_path / "basic-wire.png")
    opened.assert_clean(path)
    assert page.locator('svg.ladder[data-source="wire"]').count() == 6
    first = page.locator("details.client").first.locator("svg.ladder").first
    assert first.locator("g.step text:not(.t)").all_text_contents()[:3] == ["SYN", "SYN-ACK", "ACK"]
    wire = page.locator("#conv tbody tr td.wire").all_inner_texts()
    assert len(wire) == 6 and all("172.20.0.2:19200" in text for text in wire)
    assert "capture point" in page.locator("svg.topology").text_content()


def test_udp_loss_report_says_where_each_loss_happened(open_page, tmp_path):
    """An impaired run (udp-loss, 10% loss both ways at the server): the "lost where" column names
    both directions, and the ladders show the lost arrows."""
    path = report_of("udp-loss", tmp_path)
    opened = open_page(path)
    page = opened.page
    page.locator("#problems").check()
    opened.screenshot(tmp_path / "udp-loss.png")
    opened.assert_clean(path)
    header = page.locator("#conv thead th").all_inner_texts()
    where = [h.split("\n")[0] for h in header].index("lost where")
    visible = page.locator("#conv tbody tr:visible")
    assert visible.count() == 2  # the two UDP clients lost messages; the TCP ones did not
    column = [visible.nth(i).locator("td").nth(where).inner_text() for i in range(visible.count())]
    text = " ".join(column)
    assert TO_SERVER in text and TO_CLIENT in text
    ladder = page.locator("details.client[data-client=client1] svg.ladder")
    assert ladder.locator("g.step.lost").count() == 9
    assert "9 lost" in page.locator("details.client[data-client=client1] summary").inner_text()
    assert page.locator("svg.chart path.pt.lost").count() == 17
    assert "17 of 80 lost" in page.locator("svg.loss").text_content()


def test_200_clients_are_paged_and_filterable(open_page, tmp_path):
    run_dir = scale_run(RUNS / "basic", tmp_path / "big", 200)
    path = write_report(run_dir)
    opened = open_page(path)
    page = opened.page
    opened.screenshot(tmp_path / "200-clients.png")
    opened.assert_clean(path)
    assert page.locator("#conv tbody tr").count() == 400
    assert page.locator("#conv tbody tr:visible").count() == PAGE_ROWS
    assert page.locator("details.client:visible").count() == PAGE_ROWS
    assert page.locator("svg.ladder").count() == 400  # every ladder is in the file, one page shown
    pager = page.locator('.pager[data-for="conv"]')
    assert "page 1 of 8" in pager.inner_text()
    pager.get_by_role("button", name="next ›").click()
    assert "page 2 of 8" in pager.inner_text()
    assert page.locator("#conv tbody tr:visible td:first-child").first.inner_text() == "client26"
    page.locator("#filter").fill("client199 ")
    assert page.locator("#conv tbody tr:visible").count() == 2
    assert page.locator("details.client:visible summary b").all_inner_texts() == ["client199"]


def test_diff_page_opens_clean(open_page, tmp_path):
    a = shutil.copytree(RUNS / "basic", tmp_path / "a")
    b = shutil.copytree(RUNS / "udp-loss", tmp_path / "b")
    _, path = write_diff(a, b)
    opened = open_page(path)
    opened.screenshot(tmp_path / "diff.png")
    opened.assert_clean(path)
    row = opened.page.locator("table.diff tr", has_text="udp lost server→client")
    assert row.locator("td").all_inner_texts()[1:4] == ["0", "11", "+11"]
    assert "worse" in row.get_attribute("class")
