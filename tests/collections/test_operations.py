"""Collector operations (C), moved through months by the daily run: a bounced reminder flags the
account and hands customer service a contact_update task, done → the flag clears; an account
with three late bills becomes a repeat defaulter and is dunned on the shorter ladder; an overdue
task escalates to its department's supervisor. Plus the refusals and the rating arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from dianfei.audit.service import verify
from dianfei.collections import contacts, incentives, tasks
from dianfei.collections.service import amount_due, events_json, run_day
from dianfei.core.clock import BUSINESS_TZ, Clock, FixedClock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments.service import post_payments_frame
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.factories import Person, load_people


def at(day: date, hh: int = 9, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=BUSINESS_TZ)


@dataclass
class BouncingNotifier(FakeNotifier):
    """The fake outbox, where an SMS to an account in ``bad`` is refused by the gateway as notify
    records it (failed, ``isv.MOBILE_NUMBER_ILLEGAL``)."""

    bad: set[str] = field(default_factory=set)

    def dispatch(self, db: Database, *, clock: Clock, senders: Any = None) -> None:
        now = clock.now().astimezone(UTC).replace(tzinfo=None)
        with db.engine.begin() as conn:
            for acct in sorted(self.bad):
                conn.execute(text(
                    "UPDATE notify_outbox SET status = 'failed', updated_at = :n, attempts = 1, "
                    "last_error = 'isv.MOBILE_NUMBER_ILLEGAL: not a mainland mobile number' "
                    "WHERE status = 'queued' AND channel = 'sms' AND account_id = :a"),
                    {"n": now, "a": acct})
        super().dispatch(db, clock=clock, senders=senders)


def bill(db: Database, cid: str, due: date, amount: int = 20_000) -> None:
    with db.session() as s:
        ledger.post_entry(s, clock=FixedClock(at(due - timedelta(days=15))), account_id=cid,
                          customer_id=cid, kind="bill", amount=amount,
                          reference=f"{cid}-{due:%Y%m}-1", due_on=due)


def pay_all(db: Database, cid: str, when: datetime, tx: str) -> None:
    with db.engine.connect() as conn:
        owed = amount_due(conn, cid)
    frame = pl.DataFrame({"channel": ["alipay"], "transaction_id": [tx], "account_id": [cid],
                          "amount": [owed], "paid_at": [when.astimezone(UTC)]},
                         schema={"channel": pl.String, "transaction_id": pl.String,
                                 "account_id": pl.String, "amount": pl.Int64,
                                 "paid_at": pl.Datetime("us", "UTC")})
    with db.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(when), source="test")


def of(events: list[dict[str, Any]], account: str, *types: str) -> list[dict[str, Any]]:
    return [e for e in events if e["account"] == account and e["type"] in types]


def test_months_of_operations_bounce_repeat_defaulter_escalation(db: Database) -> None:
    # given A (whose mobile number the SMS gateway refuses), B (who pays every bill 5 days late)
    # and C (a meter check handed to marketing that nobody does)
    load_people(db, [Person("A"), Person("B"), Person("C")])
    notifier, switch = BouncingNotifier(bad={"A"}), FakeSwitch()
    bill(db, "A", date(2026, 1, 18))
    dues = [date(2026, 1, 18), date(2026, 2, 18), date(2026, 3, 18), date(2026, 4, 18)]
    with db.session() as s:
        check = tasks.open_task(s, account_id="C", kind="meter_check", opened_by="li",
                                owner="wang", clock=FixedClock(at(date(2026, 1, 5), 10)),
                                key="req-1", detail={"why": "reads stopped"})
        check_id = check.task_id
    day = date(2026, 1, 3)
    while day <= date(2026, 5, 3):
        for due in dues:
            if day == due - timedelta(days=15):
                bill(db, "B", due)
            if day == due + timedelta(days=5) and due != dues[-1]:
                pay_all(db, "B", at(day, 8), f"T-B-{due:%m}")
        if day == date(2026, 1, 20):
            # customer service reaches A by the address on file: the new number is verified
            with db.session() as s:
                [t] = tasks.list_tasks(s, clock=FixedClock(at(day, 10)), kind="contact_update",
                                       account_id="A")
                assert t["department"] == "customer_service" and t["status"] == "open"
                tasks.complete_task(s, t["task_id"], outcome="contact_verified", by="zhao",
                                    clock=FixedClock(at(day, 8, 30)))
            notifier.bad.discard("A")
        if day == date(2026, 1, 21):
            pay_all(db, "A", at(day, 8), "T-A-1")
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
        day += timedelta(days=1)
    events = events_json(db)

    # then A: the bounce flagged the phone and opened one contact_update task; done, it cleared
    flagged = of(events, "A", "contact_flagged")
    assert [(e["reason"], e["field"], e["at"]) for e in flagged] == [
        ("bounced", "phone", "2026-01-19T09:00:00+08:00")]
    assert flagged[0]["error"].startswith("isv.MOBILE_NUMBER_ILLEGAL")
    a_tasks = of(events, "A", "task_opened", "task_done")
    assert [(e["type"], e["kind"], e.get("department") or e.get("outcome")) for e in a_tasks] == [
        ("task_opened", "contact_update", "customer_service"),
        ("task_done", "contact_update", "contact_verified")]
    [verified] = of(events, "A", "contact_verified")
    assert (verified["field"], verified["by"], verified["at"]) == (
        "phone", "zhao", "2026-01-20T08:30:00+08:00")
    assert contacts.flags_json(db.engine, "open") == []
    status = contacts.contact_status(db.engine, ["A", "B"]).sort("account_id").to_dicts()
    assert status == [{"account_id": "A", "contact_flag": None, "phone_verified": True},
                      {"account_id": "B", "contact_flag": None, "phone_verified": False}]
    cov = {r["station_id"]: r for r in contacts.coverage(db.engine)}
    assert (cov["S1"]["accounts"], cov["S1"]["phone_verified"], cov["S1"]["verified_share"]) == (
        3, 1, "0.3333")

    # B: three bills paid late make a repeat defaulter (rating falls, a prepayment proposal),
    # and the fourth bill is dunned on the shorter ladder: the stop notice at 15 days, not 30
    rating = incentives.rating_of(db.engine, "B")
    assert (rating["late"], rating["repeat_defaulter"]) == (4, True)
    changes = [(e["from"], e["to"], e["at"][:10]) for e in of(events, "B", "rating_changed")]
    assert changes[0][:2] == ("B", "C") and changes[-1][1] == "D"
    [proposal] = [e for e in of(events, "B", "task_opened") if e["kind"] == "prepay_conversion"]
    # (the third late fee starts accruing in the 19 March run, after that day's rating)
    assert proposal["at"] == "2026-03-20T09:00:00+08:00" and proposal["department"] == "marketing"
    april = [(e["level"], e["ladder"], e["at"][:10]) for e in of(events, "B", "dunning_level")
             if e["at"] >= "2026-04-19"]
    assert april == [("reminder", "repeat_defaulter", "2026-04-19"),
                     ("final_reminder", "repeat_defaulter", "2026-04-23"),
                     ("stop_notice", "repeat_defaulter", "2026-05-03")]
    # the ladder's collector visit went to the collections department like any other task
    with db.session() as s:
        visits = tasks.list_tasks(s, clock=FixedClock(at(date(2026, 5, 3))), status=None,
                                  kind="collector_visit", account_id="B")
    assert visits and {t["department"] for t in visits} == {"collections"}
    report = {r["segment"]: r for r in incentives.report(db.engine)}
    assert report["repeat_defaulter"]["accounts"] == 1
    assert report["repeat_defaulter"]["proposals"]["prepay_conversion"] == {"open": 1, "done": 0}

    # C: the meter check was due on 10 January; the 11th's run escalated it, once
    [esc] = of(events, "C", "task_escalated")
    assert (esc["task_id"], esc["escalated_to"], esc["at"]) == (
        check_id, "marketing_supervisor", "2026-01-11T09:00:00+08:00")
    with db.session() as s:
        late = tasks.list_tasks(s, clock=FixedClock(at(date(2026, 5, 3))), overdue=True,
                                department="marketing", kind="meter_check")
    assert [(t["task_id"], t["owner"], t["escalated_to"], t["overdue"]) for t in late] == [
        (check_id, "wang", "marketing_supervisor", True)]
    # every staff decision is in the audit chain, and the chain holds
    with db.engine.connect() as conn:
        actions = [r[0] for r in conn.execute(text(
            "SELECT action FROM audit_records WHERE action LIKE 'task.%' OR action LIKE 'contact.%' "
            "ORDER BY seq"))]
    assert {"task.opened", "task.done", "task.escalated", "contact.verified"} <= set(actions)
    assert verify(db.engine).intact

    # a re-run of the last day records nothing new
    before = len(events_json(db))
    run_day(db, date(2026, 5, 3), clock=FixedClock(at(date(2026, 5, 3))), switch=switch,
            notifier=notifier)
    assert len(events_json(db)) == before


def test_missing_phone_flags_then_a_verified_update_clears(db: Database) -> None:
    load_people(db, [Person("D"), Person("E", customer_class="commercial",
                                          tariff_id="cn-zj-commercial")])
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET phone_enc = NULL WHERE customer_id = 'D'"))
    day = date(2026, 2, 2)
    clock = FixedClock(at(day))
    assert contacts.check_contacts(db, day, clock=clock) == {"flagged": 2, "tasks": 2}
    # a second look the same day (or the next) adds nothing: the fields are already flagged
    assert contacts.check_contacts(db, day + timedelta(days=1),
                                   clock=FixedClock(at(day + timedelta(days=1)))) == {
        "flagged": 0, "tasks": 0}
    flags = {(f["account_id"], f["reason"], f["field"]) for f in contacts.flags_json(db.engine)}
    assert flags == {("D", "missing_phone", "phone"), ("E", "missing_email", "email")}
    # nothing on file to verify: refused, naming the field; a bad number: refused; nothing stored
    with db.session() as s, pytest.raises(ValidationError, match="no phone on file"):
        contacts.verify_contact(s, account_id="D", field="phone", verified_by="zhao", clock=clock)
    with db.session() as s, pytest.raises(ValidationError, match="not a mainland mobile"):
        contacts.verify_contact(s, account_id="D", field="phone", verified_by="zhao", clock=clock,
                                value="12345")
    with db.session() as s, pytest.raises(ValidationError, match="field must be one of"):
        contacts.verify_contact(s, account_id="D", field="fax", verified_by="zhao", clock=clock)
    with db.session() as s, pytest.raises(NotFoundError):
        contacts.verify_contact(s, account_id="ZZ", field="phone", verified_by="zhao",
                                clock=clock, value="13912345678")
    assert len(contacts.flags_json(db.engine)) == 2
    with db.session() as s:
        out = contacts.verify_contact(s, account_id="D", field="phone", verified_by="zhao",
                                      clock=FixedClock(at(day, 11)), value="139 1234 5678")
    assert out["flags_closed"] and len(out["tasks_done"]) == 1
    assert [f["account_id"] for f in contacts.flags_json(db.engine)] == ["E"]
    st_ = contacts.contact_status(db.engine, ["D", "E"]).sort("account_id").to_dicts()
    assert st_ == [{"account_id": "D", "contact_flag": None, "phone_verified": True},
                   {"account_id": "E", "contact_flag": "missing_email", "phone_verified": False}]
    # the next day's look: D has a phone now, so no new flag
    assert contacts.check_contacts(db, day + timedelta(days=2),
                                   clock=FixedClock(at(day + timedelta(days=2)))) == {
        "flagged": 0, "tasks": 0}


def test_task_actions_refuse_bad_requests_and_store_retries_once(db: Database) -> None:
    load_people(db, [Person("A")])
    clock = FixedClock(at(date(2026, 3, 2), 10))
    with db.session() as s:
        t = tasks.open_task(s, account_id="A", kind="billing_correction", opened_by="li",
                            clock=clock, key="req-7")
        again = tasks.open_task(s, account_id="A", kind="billing_correction", opened_by="li",
                                clock=clock, key="req-7")
        assert again.task_id == t.task_id and t.department == "marketing"
        assert t.due_at == clock.now() + timedelta(days=5)
        tid = t.task_id
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"kind": "teleport"}, ValidationError, "task kind must be one of"),
        ({"account_id": "NOPE"}, NotFoundError, "account NOPE does not exist"),
        ({"key": "req-7", "kind": "meter_check"}, ConflictError, "already opened task"),
        ({"due_at": clock.now() - timedelta(hours=1)}, ValidationError, "is not after now"),
        ({"opened_by": " "}, ValidationError, "who opens it")]
    for change, err, says in bad:
        args: dict[str, Any] = {"account_id": "A", "kind": "meter_check", "opened_by": "li",
                                "clock": clock, **change}
        with db.session() as s, pytest.raises(err, match=says):
            tasks.open_task(s, **args)
    with db.session() as s:
        with pytest.raises(ValidationError, match="department must be one of"):
            tasks.assign_task(s, tid, owner="wang", by="li", clock=clock, department="canteen")
        tasks.assign_task(s, tid, owner="wang", by="li", clock=clock, department="collections")
        tasks.assign_task(s, tid, owner="wang", by="li", clock=clock, department="collections")
        with pytest.raises(ValidationError, match="outcome of a billing_correction task must be one of"):
            tasks.complete_task(s, tid, outcome="lunch", by="wang", clock=clock)
        done = tasks.complete_task(s, tid, outcome="corrected", by="wang", clock=clock)
        assert (done.status, done.outcome, done.owner, done.department) == (
            "done", "corrected", "wang", "collections")
    with db.session() as s:
        with pytest.raises(ConflictError, match="already done"):
            tasks.complete_task(s, tid, outcome="corrected", by="wang", clock=clock)
        with pytest.raises(ConflictError, match="only open tasks"):
            tasks.assign_task(s, tid, owner="li", by="li", clock=clock)
        with pytest.raises(NotFoundError):
            tasks.complete_task(s, 999, outcome="corrected", by="wang", clock=clock)
    evs = [(e["type"], e.get("owner") or e.get("outcome")) for e in events_json(db, "A")]
    assert evs == [("task_opened", None), ("task_assigned", "wang"), ("task_done", "corrected")]


# -- the rules and the arithmetic ----------------------------------------------------------------


def test_rules_files_load_and_bad_ones_are_refused() -> None:
    r = tasks.rules()
    assert r.kind("contact_update").department == "customer_service"
    assert r.departments["marketing"].supervisor == "marketing_supervisor"
    with pytest.raises(ValidationError, match="kind 'x' names department 'hr'"):
        tasks.parse_rules('[departments.a]\nsupervisor = "s"\n[kinds.x]\ndepartment = "hr"\n'
                          'due_days = 1\noutcomes = ["ok"]', "t.toml")
    with pytest.raises(ValidationError, match="due_days must be a whole number"):
        tasks.parse_rules('[departments.a]\nsupervisor = "s"\n[kinds.x]\ndepartment = "a"\n'
                          'due_days = 0\noutcomes = ["ok"]', "t.toml")
    ir = incentives.rules()
    assert [g for g, _ in ir.grades] == ["A", "B", "C", "D"]
    text_ = incentives.RULES_FILE.read_text(encoding="utf-8")
    with pytest.raises(ValidationError, match=r"\[\[grades\]\] must go"):
        incentives.parse_rules(text_.replace("min_points = 0", "min_points = 10"), "i.toml")


def _facts(rows: list[tuple[int, int, int, int, bool]]) -> pl.DataFrame:
    return pl.DataFrame([{"account_id": f"X{i}", "customer_id": f"X{i}", "on_time": a, "late": b,
                          "broken": c, "suspensions": d, "low_income": e}
                         for i, (a, b, c, d, e) in enumerate(rows)],
                        schema={"account_id": pl.String, "customer_id": pl.String,
                                "on_time": pl.Int64, "late": pl.Int64, "broken": pl.Int64,
                                "suspensions": pl.Int64, "low_income": pl.Boolean})


counts = st.integers(min_value=0, max_value=12)


@given(st.lists(st.tuples(counts, counts, counts, counts, st.booleans()), min_size=1, max_size=30))
def test_rating_points_are_bounded_graded_by_threshold_and_spare_low_income(
        rows: list[tuple[int, int, int, int, bool]]) -> None:
    r = incentives.rules()
    out = incentives.rate_frame(_facts(rows), r)
    for (on_time, late, broken, susp, low), got in zip(rows, out.iter_rows(named=True), strict=True):
        expect = r.base_points + min(on_time * r.on_time, r.on_time_cap) + late * r.late \
            + broken * r.broken + susp * r.suspension
        assert got["points"] == max(0, min(100, expect))
        assert got["grade"] == next(g for g, low_pts in r.grades if got["points"] >= low_pts)
        repeat = late >= r.min_late or broken >= r.min_broken or susp >= r.min_suspensions
        assert got["repeat_defaulter"] == (repeat and not low)


@given(st.lists(st.tuples(counts, counts, counts, counts, st.just(False)), min_size=2, max_size=2))
def test_one_more_late_bill_never_raises_the_rating(rows: list[tuple[int, int, int, int, bool]]) -> None:
    a = rows[0]
    worse = (a[0], a[1] + 1, a[2], a[3], a[4])
    out = incentives.rate_frame(_facts([a, worse]), incentives.rules())
    assert out["points"][1] <= out["points"][0]


@given(st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31)),
       st.integers(min_value=1, max_value=36))
def test_the_window_starts_months_back_on_the_same_day_or_the_months_last(
        day: date, months: int) -> None:
    start = incentives.window_start(day, months)
    assert (day.year * 12 + day.month) - (start.year * 12 + start.month) == months
    assert start.day == day.day or (start.day < day.day and (start + timedelta(days=1)).day == 1)


def test_bill_hook_and_portal_read_the_rating(db: Database) -> None:
    load_people(db, [Person("A")])
    r = incentives.rate_accounts(db, date(2026, 3, 1), clock=FixedClock(at(date(2026, 3, 1))))
    assert (r["rated"], r["rating_changes"], r["repeat_defaulters"]) == (1, 0, 0)
    assert incentives.rating_of(db.engine, "A")["grade"] == "B"
    from dianfei.billing.documents import RATING_HOOK, load_forecaster

    hook = load_forecaster(RATING_HOOK)
    assert hook is not None
    assert hook(db.engine, ["A", "Z"], None) == {"A": {"grade": "B", "points": "60",
                                                        "as_of": "2026-03-01"}}
    with pytest.raises(NotFoundError, match="no credit rating"):
        incentives.rating_of(db.engine, "Z")



def test_tasks_raised_by_other_modules_are_routed_once(db: Database) -> None:
    load_people(db, [Person("A")])
    raised = at(date(2026, 3, 2), 9).astimezone(UTC).replace(tzinfo=None)
    with db.engine.begin() as conn:
        for key, kind in (("v:1", "meter_check"), ("v:2", "plan_offer"), ("x:1", "mystery")):
            conn.execute(text(
                "INSERT INTO collection_tasks (key, account_id, customer_id, kind, status, "
                "created_at) VALUES (:k, 'A', 'A', :kind, 'open', :at)"),
                {"k": key, "kind": kind, "at": raised})
    clock = FixedClock(at(date(2026, 3, 2), 10))
    with db.session() as s:
        assert tasks.route_new_tasks(s, clock=clock) == 3
        assert tasks.route_new_tasks(s, clock=clock) == 0
        got = {t["kind"]: (t["department"], t["due_at"])
               for t in tasks.list_tasks(s, clock=clock, account_id="A")}
    assert got == {"meter_check": ("marketing", "2026-03-07T09:00:00+08:00"),
                   "plan_offer": ("collections", "2026-03-09T09:00:00+08:00"),
                   "mystery": ("collections", None)}
    opened = [e for e in events_json(db, "A") if e["type"] == "task_opened"]
    assert [(e["kind"], e["at"]) for e in opened] == [
        ("meter_check", "2026-03-02T09:00:00+08:00"), ("plan_offer", "2026-03-02T09:00:00+08:00"),
        ("mystery", "2026-03-02T09:00:00+08:00")]
