"""Payment plans moved day by day through months of real bills:

- E agrees an instalment arrangement (分期): each instalment shows on the next bills' documents
  (the bill's own total unchanged), E pays "with this bill" each month and the plan completes;
- F's pay plan: an instalment is missed, noted, and the plan breaks only after the grace
  period — then dunning resumes;
- G owes more than the approval limit: the plan is proposed, dunning goes on until a supervisor
  approves it, then pauses.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from dianfei.billing.documents import bill_document, load_instalments
from dianfei.billing.render import render_html
from dianfei.billing.service import bills_of_accounts, run_bill_run
from dianfei.collections.plan_report import plan_performance, show_plan
from dianfei.collections.service import (
    amount_due,
    approve_plan,
    events_json,
    propose_plan,
    run_day,
)
from dianfei.core.clock import FixedClock, Period
from dianfei.core.money import fmt_yuan, to_fen
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, pay
from tests.factories import Person, Reads, load_people, month_end

USE = {"E": 900_00, "F": 900_00, "G": 5000_00}  # kWh a month (0.01 kWh)


def bill_month(db: Database, period: Period, n: int) -> None:
    """Reads at the period's end, then the bill run on the 3rd of the next month."""
    r = Reads()
    for c, use in USE.items():
        r.add(c, month_end(period), 1000_00 + n * use)
    r.store(db)
    d = period.end_date
    run_bill_run(db, period, FixedClock(at(date(d.year, d.month, 3), 8)))


def bill_of(db: Database, account: str, period: str) -> dict[str, object]:
    with db.engine.connect() as conn:
        bills = bills_of_accounts(conn, [account])
    return next(r for r in bills.iter_rows(named=True) if r["period"] == period)


def kinds(db: Database, account: str, types: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(str(e["type"]), str(e["at"])[:10]) for e in events_json(db, account)
            if e["type"] in types]


def test_plans_through_months_of_bills(db: Database) -> None:
    load_people(db, [Person(c) for c in USE])
    Reads().add("E", month_end(Period(2025, 11)), 1000_00).add(
        "F", month_end(Period(2025, 11)), 1000_00).add(
        "G", month_end(Period(2025, 11)), 1000_00).store(db)
    bill_month(db, Period(2025, 12), 1)  # issued 3 January, due 18 January; nobody pays
    switch, notifier = FakeSwitch(), FakeNotifier()
    plans: dict[str, int] = {}
    paid_e: dict[str, int] = {}
    n = 1
    day = date(2026, 1, 18)
    while day <= date(2026, 4, 7):
        if day.day == 3:
            n += 1
            bill_month(db, Period(day.year, day.month).prev(), n)
        if day == date(2026, 1, 25):
            with db.session() as s:
                clock = FixedClock(at(day, 10))
                for acct, kind, count in (("E", "instalment", 3), ("F", "pay_plan", 2),
                                          ("G", "pay_plan", 3)):
                    owed = amount_due(s.connection(), acct)
                    down = (owed * 20 + 99) // 100  # the policy's 20 %, rounded up to the fen
                    plans[acct] = propose_plan(s, account_id=acct, kind=kind,
                                               down_payment_fen=down, instalments=count,
                                               requested_by="li", clock=clock).plan_id
        if day == date(2026, 1, 27):
            with db.session() as s:
                approve_plan(s, plans["G"], "wang", FixedClock(at(day, 10)))
        if day == date(2026, 1, 28):
            for acct in USE:
                down = show_plan(db.engine, plans[acct])["instalments"][0]
                pay(db, acct, to_fen(Decimal(down["amount"])), at(day, 8), f"T-{acct}-down")
        if day.day == 5 and day.month > 1:
            period = str(Period(day.year, day.month).prev())
            doc = bill_document(db.engine, "E", Period.parse(period), as_of=day,
                                instalments=load_instalments())
            assert "with_this_bill" in doc, day  # the instalment due with this bill
            paid_e[period] = to_fen(Decimal(doc["with_this_bill"]))
            pay(db, "E", paid_e[period], at(day, 8), f"T-E-{period}")
            if period == "2026-01":
                pay(db, "F", int(bill_of(db, "F", period)["amount"]),  # type: ignore[arg-type]
                    at(day, 8), f"T-F-{period}")
        run_day(db, day, clock=FixedClock(at(day, 9)), switch=switch, notifier=notifier)
        day += timedelta(days=1)

    # E: every instalment rode on a bill and showed on its document, the bill's total unchanged
    e_plan = show_plan(db.engine, plans["E"])
    assert [(i["seq"], i["period"], i["bill_id"], i["due_on"]) for i in e_plan["instalments"]] == [
        (0, None, None, "2026-02-01"), (1, "2026-01", "E-202601-1", "2026-02-18"),
        (2, "2026-02", "E-202602-1", "2026-03-18"), (3, "2026-03", "E-202603-1", "2026-04-18")]
    jan = bill_document(db.engine, "E", Period(2026, 1), as_of=date(2026, 2, 5),
                        instalments=load_instalments())
    first = e_plan["instalments"][1]
    assert jan["plan_instalments"] == [{"plan_id": plans["E"], "instalment": 1, "of": 3,
                                        "amount": first["amount"], "due_on": "2026-02-18"}]
    assert jan["total"] == fmt_yuan(int(bill_of(db, "E", "2026-01")["amount"]))  # type: ignore[arg-type]
    assert "分期缴费协议" in render_html(jan) and first["amount"] in render_html(jan)
    # without the hook (or without a plan) the document has no instalment line
    assert "plan_instalments" not in bill_document(db.engine, "E", Period(2026, 1))
    assert "plan_instalments" not in bill_document(db.engine, "F", Period(2026, 1),
                                                   instalments=load_instalments())
    assert e_plan["status"] == "completed"
    assert kinds(db, "E", ("plan_agreed", "instalment_missed", "plan_completed")) == [
        ("plan_agreed", "2026-01-25"), ("plan_completed", "2026-04-05")]
    assert [d for t, d in kinds(db, "E", ("dunning_level",)) if "2026-01-25" <= d <= "2026-04-05"] \
        == []

    # F: instalment 1 (due 24 February) missed, noted on the 25th, broken after 5 grace days
    assert kinds(db, "F", ("plan_agreed", "instalment_missed", "plan_broken")) == [
        ("plan_agreed", "2026-01-25"), ("instalment_missed", "2026-02-25"),
        ("plan_broken", "2026-03-02")]
    f_dun = [d for t, d in kinds(db, "F", ("dunning_level",)) if d >= "2026-01-25"]
    assert f_dun and f_dun[0] == "2026-03-02"  # the ladder resumes the day the plan breaks

    # G: above the 2,000-yuan limit — proposed, dunned until approved, then paused; G paid the
    # down payment but not the January bill (due 18 February): the plan breaks after the grace
    g = kinds(db, "G", ("plan_proposed", "plan_approved", "plan_agreed", "instalment_missed",
                        "plan_broken", "dunning_level"))
    assert g[:1] == [("dunning_level", "2026-01-19")]
    plan_part = [x for x in g if x[0] != "dunning_level"]
    assert plan_part == [("plan_proposed", "2026-01-25"), ("plan_approved", "2026-01-27"),
                         ("plan_agreed", "2026-01-27"), ("instalment_missed", "2026-02-19"),
                         ("plan_broken", "2026-02-24")]
    assert [d for t, d in g if t == "dunning_level" and "2026-01-27" <= d < "2026-02-24"] == []

    # the performance report over the quarter, by segment
    rep = plan_performance(db.engine, date(2026, 1, 1), date(2026, 3, 31), "segment")
    assert rep["rows"][0]["segment"] == "standard"
    assert {k: rep["total"][k] for k in ("in_force", "kept", "broken", "completed")} == {
        "in_force": 3, "kept": 1, "broken": 2, "completed": 0}
    # April by collector: E's plan completed by the payment of 5 April, which it recovered
    april = plan_performance(db.engine, date(2026, 4, 1), date(2026, 4, 30), "collector")
    assert april["rows"] == [{"collector": "K1", "in_force": 1, "kept": 1, "broken": 0,
                              "completed": 1, "recovered": fmt_yuan(paid_e["2026-03"]),
                              "kept_rate": "100.0"}]
