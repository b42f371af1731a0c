"""Credit is applied whenever it meets an open item, on every path — not only in the demo: the
bill run, a rebill of a paid bill, a payment. ``account show`` answers what is owed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end
from typer.testing import CliRunner

from dianfei.billing.service import rebill, run_bill_run
from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment

JAN, FEB = Period(2026, 1), Period(2026, 2)
OPEN = month_end(Period(2025, 12))


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def pay(db: Database, account: str, txn: str, fen: int, day: date) -> int:
    at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=BUSINESS_TZ)
    with db.session() as s:
        return payments.post_channel_payment(
            s, ChannelPayment(channel="counter", transaction_id=txn, amount=fen, paid_at=at,
                              order_no=None, account_id=account),
            clock=FixedClock(at), source="test").balance_after


def paid_on(db: Database) -> list[tuple[str, int]]:
    """(item, net money on it) from the clearings."""
    with db.engine.connect() as conn:
        return [(r[0], int(r[1])) for r in conn.execute(text(
            "SELECT item_reference, SUM(amount) FROM payment_allocations "
            "WHERE item_reference IS NOT NULL GROUP BY item_reference ORDER BY item_reference"))]


def bill_state(db: Database) -> list[tuple[str, str, int]]:
    """(bill, status, paid) from the clearings."""
    with db.engine.connect() as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(text(
            "SELECT b.bill_id, b.status, COALESCE(SUM(pa.amount), 0) FROM bills b "
            "LEFT JOIN payment_allocations pa ON pa.item_reference = b.bill_id "
            "GROUP BY b.bill_id, b.status ORDER BY b.bill_id"))]


def sound(db: Database) -> None:
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []
        assert payments.check(conn) == []


def test_the_bill_run_applies_credit_to_the_new_bills(db: Database) -> None:
    # given C1 paid 100.00 before any bill (prepaid money: credit)
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 1000_00).add("C1", month_end(JAN), 1150_00).store(db)
    assert pay(db, "C1", "T1", 10_000, date(2026, 1, 20)) == -10_000
    # when January is billed (150 kWh = 80.70 yuan)
    run_bill_run(db, JAN, issue_clock(JAN))
    # then the bill is paid from the credit in the bill run's own transaction; 19.30 is left
    assert bill_state(db) == [("C1-202601-1", "issued", 8070)]
    with db.engine.connect() as conn:
        assert ledger.balances(conn, ["C1"]) == {"C1": -1930}
    sound(db)


def test_credit_holders_named_or_read_whole_agree(db: Database,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dianfei.ledger import items

    # C1 and C3 hold credit, C2 owes nothing
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    pay(db, "C1", "T1", 10_000, date(2026, 1, 20))
    pay(db, "C3", "T3", 500, date(2026, 1, 21))
    with db.engine.connect() as conn:
        named = items.credit_accounts(conn, ["C3", "C2", "C1", "C1"])
        assert named == ["C1", "C3"]
        assert items.credit_accounts(conn, []) == []
        assert items.credit_accounts(conn) == ["C1", "C3"]
        monkeypatch.setattr(items, "CREDIT_NAMED", 1)  # more than that: the whole read
        assert items.credit_accounts(conn, ["C2", "C3"]) == ["C3"]


def test_rebilling_a_paid_bill_moves_the_money_to_the_new_version(db: Database) -> None:
    # given C1's January bill (53.80 yuan for 100 kWh) was paid in full
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    assert pay(db, "C1", "T1", 5380, date(2026, 2, 10)) == 0
    # when a corrected read (120 kWh) arrives and the bill is cancelled and rebilled
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM register_reads WHERE value = 10000"))
    Reads().add("C1", month_end(JAN), 120_00, source="manual").store(db)
    rebill(db, issue_clock(FEB), "C1-202601-1", "meter reader mistyped the reading")
    # then the 53.80 paid went back to credit and on to the new version, which owes the rest
    assert bill_state(db) == [("C1-202601-1", "cancelled", 0), ("C1-202601-2", "issued", 5380)]
    with db.engine.connect() as conn:
        assert ledger.balances(conn, ["C1"]) == {"C1": 6456 - 5380}
    sound(db)


def test_a_payment_reopened_by_a_refund_meets_the_accounts_other_credit(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))  # 53.80
    pay(db, "C1", "T1", 5380, date(2026, 2, 1))  # pays the bill
    pay(db, "C1", "T2", 3000, date(2026, 2, 2))  # 30.00 of credit
    with db.session() as s:
        payments.reverse_payment(s, payments.payment_id_for("counter", "T1"),
                                 reason="duplicate at the counter", clock=issue_clock(FEB))
    # the bill is open again for 53.80, and the 30.00 of credit clears part of it at once
    assert paid_on(db) == [("C1-202601-1", 3000)]
    with db.engine.connect() as conn:
        assert ledger.balances(conn, ["C1"]) == {"C1": 2380}
    sound(db)


def test_account_show_answers_the_counter_clerks_first_question(
        db: Database, db_env: dict[str, str]) -> None:
    load_people(db, [Person("C1")])
    with db.session() as s:
        ledger.post_entry(s, clock=issue_clock(JAN), account_id="C1", customer_id="C1",
                          kind="bill", amount=5000, reference="C1-202601-1",
                          due_on=date(2026, 2, 18))
        ledger.post_entry(s, clock=issue_clock(FEB), account_id="C1", customer_id="C1",
                          kind="bill", amount=4000, reference="C1-202602-1",
                          due_on=date(2026, 3, 18))
    pay(db, "C1", "T1", 2000, date(2026, 2, 10))
    res = CliRunner().invoke(app, ["account", "show", "C1", "--as-of", "2026-03-01", "--json"],
                             env=db_env)
    assert res.exit_code == 0, res.output
    view = json.loads(res.output)
    assert (view["balance"], view["amount_due"], view["overdue"], view["credit"]) == (
        "70.00", "70.00", "30.00", "0.00")
    assert [(i["reference"], i["open"], i["days_overdue"], i["aging"])
            for i in view["open_items"]] == [("C1-202601-1", "30.00", 11, "0-30"),
                                             ("C1-202602-1", "40.00", 0, "current")]
    assert view["supply"]["state"] == "connected" and view["plan"] is None
    missing = CliRunner().invoke(app, ["account", "show", "NOPE", "--json"], env=db_env)
    assert missing.exit_code != 0 and "NOPE" in missing.output


def test_the_configured_allocation_rule_applies_on_every_path_without_being_passed(
        db_env: dict[str, str], tmp_path: Path) -> None:
    # given a utility whose supply contracts say late fees first (违约金优先)
    cfg = tmp_path / "dianfei.toml"
    cfg.write_text('[payments]\nallocation = "fees_first"\n', encoding="utf-8")
    fees_first = open_database(load_settings({**db_env, "DIANFEI_CONFIG": str(cfg)}))
    try:
        load_people(fees_first, [Person("C1")])
        with fees_first.session() as s:
            for ref, kind, fen, due in (("C1-202601-1", "bill", 5000, date(2026, 2, 18)),
                                        ("LF:C1-202601-1:2026-02-28", "late_fee", 300,
                                         date(2026, 2, 28))):
                ledger.post_entry(s, clock=issue_clock(FEB), account_id="C1", customer_id="C1",
                                  kind=kind, amount=fen, reference=ref, due_on=due)
        # when a bank file posts a partial payment through the bulk path, passing no rule
        frame = pl.DataFrame({"channel": ["bank"], "transaction_id": ["B1"], "account_id": ["C1"],
                              "amount": [1000], "paid_at": [datetime(2026, 3, 5, 2, tzinfo=UTC)]},
                             schema={"channel": pl.String, "transaction_id": pl.String,
                                     "account_id": pl.String, "amount": pl.Int64,
                                     "paid_at": pl.Datetime("us", "UTC")})
        with fees_first.engine.begin() as conn:
            payments.post_payments_frame(conn, frame, clock=issue_clock(FEB), source="bank_file")
        # then the late fee is cleared first, as configured
        assert paid_on(fees_first) == [("C1-202601-1", 700), ("LF:C1-202601-1:2026-02-28", 300)]
    finally:
        fees_first.engine.dispose()


def test_overdue_items_are_the_open_debits_past_their_due_date(db: Database) -> None:
    """What a day of collections reads: open debits due before the day — not the bills not yet
    due, not paid ones, not credit."""
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    reads = Reads()
    for c in ("C1", "C2", "C3"):
        reads.add(c, OPEN, 1000_00).add(c, month_end(JAN), 1100_00).add(c, month_end(FEB), 1200_00)
    reads.store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    pay(db, "C2", "T2", 5380, date(2026, 2, 10))  # C2 pays January in full
    pay(db, "C3", "T3", 20_000, date(2026, 2, 10))  # C3 pays ahead: credit after February
    run_bill_run(db, FEB, issue_clock(FEB))
    with db.engine.connect() as conn:
        due = conn.execute(text("SELECT due_on FROM bills WHERE bill_id = 'C1-202601-1'")).scalar()
    jan_due = date.fromisoformat(str(due))
    # the day before January's due date nothing is overdue; the day after, C1's January bill
    assert ledger.overdue_items(db.engine, jan_due).height == 0
    after = ledger.overdue_items(db.engine, date.fromordinal(jan_due.toordinal() + 1))
    assert after.select("account_id", "bill_id", "open_amount").rows() == [
        ("C1", "C1-202601-1", 5380)]
    # a bill's late fees (one per month end it is still overdue) come as one row: the day
    # needs what each account owes per bill and since when, not each month end's posting
    fees = pl.DataFrame({
        "account_id": "C1", "customer_id": "C1", "kind": "late_fee", "amount": [150, 170],
        "posted_at": [datetime(2026, 2, 28, 9, tzinfo=UTC), datetime(2026, 3, 31, 9, tzinfo=UTC)],
        "business_date": [date(2026, 2, 28), date(2026, 3, 31)],
        "due_on": [date(2026, 2, 28), date(2026, 3, 31)],
        "reference": ["LF:C1-202601-1:2026-02-28", "LF:C1-202601-1:2026-03-31"]})
    with db.engine.begin() as conn:
        ledger.post_frame(conn, fees, action="late_fee.posted")
    jan = pl.col("bill_id") == "C1-202601-1"
    assert ledger.overdue_items(db.engine, date(2026, 3, 31)).filter(jan).sort("item_kind").select(
        "account_id", "item_kind", "reference", "bill_id", "due_on", "amount", "open_amount"
    ).rows() == [("C1", "bill", "C1-202601-1", "C1-202601-1", jan_due, 5380, 5380),
                 ("C1", "late_fee", "LF:C1-202601-1:2026-02-28", "C1-202601-1",
                  date(2026, 2, 28), 150, 150)]
    both = ledger.overdue_items(db.engine, date(2026, 4, 1)).filter(
        jan & (pl.col("item_kind") == "late_fee"))
    assert both.select("reference", "bill_id", "due_on", "amount", "open_amount").rows() == [
        ("LF:C1-202601-1:2026-02-28", "C1-202601-1", date(2026, 2, 28), 320, 320)]
    # the database was analysed when opened and again by each bill run
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("SELECT count(*) FROM sqlite_stat1 "
                                     "WHERE tbl = 'open_items'")).scalar_one() > 0
    sound(db)
