"""Visits and calls: every outcome's follow-up, retries stored once, refusals that store nothing;
tickets: SLA in working days, escalation, decision; surveys; the ladder's promise columns."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from dianfei.collections.fieldwork_models import CollectionVisit, PaymentPromise
from dianfei.collections.fieldwork_rules import fieldwork_policy
from dianfei.collections.ladder import evaluate, ladders
from dianfei.collections.models import CollectionEvent, CollectionTask
from dianfei.collections.promises import next_level_days
from dianfei.collections.service import events_json, run_day
from dianfei.collections.surveys import record_survey
from dianfei.collections.ticket_models import Ticket
from dianfei.collections.tickets import TicketLinks, decide, escalate_overdue, open_ticket
from dianfei.collections.visits import record_visit, visit_json
from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, setup

NOW = at(date(2026, 1, 30), 11)  # a Friday
CLOCK = FixedClock(NOW)


def visit(db: Database, request_id: str = "r1", **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"request_id": request_id, "account_id": "A", "collector_id": "K1",
                            "channel": "visit", "outcome": "refused", "at": at(date(2026, 1, 30), 10),
                            "recorded_by": "zhang", "clock": CLOCK}
    args.update(kw)
    with db.session() as s:
        return visit_json(record_visit(s, **args))


def counts(db: Database) -> tuple[int, ...]:
    with db.engine.connect() as c:
        return tuple(int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in (
            "collection_visits", "payment_promises", "service_tickets", "collection_tasks",
            "collection_events", "audit_records"))


@pytest.fixture
def owing(db: Database) -> Database:
    setup(db, {"A": {}, "B": {}})  # 200 yuan due 2026-01-18
    return db


@pytest.mark.parametrize(("outcome", "kind", "department"), [
    ("hardship", "plan_offer", "plan_team"), ("wrong_contact", "contact_update", "customer_service"),
    ("vacant", "meter_check", "marketing")])
def test_outcome_opens_the_task_for_its_department(owing: Database, outcome: str, kind: str,
                                                   department: str) -> None:
    out = visit(owing, outcome=outcome, note="见面谈")
    with owing.session() as s:
        task = s.scalars(select(CollectionTask)).one()
    assert (task.kind, task.key, task.account_id) == (kind, f"visit:{out['visit_id']}:{kind}", "A")
    assert f'"department": "{department}"' in (task.detail or "")
    ev = [e for e in events_json(owing, "A") if e["type"] == "visit_recorded"]
    assert [(e["outcome"], e["collector"], e["visit_id"]) for e in ev] == [
        (outcome, "K1", out["visit_id"])]


def test_promise_is_stored_with_the_level_it_stood_at_and_retries_return_it(owing: Database) -> None:
    run_day(owing, date(2026, 1, 29), clock=FixedClock(at(date(2026, 1, 29))), switch=FakeSwitch(),
            notifier=FakeNotifier())
    first = visit(owing, outcome="promise", promise_on=date(2026, 2, 5), promise_amount_fen=7_000)
    assert first["promise"] == {"promise_id": 1, "due_on": "2026-02-05", "amount": "70.00",
                                "status": "open", "level_at": "final_reminder"}
    before = counts(owing)
    again = visit(owing, outcome="promise", promise_on=date(2026, 2, 5), promise_amount_fen=7_000)
    assert (again["visit_id"], again["promise"], again["replayed"]) == (
        first["visit_id"], first["promise"], True)
    assert counts(owing) == before
    made = [e for e in events_json(owing, "A") if e["type"] == "promise_made"]
    assert [(e["amount"], e["due_on"]) for e in made] == [("70.00", "2026-02-05")]
    # the same request id for another account is a conflict, not a silent replay
    with pytest.raises(ConflictError, match=r"r1.*already used"):
        visit(owing, account_id="B")


def test_dispute_becomes_a_ticket_linked_to_visit_and_bill(owing: Database) -> None:
    out = visit(owing, outcome="dispute", bill_id="A-202512-1", note="账单有误")
    with owing.session() as s:
        t = s.get(Ticket, out["ticket_id"])
        assert t is not None
        assert (t.category, t.status, t.bill_id, t.visit_id, t.account_id, t.opened_by) == (
            "billing_dispute", "open", "A-202512-1", out["visit_id"], "A", "zhang")
        # three working days from a Friday: Mon, Tue, Wed → due at Thursday 00:00
        assert t.sla_due_at == at(date(2026, 2, 5), 0)


@pytest.mark.parametrize(("kw", "rule"), [
    ({"account_id": "NOPE"}, "account NOPE does not exist"),
    ({"collector_id": "K9"}, "collector 'K9' is not in the collectors register"),
    ({"outcome": "moved"}, "visit outcome must be one of paid, promise.*got 'moved'"),
    ({"channel": "letter"}, "visit channel must be one of visit, call, got 'letter'"),
    ({"outcome": "promise", "promise_on": date(2026, 1, 29), "promise_amount_fen": 10_000},
     r"cannot be dated in the past: 2026-01-29 is before today \(2026-01-30\)"),
    ({"outcome": "promise", "promise_on": date(2026, 2, 5)}, "needs a date and an amount"),
    ({"outcome": "promise", "promise_amount_fen": 10_000}, "needs a date and an amount"),
    ({"outcome": "promise", "promise_on": date(2026, 2, 5), "promise_amount_fen": 0},
     "positive number of fen, got 0"),
    ({"outcome": "promise", "promise_on": date(2026, 3, 1), "promise_amount_fen": 10_000},
     r"at most 14 days ahead \(by 2026-02-13\), got 2026-03-01"),
    ({"outcome": "promise", "promise_on": date(2026, 2, 5), "promise_amount_fen": 5_000},
     "at least 30.*owes.*at least"),
    ({"outcome": "paid", "promise_amount_fen": 5_000}, "belongs to outcome 'promise', not 'paid'"),
    ({"outcome": "dispute"}, "names the disputed bill"),
    ({"outcome": "dispute", "bill_id": "X-1"}, "no bill entry for X-1"),
    ({"at": at(date(2026, 1, 30), 12)}, "in the future"),
])
def test_refusals_name_the_rule_and_store_nothing(owing: Database, kw: dict[str, Any],
                                                  rule: str) -> None:
    before = counts(owing)
    with pytest.raises((ValidationError, NotFoundError), match=rule):
        visit(owing, **kw)
    assert counts(owing) == before


def test_visits_are_insert_only(owing: Database) -> None:
    visit(owing)
    with pytest.raises(Exception, match="insert-only"), owing.engine.begin() as c:
        c.execute(text("UPDATE collection_visits SET outcome = 'paid'"))
    with pytest.raises(Exception, match="insert-only"), owing.engine.begin() as c:
        c.execute(text("DELETE FROM collection_visits"))


def test_ticket_escalates_after_its_sla_and_decision_is_recorded(owing: Database) -> None:
    with owing.session() as s:
        t = open_ticket(s, request_id="t1", account_id="A", category="notice_complaint",
                        opened_by="desk", clock=CLOCK, summary="通知太晚",
                        links=TicketLinks(notice_key="notify:dun:A"), sla_working_days=1)
        tid = t.ticket_id
        assert t.sla_due_at == at(date(2026, 2, 3), 0)  # Monday's end
        again = open_ticket(s, request_id="t1", account_id="A", category="notice_complaint",
                            opened_by="desk", clock=CLOCK)
        assert again.ticket_id == tid
    with owing.session() as s:  # not yet: Monday 23:00
        assert escalate_overdue(s, clock=FixedClock(at(date(2026, 2, 2), 23))) == 0
    with owing.session() as s:
        assert escalate_overdue(s, clock=FixedClock(at(date(2026, 2, 3), 9))) == 1
        assert escalate_overdue(s, clock=FixedClock(at(date(2026, 2, 3), 10))) == 0
    with owing.session() as s:
        decide(s, tid, decision="apologised; notices now 7 days ahead", decided_by="li",
               clock=FixedClock(at(date(2026, 2, 4), 9)))
        with pytest.raises(ConflictError, match="already decided"):
            decide(s, tid, decision="again", decided_by="li", clock=CLOCK)
    ev = [(e["type"], e.get("to") or e.get("by")) for e in events_json(owing, "A")
          if e["type"].startswith("ticket_")]
    assert ev == [("ticket_opened", "desk"), ("ticket_escalated", "supervisor"),
                  ("ticket_decided", "li")]
    with owing.engine.connect() as c:
        actions = c.execute(text("SELECT action FROM audit_records WHERE action LIKE 'ticket.%' "
                                 "ORDER BY seq")).scalars().all()
    assert actions == ["ticket.opened", "ticket.escalated", "ticket.decided"]


def test_ticket_refusals(owing: Database) -> None:
    with owing.session() as s:
        with pytest.raises(ValidationError, match=r"must be one of.*got 'rant'"):
            open_ticket(s, request_id="x", account_id="A", category="rant", opened_by="d", clock=CLOCK)
        with pytest.raises(ValidationError, match="names the disputed bill"):
            open_ticket(s, request_id="x", account_id="A", category="billing_dispute",
                        opened_by="d", clock=CLOCK)
        with pytest.raises(ValidationError, match="at least 1 working day, got 0"):
            open_ticket(s, request_id="x", account_id="A", category="service", opened_by="d",
                        clock=CLOCK, sla_working_days=0)
        with pytest.raises(NotFoundError, match="account Z does not exist"):
            open_ticket(s, request_id="x", account_id="Z", category="service", opened_by="d",
                        clock=CLOCK)


def test_surveys_after_visit_and_ticket_feed_satisfaction(owing: Database) -> None:
    from dianfei.collections.surveys import surveys_between
    from dianfei.collections.tickets import tickets_between

    v = visit(owing)
    with owing.session() as s:
        t = open_ticket(s, request_id="t", account_id="A", category="collector_complaint",
                        opened_by="desk", clock=CLOCK)
        tid = t.ticket_id
        with pytest.raises(ValidationError, match="survey follows the decision"):
            record_survey(s, request_id="s0", subject="ticket", subject_id=tid, score=4,
                          recorded_by="desk", clock=CLOCK)
        decide(s, tid, decision="collector coached", decided_by="li", clock=CLOCK)
        record_survey(s, request_id="s1", subject="ticket", subject_id=tid, score=4,
                      recorded_by="desk", clock=CLOCK)
        record_survey(s, request_id="s2", subject="visit", subject_id=v["visit_id"], score=2,
                      recorded_by="desk", clock=CLOCK)
        record_survey(s, request_id="s2", subject="visit", subject_id=v["visit_id"], score=2,
                      recorded_by="desk", clock=CLOCK)  # a retry: stored once
        with pytest.raises(ConflictError, match="already has a survey"):
            record_survey(s, request_id="s3", subject="visit", subject_id=v["visit_id"], score=5,
                          recorded_by="desk", clock=CLOCK)
        with pytest.raises(ValidationError, match=r"score 1\.\.5, got 6"):
            record_survey(s, request_id="s4", subject="visit", subject_id=v["visit_id"], score=6,
                          recorded_by="desk", clock=CLOCK)
        with pytest.raises(NotFoundError, match="no stop case 9"):
            record_survey(s, request_id="s5", subject="reconnection", subject_id=9, score=3,
                          recorded_by="desk", clock=CLOCK)
    since, until = at(date(2026, 1, 1), 0), at(date(2026, 2, 1), 0)
    assert tickets_between(owing.engine, since, until)["satisfaction"].to_list() == [4]
    assert surveys_between(owing.engine, since, until).to_dicts() == [
        {"customer_id": "A", "satisfaction": 2}]
    assert [e["score"] for e in events_json(owing, "A") if e["type"] == "survey"] == [4, 2]


def test_a_visit_records_in_the_audit_chain(owing: Database) -> None:
    from dianfei.audit.service import verify

    visit(owing, outcome="vacant")
    with owing.engine.connect() as c:
        n = c.execute(text("SELECT count(*) FROM audit_records WHERE action = 'visit.recorded'")
                      ).scalar_one()
    assert n == 1
    assert verify(owing.engine).intact


def test_evaluation_pauses_for_open_promises_and_reads_ladder_days() -> None:
    snap = pl.DataFrame({
        "account_id": ["A", "B", "C"], "customer_class": ["residential"] * 3,
        "segment": ["standard"] * 3, "days_overdue": [15, 15, 15],
        "amount_overdue": [10_000] * 3, "risk_band": ["low"] * 3, "protected": [False] * 3,
        "open_plan": [False] * 3, "open_promise": [False, True, False], "ladder_days": [15, 15, 30]})
    assert evaluate(snap, ladders())["level"].to_list() == ["final_reminder", None, "stop_notice"]


def test_next_level_is_the_first_day_of_the_level_above() -> None:
    ls = ladders()
    assert next_level_days(ls, "residential", "reminder") == 10
    assert next_level_days(ls, "residential", "final_reminder") == 30
    assert next_level_days(ls, "residential", "referral") == 180  # the top stays the top
    assert next_level_days(ls, "residential", None) is None
    assert next_level_days(ls, "residential", "gone") is None


@settings(deadline=None)
@given(st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 31)),
       st.integers(min_value=1, max_value=30))
def test_working_days_skip_weekends_and_holidays(start: date, n: int) -> None:
    pol = fieldwork_policy()
    end = pol.add_working_days(start, n)
    between = [start + timedelta(days=i) for i in range(1, (end - start).days + 1)]
    # exactly n working days after the start, the last of them the end itself
    assert sum(pol.is_working_day(d) for d in between) == n
    assert pol.is_working_day(end)
    assert all(d.weekday() < 5 and d not in pol.holidays for d in between if pol.is_working_day(d))
    # the SLA deadline is the midnight after that day, never earlier than n calendar days
    assert pol.sla_due_at(at(start, 10), n) == at(end + timedelta(days=1), 0)
    assert end - start >= timedelta(days=n)


def test_promise_rows_are_counted(owing: Database) -> None:
    visit(owing, outcome="promise", promise_on=date(2026, 2, 2), promise_amount_fen=20_000)
    with owing.session() as s:
        assert s.scalar(select(func.count()).select_from(PaymentPromise)) == 1
        assert s.scalar(select(func.count()).select_from(CollectionVisit)) == 1
        assert s.scalar(select(func.count()).select_from(CollectionEvent)) == 2


@settings(deadline=None)
@given(st.data())
def test_a_broken_promise_always_lands_above_where_the_account_stood(data: st.DataObject) -> None:
    # any packaged ladder, any level an account can stand at (its band and protection drawn from
    # that level's), any days overdue within the level: the floor of the next level puts it on a
    # level strictly above — or, when no level above applies to it, not below where it stood
    ld = data.draw(st.sampled_from(ladders()))
    stood = data.draw(st.sampled_from(ld.levels))
    band = data.draw(st.sampled_from(sorted(stood.risk_bands)))
    protected = data.draw(st.sampled_from(sorted(stood.protected)))
    floor = next_level_days(ladders(), ld.ladder_id, stood.name)
    assert floor is not None
    days = data.draw(st.integers(min_value=stood.min_days, max_value=min(stood.max_days, 400)))
    snap = pl.DataFrame({
        "account_id": ["X"], "customer_class": [sorted(ld.customer_classes)[0]],
        "segment": [sorted(ld.segments)[0]], "days_overdue": [days], "amount_overdue": [10_000],
        "risk_band": [band], "protected": [protected], "open_plan": [False],
        "open_promise": [False], "ladder_days": [max(days, floor)]})
    got = evaluate(snap, ladders())["level"][0]
    assert got is not None
    above = [lv for lv in ld.levels if lv.min_days > stood.min_days and band in lv.risk_bands
             and protected in lv.protected]
    if above:
        assert ld.level(got).min_days > stood.min_days
    else:
        assert ld.level(got).min_days >= stood.min_days


def test_survey_after_a_reconnection_only(owing: Database) -> None:
    from dianfei.collections.models import StopCase

    with owing.session() as s:
        case = StopCase(account_id="A", customer_id="A", customer_class="residential",
                        bill_id="A-202512-1", mode="postpaid", status="closed", opened_at=NOW,
                        notice_key="k", closed_reason="paid")
        s.add(case)
        s.flush()
        with pytest.raises(ValidationError, match="was not reconnected"):
            record_survey(s, request_id="s1", subject="reconnection", subject_id=case.case_id,
                          score=5, recorded_by="desk", clock=CLOCK)
        case.reconnected_at = NOW
        got = record_survey(s, request_id="s1", subject="reconnection", subject_id=case.case_id,
                            score=5, recorded_by="desk", clock=CLOCK)
        assert (got.account_id, got.customer_id, got.score) == ("A", "A", 5)
    assert [(e["subject"], e["score"]) for e in events_json(owing, "A") if e["type"] == "survey"] == [
        ("reconnection", 5)]


def test_the_latest_closed_promise_decides_the_ladder_days(owing: Database) -> None:
    """The ladder reads the account's latest closed promise (by closing day, then id), chosen in
    the database; a promise made after the clock's now (a replayed day) is not seen, and neither
    an open one's closing."""
    from dianfei.collections.context import Context, DayReport
    from dianfei.collections.promises import ladder_columns
    from dianfei.collections.rules import policy, with_settings

    day = date(2026, 2, 20)

    def promise(visit_id: int, account: str, made: date, status: str,
                closed: date | None) -> PaymentPromise:
        return PaymentPromise(visit_id=visit_id, account_id=account, customer_id=account,
                              made_at=at(made, 10), made_on=made, due_on=made + timedelta(days=5),
                              amount=100, ladder_at="residential", level_at="stop_notice",
                              status=status, closed_on=closed)

    with owing.session() as s:
        s.add_all([
            # A: kept on the 10th, then broken on the 15th (the broken one decides), then one made
            # after now and kept "later" (not seen by a run at 09:00 on the 20th)
            promise(1, "A", date(2026, 2, 5), "kept", date(2026, 2, 10)),
            promise(2, "A", date(2026, 2, 8), "broken", date(2026, 2, 15)),
            promise(3, "A", date(2026, 2, 20), "kept", date(2026, 2, 20)),
            # B: broken first, then kept the same day with a higher id (the kept one decides)
            promise(4, "B", date(2026, 2, 1), "broken", date(2026, 2, 12)),
            promise(5, "B", date(2026, 2, 2), "kept", date(2026, 2, 12)),
        ])
    clock = FixedClock(at(day, 9))
    ctx = Context(owing, day, clock, with_settings(policy(), {}), ladders(), FakeNotifier(), None,
                  DayReport(day))
    snap = pl.DataFrame({"account_id": ["A", "B"], "days_overdue": [33, 33],
                         "oldest_due": [date(2026, 1, 18)] * 2})
    got = dict(ladder_columns(ctx, snap).select("account_id", "ladder_days").iter_rows())
    assert next_level_days(ladders(), "residential", "stop_notice") == 60
    # A: broken → the level above where it stood (had the later one been seen: restarted, 0);
    # B: kept on the 12th → restarted, 8 days (had the broken one decided: 60)
    assert got == {"A": 60, "B": 8}


def test_a_wrong_contact_visit_flags_the_phone_the_next_check(owing: Database) -> None:
    """The daily contact check finds the visits of its look-back days (the business-date index,
    then their type) and flags the phone of the account a collector found unreachable, once."""
    from dianfei.collections.contacts import check_contacts

    visit(owing, outcome="wrong_contact")
    visit(owing, request_id="r2", account_id="B", outcome="refused")
    day = date(2026, 1, 31)
    check = FixedClock(at(day, 9))
    assert check_contacts(owing, day, clock=check)["flagged"] >= 1
    with owing.engine.connect() as c:
        flags = c.execute(text("SELECT account_id, reason, field FROM contact_flags "
                               "WHERE reason = 'wrong_contact'")).all()
        assert [tuple(f) for f in flags] == [("A", "wrong_contact", "phone")]
    assert check_contacts(owing, day, clock=check)["flagged"] == 0  # once
