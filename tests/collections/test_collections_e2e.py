"""A utility's arrears life cycle, moved day by day: late fees, the ladder, the stop notice, the
lawful stop, the race with a payment, reconnection — asserting the exact events."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.collections.service import amount_due, events_json, run_day, tasks_json
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments.service import post_payments_frame
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.factories import Person, load_people

DUE = date(2026, 1, 18)
#: collector operations' events (tests/collections/test_operations.py follows them)
OPERATIONS = {"rating_changed", "task_opened", "task_assigned", "task_done", "task_escalated",
              "contact_flagged", "contact_verified"}


def at(day: date, hh: int = 9, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=BUSINESS_TZ)


def setup(db: Database, people: dict[str, dict[str, object]]) -> None:
    load_people(db, [Person(cid) for cid in people])
    clock = FixedClock(at(date(2026, 1, 3)))
    with db.engine.begin() as conn:
        for cid, opts in people.items():
            if opts.get("protected"):
                conn.execute(text("UPDATE customers SET protected = :t WHERE customer_id = :c"),
                             {"t": True, "c": cid})
            if opts.get("remote", True):
                conn.execute(text("UPDATE meters SET comm_address = :a WHERE account_id = :c"),
                             {"a": f"0000{cid[-1]}1234567"[-12:], "c": cid})
    from dianfei.db.engine import Database as _D  # noqa: F401

    with db.session() as s:
        for cid, opts in people.items():
            ledger.post_entry(s, clock=clock, account_id=cid, customer_id=cid, kind="bill",
                              amount=int(opts.get("amount", 20_000)),  # type: ignore[arg-type]
                              reference=f"{cid}-202512-1", due_on=DUE)


def pay(db: Database, cid: str, amount: int, when: datetime, tx: str) -> None:
    frame = pl.DataFrame({"channel": ["alipay"], "transaction_id": [tx], "account_id": [cid],
                          "amount": [amount], "paid_at": [when.astimezone(UTC)]},
                         schema={"channel": pl.String, "transaction_id": pl.String,
                                 "account_id": pl.String, "amount": pl.Int64,
                                 "paid_at": pl.Datetime("us", "UTC")})
    with db.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(when), source="test")


def run(db: Database, first: date, last: date, switch: FakeSwitch, notifier: FakeNotifier,
        hour: int = 9) -> None:
    day = first
    while day <= last:
        run_day(db, day, clock=FixedClock(at(day, hour)), switch=switch, notifier=notifier)
        day += timedelta(days=1)


def types(events: list[dict[str, object]], account: str) -> list[tuple[object, ...]]:
    return [(e["type"], e.get("level") or e.get("notice") or e.get("amount"))
            for e in events if e["account"] == account and e["type"] != "late_fee_accrued"
            and e["type"] not in OPERATIONS]


def lawful(events: list[dict[str, object]], classes: dict[str, str],
           protected: set[str]) -> list[str]:
    """The independent checks' rules, applied to the event history."""
    wrong = []
    for e in events:
        if e["type"] != "suspended":
            continue
        acct, when = e["account"], datetime.fromisoformat(str(e["at"]))
        if acct in protected:
            wrong.append(f"{acct} protected but suspended")
        local = when.astimezone(BUSINESS_TZ)
        if local.weekday() >= 5 or not time(8) <= local.time() < time(18):
            wrong.append(f"{acct} stopped at {local}")
        need = timedelta(days=7 if classes[str(acct)] == "residential" else 3)
        notices = [datetime.fromisoformat(str(n["at"])) for n in events
                   if n["account"] == acct and n["type"] == "notice_sent"
                   and n.get("notice") == "stop_notice" and datetime.fromisoformat(str(n["at"])) <= when]
        if not notices or when - max(notices) < need:
            wrong.append(f"{acct} stop notice too late")
    return wrong


def test_arrears_life_cycle_exact_events(db: Database) -> None:
    # given three residential customers with a 200-yuan bill due 2026-01-18 (A remote meter,
    # B protected, C without a remote-capable meter)
    setup(db, {"A": {}, "B": {"protected": True}, "C": {"remote": False}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    # when collections runs every day at 09:00 until the day the order is raised and executed
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, notifier)
    # A pays everything on Friday afternoon after the stop; the next run reconnects
    pay(db, "A", amount_due(db.engine.connect(), "A"), at(date(2026, 3, 20), 15), "T-A-1")
    run(db, date(2026, 3, 21), date(2026, 3, 22), switch, notifier)
    events = events_json(db)
    # then A went up the ladder from the day after the due date, was noticed on day 30, ordered
    # on day 60 (2026-03-19, a Thursday), stopped the next working-day run, reconnected after paying
    assert types(events, "A") == [
        ("dunning_level", "reminder"), ("notice_sent", "reminder"),
        ("dunning_level", "final_reminder"), ("notice_sent", "final_reminder"),
        ("notice_sent", "final_reminder"),
        ("dunning_level", "stop_notice"), ("notice_sent", "stop_notice"),
        ("notice_sent", "stop_notice"),
        ("dunning_level", "suspension"), ("suspension_ordered", None), ("notice_sent", "pre_stop"),
        ("suspended", None),
        ("payment_received", "212.20"),
        ("reconnection_ordered", None), ("reconnected", None), ("notice_sent", "reconnected"),
    ]
    a = {e["type"]: e for e in events if e["account"] == "A"}
    assert a["dunning_level"]["at"] == "2026-03-19T09:00:00+08:00"
    assert a["suspended"]["at"] == "2026-03-20T09:00:00+08:00"
    assert a["payment_received"]["balance_after"] == "0.00"
    assert a["reconnected"]["at"] == "2026-03-21T09:00:00+08:00"
    # late fees: 1‰ a day on 200 yuan through the payment day (61 days) = the one-shot formula
    fees = sum(int(str(e["amount"]).replace(".", "")) for e in events
               if e["account"] == "A" and e["type"] == "late_fee_accrued")
    assert fees == 1220
    # B (protected) is never noticed for a stop nor suspended; C is handed to a field crew
    assert not [e for e in events if e["account"] == "B" and e["type"] in ("suspended", "suspension_ordered")]
    assert ("dunning_level", "protected_visit") in types(events, "B")
    assert [c for c in switch.calls] == [("trip", "MA"), ("close", "MA")]
    field = [t for t in tasks_json(db) if t["kind"] == "field_stop"]
    assert [t["account"] for t in field] == ["C"]
    assert lawful(events, {"A": "residential", "B": "residential", "C": "residential"}, {"B"}) == []
    # A's supply was off from the stop to the reconnection, kept with the account (customers),
    # where the theft warnings find the month without power
    from dianfei.core.clock import Period
    from dianfei.customers.service import interrupted_periods, supply_interruptions

    off = supply_interruptions(db.engine).to_dicts()
    assert [(r["account_id"], r["reason"], r["off_at"].astimezone(BUSINESS_TZ),
             r["on_at"].astimezone(BUSINESS_TZ)) for r in off] == [
        ("A", "arrears", at(date(2026, 3, 20)), at(date(2026, 3, 21)))]
    assert interrupted_periods(db.engine, Period(2026, 1), Period(2026, 4)).to_dicts() == [
        {"account_id": "A", "period": "2026-03"}]
    # every notice the ladder and the stop rules wrote greets its customer by name (the day
    # reads the names of the notices' addressees only, not of every account in arrears)
    import json

    with db.engine.connect() as conn:
        sent = conn.execute(text("SELECT account_id, notice, context FROM notify_outbox "
                                 "WHERE account_id = 'A'")).all()
    assert {r[1] for r in sent} >= {"reminder", "final_reminder", "stop_notice", "pre_stop"}
    assert {(r[1], json.loads(r[2])["customer_name"]) for r in sent
            if r[1] != "reconnected"} == {(r[1], "用户A") for r in sent if r[1] != "reconnected"}


def test_rerunning_a_day_does_nothing_new(db: Database) -> None:
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 2, 20), switch, notifier)
    before = events_json(db)
    bal = ledger.balance(db.engine.connect(), "A")
    run_day(db, date(2026, 2, 20), clock=FixedClock(at(date(2026, 2, 20), 11)), switch=switch,
            notifier=notifier)
    assert events_json(db) == before
    assert ledger.balance(db.engine.connect(), "A") == bal


def test_notices_already_recorded_found_by_date_range_as_by_key(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # at a million accounts record_sent finds the notice_sent events already written by their
    # business dates instead of key by key: the same events, each once, and a rerun adds none
    from dianfei.collections import stops

    monkeypatch.setattr(stops, "RANGE_READ_FROM", 0)
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, notifier)
    events = events_json(db)
    assert [t for t in types(events, "A") if t[0] == "notice_sent"] == [
        ("notice_sent", "reminder"), ("notice_sent", "final_reminder"),
        ("notice_sent", "final_reminder"), ("notice_sent", "stop_notice"),
        ("notice_sent", "stop_notice"), ("notice_sent", "pre_stop")]
    run_day(db, date(2026, 3, 19), clock=FixedClock(at(date(2026, 3, 19), 11)), switch=switch,
            notifier=notifier)
    assert events_json(db) == events


def test_payment_between_order_and_execution_cancels_the_stop(db: Database) -> None:
    # given A's suspension was ordered on Thursday 2026-03-19 at 09:00
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 3, 19), switch, notifier)
    assert "suspension_ordered" in [e["type"] for e in events_json(db, "A")]
    # when the customer pays at 09:10, before the order executes (09:30 at the earliest)
    pay(db, "A", amount_due(db.engine.connect(), "A"), at(date(2026, 3, 19), 9, 10), "T-A-race")
    run(db, date(2026, 3, 20), date(2026, 3, 23), switch, notifier)
    # then the meter is never tripped and the order is cancelled
    evs = events_json(db, "A")
    assert switch.calls == []
    assert "suspended" not in [e["type"] for e in evs]
    assert [e["type"] for e in evs if e["type"].startswith("suspension")] == [
        "suspension_ordered", "suspension_cancelled"]


def test_stops_wait_for_a_working_day_in_the_window(db: Database) -> None:
    # given runs at 19:00 (outside the window), nothing is ever stopped
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 3, 25), switch, notifier, hour=19)
    assert switch.calls == []
    assert "suspended" not in [e["type"] for e in events_json(db, "A")]


def test_failed_trip_retried_then_on_the_worklist(db: Database) -> None:
    from dianfei.collections.service import process_commands

    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(fail=10), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, notifier)
    assert switch.calls == [("trip", "MA")]
    for minutes in (5, 20):  # the policy waits 5 then 15 minutes between tries
        process_commands(db, clock=FixedClock(at(date(2026, 3, 20), 9, minutes)), switch=switch)
    assert switch.calls == [("trip", "MA")] * 3
    process_commands(db, clock=FixedClock(at(date(2026, 3, 20), 10)), switch=switch)
    assert len(switch.calls) == 3  # no fourth try: failed, surfaced
    failed = [t for t in tasks_json(db) if t["kind"] == "meter_command_failed"]
    assert len(failed) == 1 and failed[0]["detail"]["attempts"] == 3
    assert "suspended" not in [e["type"] for e in events_json(db, "A")]


def test_undeliverable_stop_notice_waits_for_the_fallback_letter(db: Database) -> None:
    # given A's phone cannot receive SMS: notify replaces the legal stop notice with a letter
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier(failing={"sms"})
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, notifier)
    evs = events_json(db, "A")
    # then the notice period ran from the letter, and the lawful stop still happened
    stop = [e for e in evs if e["type"] == "notice_sent" and e["notice"] == "stop_notice"]
    # (the ladder's own stop-notice letter and the case's SMS replaced by a letter)
    assert [(e["channel"], e["at"]) for e in stop] == [("letter", "2026-02-17T09:00:00+08:00")] * 2
    assert [e["type"] for e in evs if e["type"] in ("suspension_ordered", "suspended")] == [
        "suspension_ordered", "suspended"]
    assert [t for t in tasks_json(db) if t["kind"] == "notice_failed"] == []
    assert lawful(evs, {"A": "residential"}, set()) == []


def test_stop_notice_that_cannot_go_out_at_all_goes_to_the_worklist(db: Database) -> None:
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier(failing={"sms", "letter"})
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, notifier)
    assert switch.calls == []
    assert "suspended" not in [e["type"] for e in events_json(db, "A")]
    failed = [t for t in tasks_json(db) if t["kind"] == "notice_failed"]
    assert len(failed) == 1 and failed[0]["detail"]["channel"] == "letter"
