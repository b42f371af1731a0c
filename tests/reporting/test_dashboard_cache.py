"""The dashboard's cache: one computation per (period, day, filter, ledger mark), however many
views arrive while it runs; a ledger change computes again."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest

from dianfei.core.clock import Period
from dianfei.db.engine import Database
from dianfei.reporting import dashboard

JAN = Period(2026, 1)


def test_views_during_a_computation_wait_for_it(db: Database,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dashboard.forget()
    calls: list[Any] = []
    entered, release = threading.Event(), threading.Event()

    def slow(_db: Any, period: Period, as_of: date, f: dashboard.Filters) -> dict[str, Any]:
        calls.append((period, f))
        entered.set()
        release.wait(timeout=30)
        return {"period": str(period), "as_of": as_of.isoformat(), "latest": {}, "trend": []}

    monkeypatch.setattr(dashboard, "compute", slow)
    got: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: got.append(
        dashboard.dashboard(db, JAN, date(2026, 3, 1), dashboard.Filters())))
    first.start()
    assert entered.wait(timeout=30)
    second = threading.Thread(target=lambda: got.append(
        dashboard.dashboard(db, JAN, date(2026, 3, 1), dashboard.Filters())))
    second.start()
    time.sleep(0.2)  # let the second view reach the gate (either way it must not compute)
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert len(calls) == 1
    assert sorted(g["cached"] for g in got) == [False, True]
    # another filter is another computation
    dashboard.dashboard(db, JAN, date(2026, 3, 1), dashboard.Filters(region="R1"))
    assert len(calls) == 2
    dashboard.forget()
