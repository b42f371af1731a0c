"""Billing on estimated reads (估抄): a period without a valid read is billed on the last read +
the intervals since, within the coverage rule, and the next actual read trues it up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end

from dianfei.billing.documents import bill_document
from dianfei.billing.render import render_html
from dianfei.billing.service import open_exceptions, rebill, run_bill_run
from dianfei.billing.view import bill_view
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.metering import ingest
from dianfei.metering.vee import service as vee

DEC, JAN, FEB = Period(2025, 12), Period(2026, 1), Period(2026, 2)
OPEN, JAN_END, FEB_END = month_end(DEC), month_end(JAN), month_end(FEB)
SLOTS = 31 * 96  # January in 15-minute intervals


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def store_january(db: Database, meter_id: str, wh: int, *, skip_every: int | None = None) -> None:
    """January's intervals of ``meter_id``, ``wh`` each; every ``skip_every``-th slot missing."""
    rows = [(meter_id, OPEN + timedelta(minutes=15 * k), f"{wh // 1000}.{wh % 1000:03d}")
            for k in range(SLOTS) if skip_every is None or k % skip_every != skip_every // 2]
    frame = pl.DataFrame(rows, schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                       "kwh": pl.String}, orient="row")
    ingest.ingest_intervals(db, frame, interval_minutes=15, origin="test",
                            clock=FixedClock(datetime(2026, 2, 1, 3, 0, tzinfo=UTC)))


def bill_rows(db: Database) -> list[tuple[object, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT bill_id, kwh, estimated, read_from, read_to FROM bills ORDER BY bill_id"))]


def test_missing_read_billed_on_intervals_and_trued_up_by_the_next_actual_read(db: Database) -> None:
    # given C1 read at 1000.00 on 1 January, no read on 1 February, January's intervals 50 Wh each
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 1000_00).store(db)
    store_january(db, "MC1", 50)
    # when January is billed
    res = run_bill_run(db, JAN, issue_clock(JAN))
    # then on an estimated read: 1000.00 + 2,976 × 0.050 kWh = 1148.80
    assert (res.billed, res.exceptions, res.estimated_meters) == (1, 0, 1)
    assert bill_rows(db) == [("C1-202601-1", 148_80, True, 1000_00, 1148_80)]
    with db.engine.connect() as conn:
        est = conn.execute(text("SELECT register, value, source FROM register_reads "
                                "WHERE meter_id = 'MC1' AND source = 'estimated'")).all()
        basis = conn.execute(text("SELECT from_value, interval_wh, intervals, estimated_intervals "
                                  "FROM read_estimates WHERE meter_id = 'MC1'")).all()
    assert [tuple(r) for r in est] == [("total", 1148_80, "estimated")]
    assert [tuple(r) for r in basis] == [(1000_00, 148_800, SLOTS, 0)]
    # and the bill document says so, with how the read was derived
    doc = bill_document(db.engine, "C1", JAN)
    assert doc["meters"][0]["estimates"] == {"read_to": (
        "total 1148.80 = actual read 1000.00 at 2026-01-01 00:00 + 148.800 kWh of 2976 intervals "
        "(0 VEE-estimated)")}
    html = render_html(doc, "zh-CN")
    assert "估计读数 / estimated read — 电能表 MC1：total 1148.80 = actual read 1000.00" in html
    # and February's actual read 1300.00 trues it up: 1300.00 − 1148.80, 300.00 kWh over both
    Reads().add("C1", FEB_END, 1300_00).store(db)
    run_bill_run(db, FEB, issue_clock(FEB))
    got = bill_rows(db)
    assert got[1][:2] == ("C1-202602-1", 151_20) and got[1][3:] == (1148_80, 1300_00)
    assert got[0][1] + got[1][1] == 1300_00 - 1000_00  # type: ignore[operator]
    feb = bill_document(db.engine, "C1", FEB)
    assert feb["meters"][0]["estimates"] == {"read_from": doc["meters"][0]["estimates"]["read_to"]}
    assert "Estimated read trued up — meter MC1" in render_html(feb, "en")
    # the reads table marks the estimate on each bill: the closing read in January, the
    # opening read (not February's actual read) in February
    jan_reads = next(s for s in bill_view(doc, "en").sections if s.key == "reads")
    feb_reads = next(s for s in bill_view(feb, "en").sections if s.key == "reads")
    assert (jan_reads.rows[0][1:3], jan_reads.marked) == (["1000.00", "1148.80 (est.)"], [(0, 2)])
    assert (feb_reads.rows[0][1:3], feb_reads.marked) == (["1148.80 (est.)", "1300.00"], [(0, 1)])


def test_read_going_backwards_is_replaced_and_kept(db: Database) -> None:
    # an invalid read at the period's end stays as received; the estimate sits a second earlier
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 1000_00).add("C1", JAN_END, 900_00).store(db)
    store_january(db, "MC1", 10)
    run_bill_run(db, JAN, issue_clock(JAN))
    assert bill_rows(db) == [("C1-202601-1", 29_76, True, 1000_00, 1029_76)]
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT read_at, value, source FROM register_reads "
                                 "WHERE meter_id = 'MC1' ORDER BY read_at")).all()
    assert [(r[1], r[2]) for r in rows] == [(1000_00, "ami"), (1029_76, "estimated"), (900_00, "ami")]
    # billed again (a correction): the same estimate, found and not stored twice
    rebill(db, issue_clock(JAN), "C1-202601-1", "check")
    assert bill_rows(db)[1] == ("C1-202601-2", 29_76, True, 1000_00, 1029_76)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM read_estimates")).scalar() == 1
    Reads().add("C1", FEB_END, 1100_00).store(db)
    run_bill_run(db, FEB, issue_clock(FEB))
    assert bill_rows(db)[2][:2] == ("C1-202602-1", 1100_00 - 1029_76)


def test_too_many_vee_estimates_keeps_the_account_on_the_exceptions(db: Database) -> None:
    # every 8th interval missing, filled by VEE interpolation: 12.5% > the 10% the rule allows
    load_people(db, [Person("C1"), Person("C2")])
    Reads().add("C1", OPEN, 1000_00).add("C2", OPEN, 1000_00).store(db)
    store_january(db, "MC1", 50, skip_every=8)
    store_january(db, "MC2", 50, skip_every=20)  # 5%: within the rule
    vee.run_vee(db, FixedClock(datetime(2026, 2, 1, 4, 0, tzinfo=UTC)))
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.billed, res.exceptions) == (1, 1)
    assert bill_rows(db) == [("C2-202601-1", 148_80, True, 1000_00, 1148_80)]
    ex = open_exceptions(db, JAN).select("account_id", "reason", "detail").rows()
    assert [(a, r) for a, r, _ in ex] == [(ex[0][0], "estimate_too_estimated")]
    assert "12.5% of the intervals" in ex[0][2]
    assert "[vee] bill_estimate_max_share = 10%" in ex[0][2]


def test_gap_in_the_intervals_names_the_rule_and_no_intervals_is_as_before(db: Database) -> None:
    load_people(db, [Person("C1"), Person("C2")])
    Reads().add("C1", OPEN, 1000_00).add("C2", OPEN, 1000_00).store(db)
    store_january(db, "MC1", 50, skip_every=100)  # gaps VEE has not filled
    run_bill_run(db, JAN, issue_clock(JAN))
    ex = {r[0][-2:]: (r[1], r[2]) for r in
          open_exceptions(db, JAN).select("account_id", "reason", "detail").rows()}
    assert ex["C1"][0] == "estimate_intervals_missing"
    assert "intervals cover 44190 of the 44640 minutes" in ex["C1"][1]
    assert ex["C2"][0] == "no_read"  # no interval at all: the exception as it always was
    assert "no estimated read" not in ex["C2"][1]


def test_bill_run_command_with_and_without_estimates(db: Database, db_env: dict[str, str]) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 1000_00).store(db)
    store_january(db, "MC1", 50)
    env = {**os.environ, **db_env, "DIANFEI_NOW": "2026-02-03T09:00:00+08:00"}

    def bill_run(*extra: str) -> dict[str, object]:
        proc = subprocess.run([sys.executable, "-m", "dianfei", "bill", "run", "--period", "2026-01",
                               *extra, "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    first = bill_run("--no-estimates")
    assert (first["billed"], first["exceptions"], first["estimated_meters"]) == (0, 1, 0)
    second = bill_run()
    assert (second["billed"], second["exceptions"], second["estimated_meters"]) == (1, 0, 1)
    assert bill_rows(db) == [("C1-202601-1", 148_80, True, 1000_00, 1148_80)]
