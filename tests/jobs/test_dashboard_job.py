"""The dashboard_refresh job: a bill run that ends queues it at once (keyed by the run, so a retry
does not queue it twice); it stores the latest period's figures, the same as `dianfei kpi`."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from dianfei.cli import jobs as job_kinds
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.jobs.calendar import load_calendar
from dianfei.jobs.service import work
from dianfei.reporting import dashboard
from dianfei.reporting.kpi import period_kpis
from tests.factories import Person, Reads, load_people, month_end

pytestmark = pytest.mark.db
DEC, JAN = Period(2025, 12), Period(2026, 1)
DAY = date(2026, 2, 3)

SCHEDULE = """
[[job]]
name = "bill-run"
kind = "bill_run"
every = "month"
day_of_month = 3
at = "06:00"

[[job]]
name = "dashboard"
kind = "dashboard_refresh"
every = "day"
at = "09:30"
"""


def test_a_bill_run_queues_the_dashboard_refresh_which_stores_the_new_period(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_people(db, [Person("C00"), Person("C01"),
                     Person("C02", customer_class="commercial", tariff_id="cn-zj-commercial")])
    reads = Reads()
    for c in ("C00", "C01", "C02"):
        reads.add(c, month_end(DEC), 1000_00).add(c, month_end(JAN), 1150_00)
    reads.store(db)
    (tmp_path / "s.toml").write_text(SCHEDULE)
    entries = load_calendar(tmp_path / "s.toml", job_kinds.KINDS)
    monkeypatch.setattr(job_kinds, "calendar", lambda _db: entries)
    dashboard.forget()

    clock = FixedClock(datetime(2026, 2, 3, 6, 0, 30, tzinfo=BUSINESS_TZ))
    report = work(db, entries, job_kinds.KINDS, clock=clock)
    ran = [(r["job"], r["status"]) for r in report.ran]
    # yesterday's occurrence (caught up) found nothing billed; then the bill run and its follow-up
    assert ran == [("dashboard", "done"), ("bill-run", "done"), ("dashboard", "done")], ran
    assert report.ran[0]["result"] == {"period": None, "stored": 0, "note": "nothing billed yet"}
    bill_run, follow_up = report.ran[1], report.ran[2]
    assert bill_run["result"]["follow_ups_queued"] == {"dashboard_refresh": 1, "forecast_store": 0,
                                                         "segment_facts": 0}
    stored = follow_up["result"]
    assert stored["period"] == "2026-01" and stored["as_of"] == "2026-02-03"
    with db.engine.connect() as conn:
        by = conn.execute(text("SELECT triggered_by FROM job_runs WHERE run_id = :r"),
                          {"r": follow_up["run_id"]}).scalar()
        rows = dict(conn.execute(text(
            "SELECT filter_key, payload FROM dashboard_figures WHERE period = '2026-01'")).all())
    assert by == f"job:{bill_run['run_id']}"
    # the shop's reads do not fit its tariff: on the exceptions list, not billed — its class has
    # no bills of the period and is left out (a view of it says so, computed on view)
    assert stored["stored"] == 4 and stored["without_bills"] == 1
    assert sorted(rows) == ["", "collector=K1", "customer_class=residential", "region=R1"]
    everyone = json.loads(rows[""])
    kpis = period_kpis(db, JAN, DAY, trend_periods=12)
    assert everyone["latest"] == {k: v for k, v in kpis.items() if k != "trend"}
    assert [t["collection_rate"] for t in everyone["trend"]][-1] == kpis["collection_rate"]
    # each filter's figures are its customers' alone
    homes = json.loads(rows["customer_class=residential"])
    assert homes == dashboard.compute(db, JAN, DAY,
                                      dashboard.Filters(customer_class="residential"))
    # the page reads them
    assert dashboard.dashboard(db, JAN, DAY, dashboard.Filters())["stored"]


def test_a_bill_run_queues_the_segment_facts_which_the_collections_morning_reads(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dianfei.risk.service import segment_consumption_facts

    load_people(db, [Person("C00"), Person("C01")])
    reads = Reads()
    for c in ("C00", "C01"):
        reads.add(c, month_end(DEC), 1000_00).add(c, month_end(JAN), 1150_00)
    reads.store(db)
    (tmp_path / "s.toml").write_text(SCHEDULE.replace('name = "dashboard"\nkind = "dashboard_refresh"',
                                                      'name = "segment-facts"\nkind = "segment_facts"'))
    entries = load_calendar(tmp_path / "s.toml", job_kinds.KINDS)
    monkeypatch.setattr(job_kinds, "calendar", lambda _db: entries)
    clock = FixedClock(datetime(2026, 2, 3, 6, 0, 30, tzinfo=BUSINESS_TZ))
    report = work(db, entries, job_kinds.KINDS, clock=clock)
    ran = [(r["job"], r["status"]) for r in report.ran]
    assert ran == [("segment-facts", "done"), ("bill-run", "done"), ("segment-facts", "done")], ran
    assert report.ran[1]["result"]["follow_ups_queued"]["segment_facts"] == 1
    # before the bill run nothing was billed; after it, both accounts have their facts
    assert report.ran[0]["result"]["accounts"] == 0 and report.ran[2]["result"]["accounts"] == 2
    # one file before the bill run (nothing billed), one after it
    kept = db.settings.data_dir / "risk" / "segment_facts"
    made = {f.name: f.stat().st_mtime_ns for f in kept.glob("*.parquet")}
    assert len(made) == 2
    # the morning reads the job's file, computing nothing again
    assert segment_consumption_facts(db, DAY).height == 2
    assert {f.name: f.stat().st_mtime_ns for f in kept.glob("*.parquet")} == made
