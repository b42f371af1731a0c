"""Proposing plans within policy, four-eyes approval, cancellation, idempotent retries, and the
daily run's grace before a missed instalment breaks a plan."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from dianfei.collections.plan_report import list_plans, show_plan
from dianfei.collections.service import (
    approve_plan,
    cancel_plan,
    events_json,
    propose_plan,
    suggest_schedule,
    tasks_json,
)
from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, pay, run, setup

CLOCK = FixedClock(at(date(2026, 1, 20), 10))


def count(db: Database, sql: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


def plan_types(db: Database, account: str) -> list[str]:
    return [str(e["type"]) for e in events_json(db, account)
            if str(e["type"]).startswith("plan_") or e["type"] == "instalment_missed"]


def test_a_plan_within_policy_is_active_at_once(db: Database) -> None:
    # given A owes 200 yuan (no late fee accrued yet): residential standard, under 2,000 yuan
    setup(db, {"A": {}})
    with db.session() as s:
        plan = propose_plan(s, account_id="A", kind="pay_plan", down_payment_fen=4_000,
                            instalments=2, requested_by="li", clock=CLOCK)
        plan_id = plan.plan_id
    shown = show_plan(db.engine, plan_id)
    assert (shown["status"], shown["total"], shown["down_payment"], shown["grace_days"]) == (
        "active", "200.00", "40.00", 5)
    # the down payment falls due in 7 days, the rest every 30 days, adding up to the fen
    assert [(i["seq"], i["due_on"], i["amount"]) for i in shown["instalments"]] == [
        (0, "2026-01-27", "40.00"), (1, "2026-02-19", "80.00"), (2, "2026-03-21", "80.00")]
    assert plan_types(db, "A") == ["plan_agreed"]
    assert [t for t in tasks_json(db) if t["kind"] == "plan_approval"] == []


def test_a_refused_plan_names_the_rule_and_stores_nothing(db: Database) -> None:
    setup(db, {"A": {}})
    with db.session() as s, pytest.raises(ValidationError, match=(
            r"plan refused by policy residential\.standard: down_payment_min — the down payment "
            r"10\.00 is below 40\.00")):
        propose_plan(s, account_id="A", kind="pay_plan", down_payment_fen=1_000, instalments=2,
                     requested_by="li", clock=CLOCK)
    with db.session() as s, pytest.raises(ValidationError, match="instalments_max — 7 "
                                                                 "instalments, at most 6"):
        propose_plan(s, account_id="A", kind="instalment", down_payment_fen=4_000,
                     instalments=7, requested_by="li", clock=CLOCK)
    with db.session() as s, pytest.raises(ValidationError, match="plan kind must be one of"):
        propose_plan(s, account_id="A", kind="weekly", down_payment_fen=4_000, instalments=2,
                     requested_by="li", clock=CLOCK)
    assert count(db, "SELECT COUNT(*) FROM payment_plans") == 0
    assert count(db, "SELECT COUNT(*) FROM collection_events") == 0


def test_above_the_limit_a_second_person_approves(db: Database) -> None:
    # given B owes 3,000 yuan: above residential.standard's 2,000-yuan approval limit
    setup(db, {"B": {"amount": 300_000}})
    with db.session() as s:
        plan = propose_plan(s, account_id="B", kind="pay_plan", down_payment_fen=60_000,
                            instalments=6, requested_by="li", clock=CLOCK, request_key="r-1")
        plan_id = plan.plan_id
    assert show_plan(db.engine, plan_id)["status"] == "proposed"
    task = [t for t in tasks_json(db) if t["kind"] == "plan_approval"]
    assert [(t["account"], t["detail"]["plan_id"], t["detail"]["requested_by"]) for t in task] == [
        ("B", plan_id, "li")]
    # a retry with the same request key is the same plan; another proposal is refused
    with db.session() as s:
        assert propose_plan(s, account_id="B", kind="pay_plan", down_payment_fen=60_000,
                            instalments=6, requested_by="li", clock=CLOCK,
                            request_key="r-1").plan_id == plan_id
    with db.session() as s, pytest.raises(ConflictError, match="already has an open"):
        propose_plan(s, account_id="B", kind="pay_plan", down_payment_fen=60_000,
                     instalments=6, requested_by="li", clock=CLOCK)
    # the requester cannot approve their own plan
    with db.session() as s, pytest.raises(ValidationError, match="other than the requester"):
        approve_plan(s, plan_id, "li", CLOCK)
    with db.session() as s:
        approve_plan(s, plan_id, "wang", CLOCK)
    with db.session() as s:  # approving again is the same approval
        approve_plan(s, plan_id, "wang", CLOCK)
    shown = show_plan(db.engine, plan_id)
    assert (shown["status"], shown["approved_by"]) == ("active", "wang")
    assert plan_types(db, "B") == ["plan_proposed", "plan_approved", "plan_agreed"]
    assert [t for t in tasks_json(db) if t["kind"] == "plan_approval"] == []
    assert count(db, "SELECT COUNT(*) FROM collection_tasks WHERE kind = 'plan_approval' "
                     "AND status = 'done' AND done_by = 'wang'") == 1
    assert count(db, "SELECT COUNT(*) FROM audit_records WHERE action IN ('plan.proposed', "
                     "'plan.approved')") == 2


def test_low_income_plans_always_need_approval_and_can_be_cancelled(db: Database) -> None:
    setup(db, {"C": {}})
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET low_income = :t WHERE customer_id = 'C'"),
                     {"t": True})
    with db.engine.connect() as conn:
        sug = suggest_schedule(conn, account_id="C", kind="pay_plan", clock=CLOCK)
    # residential.low_income: no down payment, instalments of at least 20 yuan, up to 12
    assert (sug["policy"], sug["down_payment"], len(sug["instalments"]),
            sug["approval_required"]) == ("residential.low_income", "0.00", 10, True)
    assert sum(i["amount_fen"] for i in sug["instalments"]) == sug["total_fen"] == 20_000
    with db.session() as s:
        plan = propose_plan(s, account_id="C", kind="pay_plan", down_payment_fen=0,
                            instalments=[(date.fromisoformat(i["due_on"]), i["amount_fen"])
                                         for i in sug["instalments"]],
                            requested_by="li", clock=CLOCK)
        plan_id = plan.plan_id
    assert show_plan(db.engine, plan_id)["status"] == "proposed"
    with db.session() as s, pytest.raises(ValidationError, match="needs a reason"):
        cancel_plan(s, plan_id, cancelled_by="wang", reason=" ", clock=CLOCK)
    with db.session() as s:
        cancel_plan(s, plan_id, cancelled_by="wang", reason="customer moved out", clock=CLOCK)
    assert [p["status"] for p in list_plans(db.engine, account_id="C")] == ["cancelled"]
    assert count(db, "SELECT COUNT(*) FROM collection_tasks WHERE kind = 'plan_approval' "
                     "AND status = 'cancelled'") == 1
    with db.session() as s, pytest.raises(ConflictError, match="is cancelled, not awaiting"):
        approve_plan(s, plan_id, "wang", CLOCK)


def test_a_missed_instalment_breaks_the_plan_only_after_the_grace_period(db: Database) -> None:
    # given A (200 yuan due 18 January) agrees a pay plan on the 20th and pays the down payment
    setup(db, {"A": {}, "D": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 1, 20), switch, notifier)
    with db.session() as s:
        plans = {}
        for acct in ("A", "D"):
            p = propose_plan(s, account_id=acct, kind="pay_plan", down_payment_fen=4_100,
                             instalments=2, requested_by="li", clock=CLOCK)
            plans[acct] = (p.plan_id, p.total)
    for acct in ("A", "D"):
        pay(db, acct, 4_100, at(date(2026, 1, 25), 11), f"T-{acct}-1")
    # D catches up within the grace period (instalment 1 was due 19 February; grace 5 days)
    pay(db, "D", 8_000, at(date(2026, 2, 22), 11), "T-D-2")
    run(db, date(2026, 1, 21), date(2026, 2, 26), switch, notifier)
    a = [e for e in events_json(db, "A") if e["type"] in (
        "plan_agreed", "instalment_missed", "plan_broken", "dunning_level")]
    after = [(e["type"], e["at"][:10]) for e in a if e["at"] >= "2026-01-20T10"]
    # A: the miss is noted the day after, the plan breaks after the 5 grace days, dunning resumes
    assert after == [("plan_agreed", "2026-01-20"), ("instalment_missed", "2026-02-20"),
                     ("plan_broken", "2026-02-25"), ("dunning_level", "2026-02-25")]
    missed = next(e for e in events_json(db, "A") if e["type"] == "instalment_missed")
    assert (missed["due_on"], missed["grace_until"], missed["missed"]) == (
        "2026-02-19", "2026-02-24", "instalment 1")
    # D: noted, then kept — still active, no dunning since the plan
    assert plan_types(db, "D") == ["plan_agreed", "instalment_missed"]
    assert show_plan(db.engine, plans["D"][0])["status"] == "active"
    assert not [e for e in events_json(db, "D")
                if e["type"] == "dunning_level" and e["at"] >= "2026-01-20T10"]
    # D pays the rest: the plan completes
    pay(db, "D", plans["D"][1] - 12_100, at(date(2026, 3, 2), 11), "T-D-3")
    run(db, date(2026, 3, 3), date(2026, 3, 3), switch, notifier)
    assert show_plan(db.engine, plans["D"][0])["status"] == "completed"
