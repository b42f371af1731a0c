"""Risk intelligence on a real database (SQLite and PostgreSQL): bills issued by the bill run
feed the theft worklist and the next-bill forecast; inspections are recorded and learnt from;
advance notices go through notify; the CLI prints the documented JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.notify import service as notify
from dianfei.risk import service as risk
from tests.factories import Person, Reads, load_people, month_end

FIRST = Period(2025, 1)
MONTHS = 18  # 2025-01 … 2026-06
SEASON = [1.2, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
PEOPLE = [f"C{k:02d}" for k in range(1, 25)]
THIEF = "C07"  # records 40 % from 2025-11 on
NEVER_PAYS, ALWAYS_LATE, ONCE_LATE, LOW_INCOME = "C05", "C09", "C11", "C13"


def usage(customer: str, i: int) -> int:
    """kWh × 100 of customer in month i (0 = 2025-01): a summer peak, small differences."""
    k = int(customer[1:])
    kwh = (120 + 5 * k) * SEASON[i % 12] * (1 + 0.02 * ((i * k) % 3))
    if customer == THIEF and i >= 10:
        kwh *= 0.4
    return int(kwh * 100)


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


@pytest.fixture
def billed(db: Database) -> Database:
    load_people(db, [Person(c, low_income=c == LOW_INCOME) for c in PEOPLE])
    reads = Reads()
    for c in PEOPLE:
        value = 1000_00
        reads.add(c, month_end(FIRST.prev()), value)
        p = FIRST
        for i in range(MONTHS):
            value += usage(c, i)
            reads.add(c, month_end(p), value)
            p = p.next()
    reads.store(db)
    p = FIRST
    for i in range(MONTHS):
        run_bill_run(db, p, issue_clock(p))
        pay(db, p, late={ALWAYS_LATE} | ({ONCE_LATE} if i == MONTHS - 2 else set()))
        p = p.next()
    return db


def pay(db: Database, period: Period, late: set[str]) -> None:
    """Everyone but NEVER_PAYS pays the period's bill: 5 days before the due date, or 10 days
    after it when in ``late`` — through the payments service, in time order."""
    from sqlalchemy import text

    from dianfei.payments.service import post_payments_frame

    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT account_id, amount, due_on FROM bills WHERE period = :p"),
                            {"p": str(period)}).all()
    due = date.fromisoformat(str(rows[0][2])[:10])
    for days, who in ((-5, [r for r in rows if r[0] not in late]), (10, [r for r in rows if r[0] in late])):
        who = [r for r in who if r[0] != NEVER_PAYS and r[1] > 0]
        at = datetime.combine(due + timedelta(days=days), time(10), tzinfo=BUSINESS_TZ)
        frame = pl.DataFrame({"channel": ["counter"] * len(who),
                              "transaction_id": [f"{r[0]}-{period}" for r in who],
                              "account_id": [r[0] for r in who],
                              "amount": [int(r[1]) for r in who],
                              "paid_at": [at.astimezone(UTC)] * len(who)},
                             schema_overrides={"amount": pl.Int64,
                                               "paid_at": pl.Datetime("us", "UTC")})
        with db.engine.begin() as conn:
            post_payments_frame(conn, frame, clock=FixedClock(at), source="test")


def test_history_comes_from_issued_bills(billed: Database) -> None:
    h = risk.consumption_history(billed.engine, FIRST)
    assert h.height == len(PEOPLE) * MONTHS
    one = h.filter((pl.col("account_id") == "C03") & (pl.col("period") == "2025-07"))
    assert one["kwh"].item() == usage("C03", 6)


def test_theft_worklist_puts_the_thief_first_and_learns_from_inspections(
        billed: Database) -> None:
    as_of = Period(2026, 1)
    worklist = risk.theft_scan(billed, as_of)
    top = worklist.row(0, named=True)
    assert (top["rank"], top["account_id"]) == (1, THIEF)
    assert top["reasons"].startswith("sustained drop: 60% below")
    assert worklist["supervised"].null_count() == worklist.height  # nothing recorded yet
    clock = FixedClock(datetime(2026, 2, 5, 10, tzinfo=BUSINESS_TZ))
    with billed.session() as s:
        for c in PEOPLE:
            risk.record_inspection(s, account_id=c, inspected_on=date(2026, 1, 20),
                                   outcome="theft" if c == THIEF else "no_finding",
                                   clock=clock, inspector="王五")
    with pytest.raises(ConflictError, match="already recorded"), billed.session() as s:
        risk.record_inspection(s, account_id=THIEF, inspected_on=date(2026, 1, 20),
                               outcome="theft", clock=clock)
    with pytest.raises(NotFoundError, match="account C99 does not exist"), billed.session() as s:
        risk.record_inspection(s, account_id="C99", inspected_on=date(2026, 1, 21),
                               outcome="theft", clock=clock)
    with pytest.raises(ValidationError, match="outcome must be one of"), billed.session() as s:
        risk.record_inspection(s, account_id=THIEF, inspected_on=date(2026, 1, 21),
                               outcome="stolen", clock=clock)
    assert risk.inspections(billed).height == len(PEOPLE)
    # inspections in January teach a model used by the scan of January's bills
    learnt = risk.theft_scan(billed, as_of)
    assert learnt["supervised"].null_count() == 0
    assert learnt.row(0, named=True)["account_id"] == THIEF
    # …but not by a scan of an earlier month (they lie after its horizon)
    assert risk.theft_scan(billed, Period(2025, 12))["supervised"].null_count() > 0


def test_forecast_rates_the_next_bill_and_queues_advance_notices(billed: Database) -> None:
    target = Period(2026, 2)
    out = risk.forecast_next_bill(billed, target)
    assert out.height == len(PEOPLE)
    assert out["amount"].null_count() == 0
    assert (out["amount_low"] <= out["amount"]).all() and (out["amount"] <= out["amount_high"]).all()
    one = risk.forecast_next_bill(billed, target, accounts=["C03"])
    assert one.height == 1 and one.row(0) == out.filter(pl.col("account_id") == "C03").row(0)
    # July is the summer peak: some bills are forecast well above the usual month
    july = Period(2026, 7)
    high = risk.forecast_next_bill(billed, july).filter(pl.col("high"))
    clock = FixedClock(datetime(2026, 7, 1, 9, tzinfo=BUSINESS_TZ))
    queued = risk.queue_forecast_notices(billed, july, clock=clock)
    assert queued == high.height > 0
    again = risk.queue_forecast_notices(billed, july, clock=clock)  # idempotent
    assert again == queued
    sent = notify.deliveries(billed, key_prefix="forecast:")
    assert len(sent) == queued
    assert {d.notice for d in sent} == {"bill_forecast"}


def test_stored_forecasts_are_what_the_bill_page_shows_without_rating_again(
        billed: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forecast --store` (the forecast_store job) keeps every account's forecast; the bill
    document's hook then reads it by key — the same figures, without re-rating the history."""
    from dianfei.risk import insight

    last = Period(2026, 6)
    live = risk.bill_document_forecast(billed.engine, ["C03", "C04"], last)
    assert set(live) == {"C03", "C04"} and live["C03"]["period"] == "2026-07"
    done = risk.store_forecasts(billed, last.next(), clock=issue_clock(last))
    assert done == {"period": "2026-07", "stored": len(PEOPLE), "not_rated": 0}

    def no_rating(*_a: object, **_k: object) -> None:
        raise AssertionError("the stored forecast must be read, not computed again")

    monkeypatch.setattr(insight, "forecast_next_bill", no_rating)
    assert risk.bill_document_forecast(billed.engine, ["C03", "C04"], last) == live
    assert risk.bill_document_forecast(billed.engine, ["C99"], last) == {}  # no such account
    # storing again replaces the period's rows (no duplicates)
    monkeypatch.undo()
    assert risk.store_forecasts(billed, last.next(), clock=issue_clock(last))["stored"] == len(PEOPLE)
    with billed.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM bill_forecasts")).scalar() == len(PEOPLE)


def test_cli_theft_scan_and_forecast_json(billed: Database) -> None:
    env = {**os.environ, "DIANFEI_DATABASE_URL": str(billed.settings.database_url),
           "DIANFEI_DATA_DIR": str(billed.settings.data_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dianfei", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    scan = run("theft", "scan", "--as-of", "2026-01", "--top", "3", "--json")
    assert scan.returncode == 0, scan.stderr
    rows = json.loads(scan.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["account"] == THIEF
    fc = run("forecast", "--period", "2026-02", "--account", "C03", "--json")
    assert fc.returncode == 0, fc.stderr
    (row,) = json.loads(fc.stdout)
    assert row["account"] == "C03" and row["amount"].count(".") == 1
    assert len(row["amount"].split(".")[1]) == 2
    bad = run("forecast", "--period", "2026-13")
    assert bad.returncode == 2 and "--period: not a period YYYY-MM" in bad.stderr
    assert "Traceback" not in bad.stderr
    rec = run("theft", "record", THIEF, "--on", "2026-01-20", "--outcome", "maybe")
    assert rec.returncode == 2 and "outcome must be one of" in rec.stderr
    made = run("experiment", "create", "exp1", "--arms", "holdout:0.5,uniform:0.5",
               "--start", "2026-01-01", "--payment-mode", "postpaid", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {"experiment_id": "exp1", "accounts": 24,
                                       "arms": {"holdout": 12, "uniform": 12}}
    rep = run("experiment", "report", "exp1", "--as-of", "2026-07-31", "--json")
    assert rep.returncode == 0, rep.stderr
    body = json.loads(rep.stdout)
    assert set(body["arms"]) == {"holdout", "uniform"} and body["champion"] == "uniform"
    assert body["arms"]["uniform"]["billed"].count(".") == 1
    seg = run("segments", "--date", "2026-07-01", "--summary", "--json")
    assert seg.returncode == 0, seg.stderr
    assert sum(json.loads(seg.stdout).values()) == len(PEOPLE)
    bad_arms = run("experiment", "create", "exp2", "--arms", "a:0.7,b:0.7", "--start", "2026-01-01")
    assert bad_arms.returncode == 2 and "add up to 1.4" in bad_arms.stderr


def test_empty_database_gives_empty_answers(db: Database) -> None:
    assert risk.theft_scan(db, Period(2026, 1)).height == 0
    assert risk.forecast_next_bill(db, Period(2026, 1)).height == 0


def test_open_database_sees_the_migration(db_env: dict[str, str]) -> None:
    db = open_database(load_settings(db_env))
    assert risk.inspections(db).height == 0


def test_segments_follow_the_rules_file(billed: Database) -> None:
    seg = risk.segments(billed, date(2026, 7, 1))
    by = dict(zip(seg["account_id"].to_list(), seg["segment"].to_list(), strict=True))
    assert by[THIEF] == "suspected_theft"
    assert by[NEVER_PAYS] == "chronic" and by[ALWAYS_LATE] == "chronic"
    assert by[ONCE_LATE] == "occasionally_late"
    assert by[LOW_INCOME] == "hardship"
    assert by["C03"] == "on_time"
    row = seg.filter(pl.col("account_id") == ONCE_LATE).row(0, named=True)
    assert (row["late_12m"], row["overdue_amount"]) == (1, 0)
    assert row["why"] == "late_12m >= 1 or overdue_amount > 0"
    never = seg.filter(pl.col("account_id") == NEVER_PAYS).row(0, named=True)
    assert never["late_12m"] == 12 and never["days_overdue"] >= 60


def test_experiment_assignment_is_kept_and_reported_per_arm(billed: Database) -> None:
    from dianfei.risk.experiments import parse_arms

    clock = FixedClock(datetime(2026, 1, 1, 9, tzinfo=BUSINESS_TZ))
    with billed.session() as s:
        assigned = risk.create_experiment(
            s, experiment_id="dunning-2026", description="uniform vs risk-driven",
            arms=parse_arms("holdout:0.25,uniform:0.75"), seed=5, started_on=date(2026, 1, 1),
            clock=clock, accounts=PEOPLE)
    with pytest.raises(ConflictError, match="exists already"), billed.session() as s:
        risk.create_experiment(s, experiment_id="dunning-2026", description="again",
                               arms=parse_arms("a:0.5,b:0.5"), seed=1,
                               started_on=date(2026, 1, 1), clock=clock, accounts=PEOPLE)
    kept = risk.experiment_arms(billed.engine, "dunning-2026")
    assert kept.sort("account_id").equals(assigned.sort("account_id"))
    assert dict(kept.group_by("arm").len().iter_rows()) == {"holdout": 6, "uniform": 18}
    report = risk.experiment_report(billed, "dunning-2026", date(2026, 7, 31))
    arm_of = dict(kept.iter_rows())
    for arm, k in report["arms"].items():
        members = [c for c in PEOPLE if arm_of[c] == arm]
        assert k["accounts"] == len(members)
        assert k["bills"] == 7 * len(members)  # the 2025-12 … 2026-06 bills, due from 2026-01
        expected = 1.0 - (NEVER_PAYS in members) / len(members)
        assert k["collection_rate"]["value"] == pytest.approx(expected, abs=0.02)
    assert report["champion"] == "uniform"
    with pytest.raises(Exception, match="no experiment 'nope'"):
        risk.experiment_report(billed, "nope", date(2026, 7, 31))


def test_stored_consumption_facts_are_the_whole_book_facts_and_feed_the_daily_run(
        billed: Database) -> None:
    from dianfei.collections.service import events_json, run_day
    from tests.collections.fakes import FakeNotifier, FakeSwitch

    day = date(2026, 7, 1)
    stored = risk.segment_consumption_facts(billed, day)
    whole = risk.segments(billed, day)
    both = whole.join(stored, on="account_id", how="inner", suffix="_stored")
    assert both.height == len(PEOPLE)
    for col in ("theft_score", "months_low", "usual_kwh", "kwh_percentile"):
        assert both[col].to_list() == both[f"{col}_stored"].to_list(), col
    assert both.filter(pl.col("account_id") == THIEF)["theft_score_stored"].item() >= 40
    assert set(both["bills_12m"].to_list()) == {12}
    # kept per billing state (2026-06, the latest before the day): read, not computed, again
    kept = list((billed.settings.data_dir / "risk" / "segment_facts").glob("2026-06-*.parquet"))
    assert len(kept) == 1
    before = kept[0].stat().st_mtime_ns
    assert risk.segment_consumption_facts(billed, day).equals(stored)
    assert kept[0].stat().st_mtime_ns == before
    assert risk.segment_consumption_facts(billed, day, accounts=[THIEF]).height == 1
    # the daily run segments the account in arrears by the same rules: a never-paying account
    # is chronic, and its dunning step says so
    run_day(billed, day, clock=FixedClock(datetime(2026, 7, 1, 9, tzinfo=BUSINESS_TZ)),
            switch=FakeSwitch(), notifier=FakeNotifier())
    steps = {e["account"]: e for e in events_json(billed, NEVER_PAYS) if e["type"] == "dunning_level"}
    assert steps[NEVER_PAYS]["segment"] == "chronic"
