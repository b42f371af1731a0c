"""KPIs against the export files: an independent recomputation from the CSVs, to the fen.

A few accounts are billed for two periods on a real database; hypothesis then draws payments
(who, when, how much, which channel), refunds, and an as-of date. After each example the test
exports bills and payments — as of D and in full — and recomputes every money KPI from the
CSV text with plain Python and Decimal (no code of dianfei's), then compares with
``dianfei.reporting.kpi``. The database lives for the whole test, so payments pile up across
examples, and the bills pass through every state (open, partly paid, paid, overpaid → credit,
refunded and open again).
"""

from __future__ import annotations

import csv
import itertools
import os
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reporting.conftest import ISSUE, JAN, PEOPLE

from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.payments.service import payment_id_for, post_payments_frame, reverse_payment
from dianfei.reporting.exports import export
from dianfei.reporting.kpi import (
    DSO_PERIODS,
    Inputs,
    compute,
    first_of_window,
    load_inputs,
    period_kpis,
)

CHANNELS = ("counter", "alipay", "bank")
EXAMPLES = int(os.environ.get("DIANFEI_KPI_EXAMPLES", "12"))
_ids = itertools.count(1)


payment = st.tuples(st.sampled_from(PEOPLE), st.integers(0, 80 * 24), st.integers(1, 160_00),
                    st.sampled_from(CHANNELS))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pays=st.lists(payment, min_size=0, max_size=6), refund=st.booleans(),
       as_of_offset=st.integers(0, 90))
def test_kpis_recomputed_from_the_exports(billed: Database, tmp_path: Path,
                                          pays: list[tuple[str, int, int, str]], refund: bool,
                                          as_of_offset: int) -> None:
    db = billed
    start = ISSUE[JAN]
    # given payments at hours after the January issue (some before February is even billed)
    frame = pl.DataFrame(
        [{"channel": ch, "transaction_id": f"T{next(_ids)}", "account_id": who, "amount": fen,
          "paid_at": (start + timedelta(hours=h)).astimezone(UTC)} for who, h, fen, ch in pays],
        schema={"channel": pl.String, "transaction_id": pl.String, "account_id": pl.String,
                "amount": pl.Int64, "paid_at": pl.Datetime("us", "UTC")}).sort("paid_at")
    with db.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(start + timedelta(days=90)),
                            source="test")
    if refund and frame.height:
        # and the first of them refunded a week after it was paid
        first = frame.row(0, named=True)
        with db.session() as s:
            reverse_payment(s, payment_id_for(first["channel"], first["transaction_id"]),
                            reason="refund test", clock=FixedClock(first["paid_at"] + timedelta(days=7)))
    as_of = date(2026, 2, 3) + timedelta(days=as_of_offset)
    # when the KPIs are computed and the files exported (as of D, and in full)
    got = period_kpis(db, JAN, as_of)
    # the bills' state worked out by the database gives what the Polars reference gives
    assert got == reference_kpis(db, JAN, as_of)
    assert compute(load_inputs(db, JAN, as_of), as_of) == got  # every customer's row read
    files = {}
    for kind, day in (("bills", as_of), ("payments", as_of), ("payments_all", None)):
        out = tmp_path / f"{kind}-{next(_ids)}.csv"
        export(db, kind.split("_")[0], out, JAN, day)
        files[kind] = list(csv.DictReader(out.open(encoding="utf-8")))
    # then the figures recomputed from the text of the files agree, to the fen
    want = recompute(files["bills"], files["payments"], as_of)
    for key, value in want.items():
        assert got[key] == value, key
    # and the full payments file, cut at D by its paid_at, gives the same money
    cut = [r for r in files["payments_all"] if _day(r["paid_at"]) <= as_of]
    again = recompute(files["bills"], cut, as_of)
    for key in ("collected", "overdue_amount", "aging", "channels"):
        assert again[key] == want[key], key


def reference_kpis(db: Database, period: Period, as_of: date) -> dict[str, object]:
    """The KPIs as computed before the database worked out the bills' state: bare bills and
    every clearing of the DSO window, folded by ``reporting.kpi.bill_state`` in Polars."""
    from dianfei.billing.service import bills_between
    from dianfei.payments.service import bill_clearings

    first, last = str(first_of_window(period, DSO_PERIODS)), str(period)
    full = load_inputs(db, period, as_of)
    bare = Inputs(**{**full.__dict__, "bills": bills_between(db.engine, first, last),
                     "clearings": bill_clearings(db.engine, first, last), "as_of": None})
    return compute(bare, as_of)


def _day(instant: str) -> date:
    return datetime.fromisoformat(instant).astimezone(BUSINESS_TZ).date()


def _yuan(text: str) -> int:
    return int((Decimal(text) * 100).to_integral_value())


def _fmt(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else float((Decimal(num) / Decimal(den)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP))


def _bucket(days_past_due: int) -> str:
    for last, name in ((0, "current"), (30, "0-30"), (60, "31-60"), (90, "61-90")):
        if days_past_due <= last:
            return name
    return ">90"


def recompute(bills: list[dict[str, str]], payments: list[dict[str, str]],
              as_of: date) -> dict[str, object]:
    """The KPI definitions, written out again over the CSV rows (docs/kpi.md)."""
    live = {b["bill_id"]: b for b in bills if b["status"] != "cancelled"}
    rows = [p for p in payments if p["allocated_to"] == "bill" and p["bill_id"] in live]
    paid: dict[str, int] = defaultdict(int)
    by_channel: dict[str, int] = defaultdict(int)
    for p in rows:
        paid[p["bill_id"]] += _yuan(p["amount"])
        by_channel[p["channel"]] += _yuan(p["amount"])
    billed = sum(_yuan(b["amount"]) for b in live.values())
    collected = sum(paid.values())
    aging = dict.fromkeys(("current", "0-30", "31-60", "61-90", ">90"), 0)
    overdue = 0
    days = []
    for bill_id, b in live.items():
        amount = _yuan(b["amount"])
        unpaid = max(amount - paid[bill_id], 0)
        due = date.fromisoformat(b["due_on"])
        if due < as_of:
            overdue += unpaid
        aging[_bucket((as_of - due).days)] += unpaid
        # the file's paid amount and paid-in-full day are the ones the payments file implies
        assert _yuan(b["paid_amount"]) == paid[bill_id]
        full = _paid_in_full_on(amount, date.fromisoformat(b["issued_on"]),
                                [p for p in rows if p["bill_id"] == bill_id])
        assert b["paid_in_full_on"] == (full.isoformat() if full else "")
        if amount > 0 and full is not None:
            days.append((full - date.fromisoformat(b["issued_on"])).days)
    total = sum(by_channel.values())
    return {
        "billed": _fmt(billed), "collected": _fmt(collected),
        "collection_rate": _rate(collected, billed),
        "overdue_amount": _fmt(overdue), "overdue_rate": _rate(overdue, billed),
        "avg_payment_days": float((Decimal(sum(days)) / len(days)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)) if days else None,
        "median_payment_days": float(statistics.median(days)) if days else None,
        "bills_paid_in_full": len(days),
        "aging": {k: _fmt(v) for k, v in aging.items()},
        "channels": [{"channel": ch, "collected": _fmt(v),
                      "payments": len({p["payment_id"] for p in rows if p["channel"] == ch}),
                      "share": _rate(v, total)} for ch, v in sorted(by_channel.items())],
    }


def _paid_in_full_on(amount: int, issued: date, rows: list[dict[str, str]]) -> date | None:
    """The day the clearings last reached the bill's amount (never before issue)."""
    if amount <= 0:
        return issued
    cum, day = 0, None
    for p in sorted(rows, key=lambda r: datetime.fromisoformat(r["paid_at"])):  # stable: file order
        before = cum
        cum += _yuan(p["amount"])
        if cum >= amount > before:
            day = _day(p["paid_at"])
    if cum < amount or day is None:
        return None
    return max(day, issued)


def test_bad_input_is_a_clear_message(billed: Database) -> None:
    from dianfei.core.errors import ValidationError
    from dianfei.reporting.kpi import parse_as_of

    with pytest.raises(ValidationError, match="no bills for period 2025-06"):
        period_kpis(billed, Period(2025, 6), date(2026, 3, 1))
    with pytest.raises(ValidationError, match="before period 2026-01 begins"):
        parse_as_of("2025-12-31", JAN, date(2026, 3, 1))
    with pytest.raises(ValidationError, match="--as-of must be YYYY-MM-DD"):
        parse_as_of("31/12/2025", JAN, date(2026, 3, 1))
    with pytest.raises(ValidationError, match="--by must be one of"):
        period_kpis(billed, JAN, date(2026, 3, 1), by="tariff")
    # before the bills were issued there is nothing to measure yet (no division by zero)
    with pytest.raises(ValidationError, match="no bills for period 2026-01 issued by 2026-02-02"):
        period_kpis(billed, JAN, date(2026, 2, 2))


def test_dimensions_split_the_period_and_add_up(billed: Database) -> None:
    frame = pl.DataFrame({"channel": ["counter", "alipay"], "transaction_id": ["A", "B"],
                          "account_id": ["K1", "K2"], "amount": [50_00, 999_99],
                          "paid_at": [datetime(2026, 2, 5, 1, tzinfo=UTC),
                                      datetime(2026, 2, 6, 1, tzinfo=UTC)]})
    with billed.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(datetime(2026, 2, 6, 2, tzinfo=UTC)),
                            source="test")
    total = period_kpis(billed, JAN, date(2026, 3, 1))
    for by in ("region", "customer_class", "collector", "station"):
        split = period_kpis(billed, JAN, date(2026, 3, 1), by=by)
        assert split["by"] == by and split["groups"]
        assert sum(_yuan(g["billed"]) for g in split["groups"]) == _yuan(total["billed"])
        assert sum(_yuan(g["collected"]) for g in split["groups"]) == _yuan(total["collected"])
    channels = period_kpis(billed, JAN, date(2026, 3, 1), by="channel")["groups"]
    assert [c["channel"] for c in channels] == ["alipay", "counter"]
    assert sum(_yuan(c["collected"]) for c in channels) == _yuan(total["collected"])
    # K1 paid 50.00 on account of a larger bill; K2 paid its whole bill (the rest is credit)
    assert _yuan(channels[1]["collected"]) == 50_00
    assert total["bills"] == len(PEOPLE)


def test_complaints_and_satisfaction_come_from_the_ticket_register(billed: Database) -> None:
    from dianfei.collections.service import decide_ticket, record_ticket

    kpis = period_kpis(billed, JAN, date(2026, 3, 1))
    # no survey: satisfaction is unknown, not a made-up number
    assert (kpis["complaints"], kpis["complaint_rate"], kpis["satisfaction"]) == (0, 0.0, None)
    at = datetime(2026, 1, 10, 9, tzinfo=BUSINESS_TZ)
    with billed.session() as s:
        t1 = record_ticket(s, customer_id="K1", category="complaint", opened_at=at)
        record_ticket(s, customer_id="K2", category="complaint", opened_at=at,
                      decided_at=at + timedelta(days=1), satisfaction=2)
        record_ticket(s, customer_id="K3", category="inquiry", opened_at=at,
                      decided_at=at, satisfaction=5)
        # a complaint of February is not January's
        record_ticket(s, customer_id="K4", category="complaint",
                      opened_at=datetime(2026, 2, 1, 0, 30, tzinfo=BUSINESS_TZ))
        decide_ticket(s, t1, decided_at=at + timedelta(days=2))
    kpis = period_kpis(billed, JAN, date(2026, 3, 1))
    # 2 complaints among 6 customers = 3333.33 per 10,000; surveys 2 and 5 → 3.5
    assert (kpis["complaints"], kpis["complaint_rate"]) == (2, 3333.33)
    assert (kpis["satisfaction"], kpis["satisfaction_surveys"]) == (3.5, 2)



def test_every_complaint_category_and_visit_surveys_count(billed: Database) -> None:
    from dianfei.collections.service import record_ticket, surveys_between
    from dianfei.collections.surveys import record_survey
    from dianfei.collections.visits import record_visit
    from dianfei.core.clock import FixedClock

    at = datetime(2026, 1, 10, 9, tzinfo=BUSINESS_TZ)
    clock = FixedClock(at + timedelta(hours=1))
    with billed.session() as s:
        record_ticket(s, customer_id="K1", category="notice_complaint", opened_at=at,
                      decided_at=at, satisfaction=2)
        record_ticket(s, customer_id="K2", category="collector_complaint", opened_at=at)
        record_ticket(s, customer_id="K3", category="meter_question", opened_at=at)
        v = record_visit(s, request_id="v1", account_id="K4", collector_id="K1", channel="call",
                         outcome="refused", at=at, recorded_by="zhang", clock=clock)
        record_survey(s, request_id="s1", subject="visit", subject_id=v.visit.visit_id, score=5,
                      recorded_by="desk", clock=clock)
    assert surveys_between(billed.engine, at - timedelta(days=1), at + timedelta(days=1)).height == 1
    kpis = period_kpis(billed, JAN, date(2026, 3, 1))
    # 2 complaints (a meter question is not one) among 6 customers; surveys 2 (ticket), 5 (visit)
    assert (kpis["complaints"], kpis["complaint_rate"]) == (2, 3333.33)
    assert (kpis["satisfaction"], kpis["satisfaction_surveys"]) == (3.5, 2)


def test_ticket_register_refuses_bad_rows(billed: Database) -> None:
    from dianfei.collections.service import record_ticket
    from dianfei.core.errors import ValidationError

    at = datetime(2026, 1, 10, 9, tzinfo=BUSINESS_TZ)
    with billed.session() as s:
        with pytest.raises(ValidationError, match="category"):
            record_ticket(s, customer_id="K1", category="rant", opened_at=at)
        with pytest.raises(ValidationError, match=r"1\.\.5"):
            record_ticket(s, customer_id="K1", category="complaint", opened_at=at,
                          decided_at=at, satisfaction=6)
        with pytest.raises(ValidationError, match="before it"):
            record_ticket(s, customer_id="K1", category="complaint", opened_at=at,
                          decided_at=at - timedelta(hours=1))
        with pytest.raises(ValidationError, match="time zone"):
            record_ticket(s, customer_id="K1", category="complaint",
                          opened_at=datetime.combine(date(2026, 1, 1), time(9)))


def test_the_trend_repeats_each_periods_figures(billed: Database) -> None:
    from tests.reporting.conftest import FEB

    feb = period_kpis(billed, FEB, date(2026, 3, 20), trend_periods=12)
    jan = period_kpis(billed, JAN, date(2026, 3, 20))
    assert [t["period"] for t in feb["trend"]] == ["2026-01", "2026-02"]
    assert feb["trend"][0]["collected"] == jan["collected"]
    assert feb["trend"][1]["overdue_rate"] == feb["overdue_rate"]
    assert "trend" not in jan  # only when asked for: it reads that many periods of bills
    with pytest.raises(Exception, match="--trend must be"):
        period_kpis(billed, FEB, date(2026, 3, 20), trend_periods=-1)
