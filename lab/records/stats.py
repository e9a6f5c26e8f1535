"""The one percentile definition of the lab: the client's summary and the orchestrator's
reports (lab.expect) both use it, so their p50/p95 agree to the microsecond."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100), nearest rank: the smallest value with at least p% of the
    values at or below it; always one of the values (p=0 gives the smallest).

    Raises ValueError on no values or p outside 0..100: a percentile of nothing is a bug, not zero.
    """
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:  # also refuses nan
        raise ValueError(f"percentile must be within 0..100, got {p}")
    # rounded first so that float noise (95 * 20 / 100 = 19.000000000000004) does not add a rank
    rank = math.ceil(round(p * len(data) / 100.0, 9))
    return data[min(max(rank, 1), len(data)) - 1]
