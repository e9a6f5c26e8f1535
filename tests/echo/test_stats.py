"""One nearest-rank percentile serves the client's summary and the lab's reports."""

from __future__ import annotations

import pytest

from lab import expect
from lab.echo import client
from lab.echo.client_core import ClientPlan, SessionTally
from lab.records.stats import percentile


def test_the_lab_reports_with_the_clients_own_definition():
    assert expect.percentile is percentile


@pytest.mark.parametrize("p,expected", [(0, 1), (5, 1), (50, 10), (94, 19), (95, 19), (95.1, 20), (100, 20)])
def test_nearest_rank_of_twenty_values(p, expected):
    # 95% of 20 is 19 exactly (19.000000000000004 in floats): the 19th value, not the 20th
    assert percentile(range(20, 0, -1), p) == expected


def test_client_summary_p50_p95_are_that_percentile():
    rtts = [float(v) for v in (7, 1, 9, 3, 3, 12, 5, 8, 2, 11, 4, 6, 10, 13, 15, 14, 16, 18, 17, 19)]
    plan = ClientPlan(server="x", port=1, protos=("udp",), messages=(b"m",) * 20, interval=0, timeout=1,
                      retries=0, max_loss=0, sessions=1, connect_timeout=0, reconnect=False, reconnect_for=30)
    tally = SessionTally(0, planned=20, sent=20, echoed=20, rtts=rtts)
    fields = client.summarize(plan, "udp", [tally], interrupted=False)
    assert (fields["rtt_p50_ms"], fields["rtt_p95_ms"]) == (percentile(rtts, 50), percentile(rtts, 95)) == (9, 18)
