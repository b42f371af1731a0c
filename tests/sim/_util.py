from __future__ import annotations

from dianfei.core.clock import Period

START = Period(2025, 1)


def periods(n: int, start: Period = START) -> list[Period]:
    """``n`` consecutive periods from ``start``."""
    out = [start]
    while len(out) < n:
        out.append(out[-1].next())
    return out
