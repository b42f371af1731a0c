"""Account closure (销户) after six months without supply, through maker-checker: the late fees
accrued are posted and everything open is written off as bad debt in one transaction, the stop
case and the account's tasks close, the account and its customer close, and the next days of
collections leave it alone; the books, the audit chain and ``ledger check`` stay whole."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.approvals import service as approvals
from dianfei.billing.repository import billable_accounts
from dianfei.cli.main import app
from dianfei.collections.closure import closure_candidates as candidates
from dianfei.collections.closure import months_before
from dianfei.collections.service import events_json, run_day
from dianfei.core.clock import FixedClock, Period
from dianfei.core.errors import ConflictError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from tests.approvals.helpers import actions, add_staff, books_broken, chain_intact, clock, who
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, run, setup

#: A is stopped in the run of this day (tests/collections/test_collections_e2e.py)
STOPPED = date(2026, 3, 20)
AUGUST_DUE = date(2026, 9, 25)
MONTH_ENDS = [date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31), date(2026, 6, 30),
              date(2026, 7, 31), date(2026, 8, 31)]


@pytest.fixture
def stopped(db: Database) -> Database:
    """A (200 yuan due 18 January) is cut off for arrears on 20 March and never pays; B (500
    yuan) stays supplied. Collections runs every day until the stop, then on each month end
    (late fees reach the ledger then) and on 19 September."""
    setup(db, {"A": {}, "B": {"amount": 50_000, "remote": False, "protected": True}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), STOPPED, switch, notifier)
    for day in [*MONTH_ENDS, date(2026, 9, 19)]:
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
    # the bill run of August issued A a 10-yuan standing charge (the supply was off: no energy)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO bills (bill_id, account_id, customer_id, period, version, issued_on, "
            "due_on, amount, kwh, tariff_id, tariff_version, estimated, multiplier, status) "
            "VALUES ('A-202608-1', 'A', 'A', '2026-08', 1, :i, :d, 1000, 0, "
            "'cn-zj-residential', '2012-07-01', false, 1, 'issued')"),
            {"i": date(2026, 9, 3), "d": AUGUST_DUE})
        conn.execute(text(
            "INSERT INTO bill_lines (bill_id, line_no, code, description, quantity, unit, "
            "unit_price, amount) VALUES ('A-202608-1', 1, 'fixed', '基本费', 1, 'month', 1000, "
            "1000)"))
    with db.session() as s:
        ledger.post_entry(s, clock=FixedClock(at(date(2026, 9, 3))), account_id="A",
                          customer_id="A", kind="bill", amount=1000, reference="A-202608-1",
                          due_on=AUGUST_DUE)
    add_staff(db)
    return db


def owed(db: Database, account: str) -> int:
    with db.engine.connect() as conn:
        return ledger.balances(conn, [account])[account]


def ask(db: Database, account: str, day: date, maker: str = "zhou") -> int:
    with db.session() as s:
        return approvals.request(s, kind_name="account_closure", payload={"account_id": account},
                                 reason="vacant for six months, no contact", maker=who(db, maker),
                                 clock=clock(day)).request_id


def test_months_before_clamps_to_the_month_end() -> None:
    assert months_before(date(2026, 8, 31), 6) == date(2026, 2, 28)
    assert months_before(date(2026, 9, 20), 6) == date(2026, 3, 20)
    assert months_before(date(2026, 1, 15), 6) == date(2025, 7, 15)


def test_closure_writes_the_arrears_off_and_takes_the_account_out_of_collections(
        stopped: Database) -> None:
    db = stopped
    stop_day = [e for e in events_json(db, "A") if e["type"] == "suspended"]
    assert len(stop_day) == 1
    # not six months off on the 19th of September: neither listed nor accepted
    assert candidates(db.engine, date(2026, 9, 19)).height == 0
    with pytest.raises(ConflictError, match="not 6 months yet"):
        ask(db, "A", date(2026, 9, 19))
    # B is supplied: never a closure
    with pytest.raises(ConflictError, match="is supplied"):
        ask(db, "B", date(2026, 9, 21))

    found = candidates(db.engine, date(2026, 9, 21))
    assert found["account_id"].to_list() == ["A"]
    posted = owed(db, "A")
    # the bill, the late fees of six months, August's bill (not due yet)
    assert int(found["owed"][0]) == posted > 21_000
    with db.engine.connect() as conn:
        pending = int(conn.execute(text(
            "SELECT accrued - posted FROM late_fee_accruals WHERE account_id = 'A' "
            "AND closed_on IS NULL")).scalar_one())
    assert pending > 0  # the late fees of September so far reach the ledger with the closure

    request_id = ask(db, "A", date(2026, 9, 21))
    with pytest.raises(approvals.ApprovalForbidden):  # a clerk never decides a closure
        approvals.approve(db, request_id, checker=who(db, "zhou"), clock=clock(date(2026, 9, 21)))
    done = approvals.approve(db, request_id, checker=who(db, "wang"),
                             clock=clock(date(2026, 9, 21), 11))
    assert done["state"] == "executed"
    result = done["result"]
    # the contract ends with the last billed period: no later bill run bills A
    assert result["closed_on"] == "2026-08-31" and result["customer_closed"] is True
    assert result["written_off"] == fmt_yuan(posted + pending)

    # the books: nothing open, the write-offs equal what was owed, every invariant holds
    assert owed(db, "A") == 0
    with db.engine.connect() as conn:
        written = int(conn.execute(text(
            "SELECT -SUM(amount) FROM ledger_entries WHERE account_id = 'A' "
            "AND kind = 'write_off'")).scalar_one())
        case = conn.execute(text("SELECT status, closed_reason FROM stop_cases "
                                 "WHERE account_id = 'A'")).one()
        closed = conn.execute(text(
            "SELECT a.closed_on, c.closed_on FROM accounts a JOIN customers c "
            "ON c.customer_id = a.customer_id WHERE a.account_id = 'A'")).one()
        still_open = conn.execute(text(
            "SELECT COUNT(*) FROM collection_tasks WHERE account_id = 'A' AND status = 'open'"
        )).scalar_one()
        accruals = conn.execute(text("SELECT COUNT(*) FROM late_fee_accruals "
                                     "WHERE account_id = 'A' AND closed_on IS NULL")).scalar_one()
        ladder = conn.execute(text("SELECT COUNT(*) FROM dunning_state "
                                   "WHERE account_id = 'A'")).scalar_one()
        supply = conn.execute(text("SELECT on_at FROM supply_interruptions "
                                   "WHERE account_id = 'A'")).scalar_one()
    assert written == posted + pending
    assert tuple(case) == ("closed", "account_closed")
    assert str(closed[0])[:10] == str(closed[1])[:10] == "2026-08-31"
    billable = billable_accounts(db.engine, Period(2026, 9))["account_id"].to_list()
    assert "B" in billable and "A" not in billable
    assert still_open == 0 and accruals == 0 and ladder == 0
    assert supply is None  # the supply stays off: the account is closed, not reconnected
    assert books_broken(db) == []
    assert chain_intact(db)
    assert "account.closed" in actions(db, "account.")

    # the next days of collections leave A alone (no fee, no level, no notice), B goes on
    before = len(events_json(db, "A"))
    for day in (date(2026, 9, 22), date(2026, 9, 30), date(2026, 10, 1)):
        run_day(db, day, clock=FixedClock(at(day)), switch=FakeSwitch(), notifier=FakeNotifier())
    after = events_json(db, "A")
    assert len(after) == before
    assert [e["type"] for e in after][-1] == "account_closed"
    assert after[-1]["amount"] == result["written_off"]
    assert owed(db, "A") == 0 and owed(db, "B") > 50_000
    assert candidates(db.engine, date(2026, 10, 1)).height == 0
    # closing it again is refused, naming why
    with pytest.raises(ConflictError, match="closed already"):
        ask(db, "A", date(2026, 10, 1))
    assert books_broken(db) == []


def test_no_closure_before_the_last_month_is_billed(stopped: Database) -> None:
    # on 2 October September's bill run has not issued yet (August is the last billed)
    assert candidates(stopped.engine, date(2026, 10, 2))["account_id"].to_list() == ["A"]
    with pytest.raises(ConflictError, match="bill run of 2026-09 has not issued yet"):
        ask(stopped, "A", date(2026, 10, 2))


def test_closures_are_listed_by_the_cli(stopped: Database) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["account", "closures", "--as-of", "2026-09-21", "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert got["months"] == 6
    assert [r["account_id"] for r in got["accounts"]] == ["A"]
    assert got["accounts"][0]["off_since"] == STOPPED.isoformat()
    assert got["accounts"][0]["reason"] == "arrears"
    text_out = runner.invoke(app, ["account", "closures", "--as-of", "2026-09-20"])
    assert text_out.exit_code == 0 and "1 account(s)" in text_out.output
    none = runner.invoke(app, ["account", "closures", "--as-of",
                               (STOPPED + timedelta(days=30)).isoformat()])
    assert "0 account(s)" in none.output


def test_the_demo_review_closes_each_account_due_through_maker_checker(
        stopped: Database) -> None:
    from dianfei.closure_demo import CLERK, SUPERVISOR, monthly_review

    assert monthly_review(stopped, date(2026, 9, 19)).closed == []  # not due yet
    review = monthly_review(stopped, date(2026, 9, 21))
    assert (review.closed, review.refused) == (["A"], 0)
    got = approvals.list_requests(stopped, kind_name="account_closure")
    [req] = got["items"]
    assert (req["state"], req["requested_by"], req["decided_by"]) == (
        "executed", CLERK[0], SUPERVISOR[0])
    again = monthly_review(stopped, date(2026, 10, 4))
    assert (again.closed, again.refused) == ([], 0)
    assert books_broken(stopped) == [] and chain_intact(stopped)
