"""Field work moved through two months of daily runs: a promise broken puts the account back a
level higher, a kept one resets its ladder, a dispute pauses its bill's dunning until decided."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from dianfei.collections.models import DunningState
from dianfei.collections.service import events_json, run_day
from dianfei.collections.tickets import decide
from dianfei.collections.visits import record_visit
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, pay, run, setup


def state(db: Database) -> dict[str, tuple[str, str]]:
    with db.session() as s:
        return {d.account_id: (d.level, d.bill_id) for d in s.scalars(select(DunningState))}


def levels(db: Database, account: str) -> list[tuple[str, str, str]]:
    return [(e["at"][:10], e["level"], e["bill_id"]) for e in events_json(db, account)
            if e["type"] == "dunning_level"]


def test_two_months_of_promises_and_a_dispute(db: Database) -> None:
    # given three residential customers with a 200-yuan bill due 2026-01-18; C has a second bill
    setup(db, {"A": {}, "B": {}, "C": {}})
    with db.session() as s:
        ledger.post_entry(s, clock=FixedClock(at(date(2026, 2, 3))), account_id="C",
                          customer_id="C", kind="bill", amount=10_000, reference="C-202601-1",
                          due_on=date(2026, 2, 18))
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 1, 30), switch, notifier)
    assert {a: lv for a, (lv, _) in state(db).items()} == {
        "A": "final_reminder", "B": "final_reminder", "C": "final_reminder"}
    # when on Friday 2026-01-30 the collector visits: A and B promise to pay by 2026-02-05,
    # C disputes its December bill
    visit_at = at(date(2026, 1, 30), 10)
    clock = FixedClock(at(date(2026, 1, 30), 11))
    with db.session() as s:
        record_visit(s, request_id="v-A", account_id="A", collector_id="K1", channel="visit",
                     outcome="promise", at=visit_at, recorded_by="zhang", clock=clock,
                     promise_on=date(2026, 2, 5), promise_amount_fen=20_000)
        record_visit(s, request_id="v-B", account_id="B", collector_id="K1", channel="call",
                     outcome="promise", at=visit_at, recorded_by="zhang", clock=clock,
                     promise_on=date(2026, 2, 5), promise_amount_fen=10_000)
        disputed = record_visit(s, request_id="v-C", account_id="C", collector_id="K1",
                                channel="visit", outcome="dispute", at=visit_at,
                                recorded_by="zhang", clock=clock, bill_id="C-202512-1",
                                note="读数有误 the reading looks wrong")
        ticket_id = disputed.ticket.ticket_id if disputed.ticket else None
    run(db, date(2026, 1, 31), date(2026, 2, 3), switch, notifier)
    # then while the promises are open the ladder pauses; the disputed bill is not dunned
    assert state(db) == {}
    # B pays 150 yuan on 2026-02-04 (its promise was 100): kept on the next run, ladder reset
    pay(db, "B", 15_000, at(date(2026, 2, 4), 15), "T-B-1")
    run(db, date(2026, 2, 4), date(2026, 2, 6), switch, notifier)
    ev_b = [e["type"] for e in events_json(db, "B")]
    assert "promise_kept" in ev_b and "promise_broken" not in ev_b
    # the ladder counts again from the day after the promise was kept: reminder, not final
    assert state(db)["B"] == ("reminder", "B-202512-1")
    # A paid nothing: on 2026-02-06, the day after the date, the promise is broken and A goes
    # one level higher than final_reminder, where it stood: the stop notice, 11 days early
    ev_a = events_json(db, "A")
    broken = [e for e in ev_a if e["type"] == "promise_broken"]
    assert [(e["at"][:10], e["amount"], e["promised"]) for e in broken] == [
        ("2026-02-06", "0.00", 20_000)]
    assert levels(db, "A")[-1] == ("2026-02-06", "stop_notice", "A-202512-1")
    # the dispute's ticket passed its SLA (3 working days: due 2026-02-05 00:00) and was escalated
    esc = [e for e in events_json(db, "C") if e["type"] == "ticket_escalated"]
    assert [(e["at"][:10], e["to"]) for e in esc] == [("2026-02-05", "supervisor")]
    # C's January bill falls due 2026-02-18: only it is dunned while the dispute stands
    run(db, date(2026, 2, 7), date(2026, 2, 24), switch, notifier)
    assert state(db)["C"] == ("reminder", "C-202601-1")
    assert {b for day, _, b in levels(db, "C") if day >= "2026-01-31"} == {"C-202601-1"}
    # when the supervisor decides the dispute (the bill stands), its dunning resumes at once
    assert ticket_id is not None
    with db.session() as s:
        decide(s, ticket_id, decision="reading verified on site; the bill stands",
               decided_by="li.supervisor", clock=FixedClock(at(date(2026, 2, 25), 8)))
    run_day(db, date(2026, 2, 25), clock=FixedClock(at(date(2026, 2, 25), 9)), switch=switch,
            notifier=notifier)
    assert state(db)["C"] == ("stop_notice", "C-202512-1")
    # B's remaining arrears climb the ladder again from its reset, A's from its new level
    run(db, date(2026, 2, 26), date(2026, 3, 20), switch, notifier)
    # (B: the stop notice 30 days after the reset, 2026-03-07, not 2026-02-17; the reminders
    # of the same bill were already sent once and are not repeated)
    assert [(d, lv) for d, lv, _ in levels(db, "B")] == [
        ("2026-01-19", "reminder"), ("2026-01-28", "final_reminder"),
        ("2026-03-07", "stop_notice")]
    assert ("2026-03-19", "suspension", "A-202512-1") in levels(db, "A")
