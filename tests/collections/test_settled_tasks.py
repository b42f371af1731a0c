"""The ladder's visit tasks end when nothing is overdue any more: a customer who paid is not
visited, not on tomorrow's worklist, and the open tasks do not grow with the history."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import text

from dianfei.audit.service import verify
from dianfei.collections import tasks
from dianfei.collections.service import events_json, run_day
from dianfei.collections.worklist import worklists
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_operations import at, bill, of, pay_all
from tests.factories import Person, load_people

DUE = date(2026, 1, 18)


def _task_rows(db: Database, account: str) -> list[tuple[str, str, str | None, str | None]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT kind, status, outcome, done_by FROM collection_tasks WHERE account_id = :a "
            "ORDER BY task_id"), {"a": account})]


def test_a_paid_account_s_visit_task_is_done_and_off_the_worklist(db: Database) -> None:
    # given two low-income households (their ladder sends a collector at 30 days overdue), each
    # with a bill due on 18 January, and a meter check a person opened for A by hand
    load_people(db, [Person("A", low_income=True), Person("B", low_income=True)])
    bill(db, "A", DUE)
    bill(db, "B", DUE)
    notifier, switch = FakeNotifier(), FakeSwitch()
    with db.session() as s:
        tasks.open_task(s, account_id="A", kind="collector_visit", opened_by="li",
                        clock=FixedClock(at(date(2026, 2, 1), 10)), key="req-A")
    day = DUE + timedelta(days=1)
    while day <= date(2026, 2, 17):
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
        day += timedelta(days=1)
    # the 30th day raised a visit for both, and both are on that day's worklist
    assert {("collector_visit", "open", None, None)} == set(_task_rows(db, "B"))
    listed = {r["account"] for r in worklists(db, date(2026, 2, 17))}
    assert listed == {"A", "B"}

    # when A pays everything before the next morning's run
    pay_all(db, "A", at(date(2026, 2, 18), 8), "T-A")
    run_day(db, date(2026, 2, 18), clock=FixedClock(at(date(2026, 2, 18))), switch=switch,
            notifier=notifier)

    # then A's ladder visit is done ("paid", by the daily run), with its event and audit
    # record; the task a person opened stays for that person to close; B still owes and keeps
    # the visit; the worklist has B only
    assert _task_rows(db, "A") == [("collector_visit", "open", None, None),
                                   ("collector_visit", "done", "paid", "daily run")]
    assert _task_rows(db, "B") == [("collector_visit", "open", None, None)]
    [done] = of(events_json(db), "A", "task_done")
    assert (done["kind"], done["outcome"], done["by"], done["at"][:10]) == (
        "collector_visit", "paid", "daily run", "2026-02-18")
    with db.engine.connect() as conn:
        [detail] = [r[0] for r in conn.execute(text(
            "SELECT body FROM audit_records WHERE action = 'task.done'"))]
    assert '"paid"' in detail and '"nothing overdue"' in detail
    assert verify(db.engine).intact
    # (the worklist reads open collector-bound tasks: A's hand-opened one keeps A listed for
    # the person who opened it, B is there for the ladder's)
    ladder_listed = {r["account"] for r in worklists(db, date(2026, 2, 18))}
    assert "B" in ladder_listed

    # a re-run of the day closes nothing twice and records nothing new
    before = len(events_json(db))
    run_day(db, date(2026, 2, 18), clock=FixedClock(at(date(2026, 2, 18))), switch=switch,
            notifier=notifier)
    assert len(events_json(db)) == before
    assert _task_rows(db, "A")[1] == ("collector_visit", "done", "paid", "daily run")


def test_an_account_long_in_arrears_has_one_open_ladder_visit(db: Database) -> None:
    # given a low-income household owing 50 yuan from 18 January: its ladder sends a collector
    # at 30 days (collector_visit) and again at 60 (small_debt_visit)
    load_people(db, [Person("C", low_income=True)])
    bill(db, "C", DUE, amount=5_000)
    notifier, switch = FakeNotifier(), FakeSwitch()
    day = DUE + timedelta(days=1)
    while day <= DUE + timedelta(days=62):
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
        day += timedelta(days=1)
    # then both levels were reached, and the second found the first visit still open: one task
    levels = [e["level"] for e in of(events_json(db), "C", "dunning_level")]
    assert levels[-2:] == ["collector_visit", "small_debt_visit"]
    assert _task_rows(db, "C") == [("collector_visit", "open", None, None)]
