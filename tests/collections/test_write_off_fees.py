"""A bill written off (核销) takes the late fee accrued on it since the last month end with it:
posted and written off in the approval's transaction, the accrual finished — the next days of
collections post no fee on it and dun nobody for it; the books and the audit chain stay whole.
A late fee posted at a month end is a debit of its own, written off on its own request."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from dianfei.approvals import service as approvals
from dianfei.collections.service import pending_fee, run_day
from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from tests.approvals.helpers import add_staff, books_broken, chain_intact, clock, who
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, run, setup

BILL = "A-202512-1"
#: A's bill (200 yuan, due 18 January) has accrued since; January's fee was posted on the 31st
WRITTEN_OFF_ON = date(2026, 2, 10)


@pytest.fixture
def overdue(db: Database) -> Database:
    setup(db, {"A": {"remote": False}, "B": {"remote": False}})
    run(db, date(2026, 1, 18), WRITTEN_OFF_ON - timedelta(days=1), FakeSwitch(), FakeNotifier())
    add_staff(db)
    return db


def fee_rows(db: Database) -> list[tuple[str, int]]:
    with db.engine.connect() as conn:
        return [(str(r[0]), int(r[1])) for r in conn.execute(text(
            "SELECT reference, amount FROM ledger_entries WHERE account_id = 'A' "
            "AND kind = 'late_fee' ORDER BY entry_id"))]


def write_off(db: Database, reference: str, day: date) -> dict[str, object]:
    with db.session() as s:
        rid = approvals.request(s, kind_name="write_off", payload={"reference": reference},
                                reason="household gone, no estate", maker=who(db, "zhou"),
                                clock=clock(day)).request_id
    done = approvals.approve(db, rid, checker=who(db, "wang"), clock=clock(day, 11))
    assert done["state"] == "executed", done
    return dict(done["result"])


def test_a_bill_written_off_takes_its_pending_late_fee_with_it(overdue: Database) -> None:
    db = overdue
    january = fee_rows(db)
    assert [r[0] for r in january] == [f"LF:{BILL}:2026-01-31"]  # posted at the month end
    with db.engine.connect() as conn:
        pending = pending_fee(conn, BILL)
        open_bill = ledger.open_amount(conn, BILL)
    assert pending > 0 and open_bill == 20_000
    owed_before = ledger_balance(db, "A")

    result = write_off(db, BILL, WRITTEN_OFF_ON)
    fee_ref = f"LF:{BILL}:{WRITTEN_OFF_ON.isoformat()}"
    assert result["amount"] == fmt_yuan(open_bill)
    assert result["late_fee"] == {"entry_id": result["late_fee"]["entry_id"],  # type: ignore[index]
                                  "reference": fee_ref, "amount": fmt_yuan(pending)}
    assert result["total"] == fmt_yuan(open_bill + pending)
    # the fee reached the ledger and left it in the same transaction; January's stays owed
    assert fee_rows(db) == [*january, (fee_ref, pending)]
    with db.engine.connect() as conn:
        written = sorted((str(r[0]), -int(r[1])) for r in conn.execute(text(
            "SELECT reference, amount FROM ledger_entries WHERE kind = 'write_off'")))
        accrual = conn.execute(text("SELECT closed_on, accrued, posted FROM late_fee_accruals "
                                    "WHERE bill_id = :b"), {"b": BILL}).one()
        assert pending_fee(conn, BILL) == 0
    assert written == sorted([(BILL, open_bill), (fee_ref, pending)])
    assert str(accrual[0])[:10] == WRITTEN_OFF_ON.isoformat() and accrual[1] == accrual[2]
    assert ledger_balance(db, "A") == owed_before - open_bill == january[0][1]

    # the next days: no new fee on the bill, the ladder follows only January's fee
    for day in (WRITTEN_OFF_ON, WRITTEN_OFF_ON + timedelta(days=1), date(2026, 2, 28)):
        run_day(db, day, clock=FixedClock(at(day)), switch=FakeSwitch(), notifier=FakeNotifier())
    assert fee_rows(db) == [*january, (fee_ref, pending)]
    assert ledger_balance(db, "A") == january[0][1]
    # B, not written off, accrued on as before
    with db.engine.connect() as conn:
        assert ledger.open_amount(conn, "B-202512-1") == 20_000
        assert int(conn.execute(text("SELECT COUNT(*) FROM ledger_entries WHERE account_id = 'B' "
                                     "AND kind = 'late_fee'")).scalar_one()) == 2
    assert books_broken(db) == []
    assert chain_intact(db)

    # January's fee is a debit of its own: written off on its own request, no fee of its own
    rest = write_off(db, january[0][0], date(2026, 3, 2))
    assert rest["late_fee"] is None and rest["total"] == fmt_yuan(january[0][1])
    assert ledger_balance(db, "A") == 0
    # and the bill cannot be written off twice
    with db.session() as s, pytest.raises(ConflictError):
        approvals.request(s, kind_name="write_off", payload={"reference": BILL}, reason="again",
                          maker=who(db, "zhou"), clock=clock(date(2026, 3, 2)))
    assert books_broken(db) == []


def test_the_request_shows_the_checker_the_fee_it_will_write_off(overdue: Database) -> None:
    db = overdue
    with db.engine.connect() as conn:
        due = int(ledger.open_amount(conn, BILL) or 0) + pending_fee(conn, BILL)
    with db.session() as s:
        req = approvals.request(s, kind_name="write_off", payload={"reference": BILL},
                                reason="household gone", maker=who(db, "zhou"),
                                clock=clock(WRITTEN_OFF_ON))
        assert req.amount == due
    # a late fee has no accrual of its own
    with db.engine.connect() as conn:
        assert pending_fee(conn, f"LF:{BILL}:2026-01-31") == 0


def ledger_balance(db: Database, account: str) -> int:
    with db.engine.connect() as conn:
        return ledger.balances(conn, [account])[account]
