"""The bill run against a real database: amounts, idempotency, exceptions, corrections."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end, scalar

from dianfei.billing.service import cancel_bill, rebill, run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.errors import ConflictError
from dianfei.db.engine import Database
from dianfei.ledger.service import check

JAN, FEB = Period(2026, 1), Period(2026, 2)
OPEN = month_end(Period(2025, 12))


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def bills(db: Database) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT bill_id, account_id, period, amount, kwh, estimated, status, version, "
            "due_on FROM bills ORDER BY bill_id")).mappings()]


def test_bills_each_account_with_itemised_lines_and_one_debit(db: Database) -> None:
    # given two residential accounts with 150.00 and 0 kWh in January
    load_people(db, [Person("C1"), Person("C2")])
    Reads().add("C1", OPEN, 1000_00).add("C1", month_end(JAN), 1150_00) \
        .add("C2", OPEN, 500_00).add("C2", month_end(JAN), 500_00).store(db)
    # when the January bill run is issued on 3 February
    res = run_bill_run(db, JAN, issue_clock(JAN))
    # then: 150 kWh × 0.5380 = 80.70 yuan; zero usage is a zero bill, not an exception
    assert (res.candidates, res.billed, res.exceptions, res.amount) == (2, 2, 0, 8070)
    got = bills(db)
    assert [(b["bill_id"], b["amount"], b["kwh"]) for b in got] == [
        ("C1-202601-1", 8070, 150_00), ("C2-202601-1", 0, 0)]
    assert str(got[0]["due_on"])[:10] == "2026-02-18"  # issued 02-03 + 15 days
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'bill'") == 2
    assert scalar(db.engine, "SELECT amount FROM ledger_entries WHERE reference = 'C1-202601-1'") \
        == 8070
    assert scalar(db.engine, "SELECT sum(amount) FROM bill_lines WHERE bill_id = 'C1-202601-1'") \
        == 8070
    with db.engine.connect() as conn:
        assert check(conn) == []


def test_running_twice_bills_nobody_twice(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    first = run_bill_run(db, JAN, issue_clock(JAN))
    second = run_bill_run(db, JAN, issue_clock(JAN))
    assert (first.billed, second.billed, second.candidates) == (1, 0, 0)
    assert scalar(db.engine, "SELECT count(*) FROM bills") == 1
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries") == 1


def test_unbillable_accounts_land_on_exceptions_with_reasons(db: Database) -> None:
    load_people(db, [
        Person("C1"),                              # no closing read
        Person("C2"),                              # read goes backwards, not a rollover
        Person("C3", digits=4),                    # genuine rollover at 10,000 kWh
        Person("C4", tariff_id="no-such-tariff"),  # unknown tariff
        Person("C5"),                              # estimated read
        Person("C6", multiplier=40),               # current transformer 200/5
    ])
    r = Reads()
    for c in ("C1", "C2", "C3", "C4", "C5", "C6"):
        r.add(c, OPEN, 9990_00 if c == "C3" else 5000_00)
    r.add("C2", month_end(JAN), 4000_00).add("C3", month_end(JAN), 20_00)
    r.add("C4", month_end(JAN), 5100_00).add("C5", month_end(JAN), 5100_00, source="estimated")
    r.add("C6", month_end(JAN), 5010_00).store(db)
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.candidates, res.billed, res.exceptions) == (6, 3, 3)
    with db.engine.connect() as conn:
        reasons = dict(conn.execute(text(
            "SELECT account_id, reason FROM bill_exceptions ORDER BY account_id")).all())
    assert reasons == {"C1": "no_read", "C2": "read_backwards", "C4": "unknown_tariff"}
    by_id = {b["account_id"]: b for b in bills(db)}
    assert by_id["C3"]["kwh"] == 30_00            # 10000.00 − 9990.00 + 20.00
    assert by_id["C5"]["estimated"] in (True, 1)
    assert by_id["C6"]["kwh"] == 400_00           # 10.00 × 40
    assert by_id["C6"]["amount"] == 21520         # 400 × 0.5380 = 215.20


def test_annual_tiers_follow_the_year_to_date_and_reset_in_january(db: Database) -> None:
    load_people(db, [Person("C1")])
    dec = Period(2025, 12)
    Reads().add("C1", month_end(Period(2025, 11)), 0).add("C1", month_end(dec), 2700_00) \
        .add("C1", month_end(JAN), 3000_00).add("C1", month_end(FEB), 6000_00).store(db)
    run_bill_run(db, dec, issue_clock(dec))
    run_bill_run(db, JAN, issue_clock(JAN))
    run_bill_run(db, FEB, issue_clock(FEB))
    by_period = {b["period"]: b["amount"] for b in bills(db)}
    # December 2025: year-to-date 0 → 2700 kWh all in tier 1: 2700 × 0.5380 = 1452.60
    assert by_period["2025-12"] == 145260
    # January 2026: the year restarts, 300 kWh in tier 1: 161.40
    assert by_period["2026-01"] == 16140
    # February: 3000 kWh on a year-to-date of 300 → 2460 kWh up to 2760 in tier 1 and 540 in
    # tier 2: 2460 × 0.5380 = 1323.48 + 540 × 0.5880 = 317.52 → 1641.00
    assert by_period["2026-02"] == 164100


def test_cancel_and_rebill_are_new_ledger_entries(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    clock = issue_clock(JAN)
    run_bill_run(db, JAN, clock)
    # a corrected read arrives (the first was mistyped) and the bill is cancelled and rebilled
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM register_reads WHERE value = 10000"))
    Reads().add("C1", month_end(JAN), 120_00, source="manual").store(db)
    rebill(db, clock, "C1-202601-1", "meter reader mistyped the reading")
    got = bills(db)
    assert [(b["bill_id"], b["status"], b["amount"]) for b in got] == [
        ("C1-202601-1", "cancelled", 5380), ("C1-202601-2", "issued", 6456)]
    with db.engine.connect() as conn:
        kinds = conn.execute(text(
            "SELECT kind, amount, reference FROM ledger_entries ORDER BY entry_id")).all()
        assert [tuple(k) for k in kinds] == [
            ("bill", 5380, "C1-202601-1"), ("reversal", -5380, "reversal:1"),
            ("bill", 6456, "C1-202601-2")]
        assert check(conn) == []
    with db.session() as s, pytest.raises(ConflictError):
        cancel_bill(s, clock, "C1-202601-1", "again")


def test_ledger_refuses_update_and_delete(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    for sql in ("UPDATE ledger_entries SET amount = 1", "DELETE FROM ledger_entries"):
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    assert scalar(db.engine, "SELECT amount FROM ledger_entries") == 5380


def test_ledger_check_names_broken_invariants(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    # a bill smuggled in without its debit, and a line that no longer adds up
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO bills (bill_id, account_id, customer_id, period, version, issued_on, "
            "due_on, amount, kwh, tariff_id, tariff_version, estimated, multiplier, status) "
            "VALUES ('X-1', 'C1', 'C1', '2026-02', 1, '2026-03-03', '2026-03-18', 100, 0, "
            "'cn-zj-residential', '2012-07-01', false, 1, 'issued')"))
    with db.engine.connect() as conn:
        broken = {v.invariant: v.example for v in check(conn)}
    assert broken == {
        "every issued bill is debited exactly once and not reversed": "X-1",
        "a bill's amount is the sum of its lines": "X-1",
    }


def test_nothing_is_billed_before_the_period_starts(db: Database) -> None:
    load_people(db, [Person("C1")])
    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match="before it starts"):
        run_bill_run(db, FEB, FixedClock(datetime(2026, 1, 20, tzinfo=BUSINESS_TZ)))
    assert date(2026, 1, 1) < FEB.first_day


def test_a_bill_starts_where_the_last_bill_stopped_never_at_a_faulty_read(db: Database) -> None:
    # given: January billed 1000 → 1100; February's read (1050) goes backwards: a meter fault
    load_people(db, [Person("C1")])
    mar = Period(2026, 3)
    Reads().add("C1", OPEN, 1000_00).add("C1", month_end(JAN), 1100_00) \
        .add("C1", month_end(FEB), 1050_00).add("C1", month_end(mar), 1300_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    feb = run_bill_run(db, FEB, issue_clock(FEB))
    assert (feb.billed, feb.exceptions) == (0, 1)
    # when March is billed
    run_bill_run(db, mar, issue_clock(mar))
    # then it starts from January's closing read (上期止码 1100), not from the faulty 1050:
    # 200 kWh × 0.5380 = 107.60
    got = {b["period"]: (b["kwh"], b["amount"]) for b in bills(db)}
    assert got == {"2026-01": (100_00, 5380), "2026-03": (200_00, 10760)}
    # and billing February now would overlap March: refused with a reason, not billed twice
    again = run_bill_run(db, FEB, issue_clock(mar))
    assert (again.billed, again.exceptions) == (0, 1)
    assert scalar(db.engine, "SELECT reason FROM bill_exceptions WHERE run_id = :r",
                  r=again.run_id) == "covered_by_later_bill"


def test_long_read_gaps_start_from_the_last_bill_or_the_installation_read(db: Database) -> None:
    may = Period(2026, 5)
    load_people(db, [Person("C1"), Person("C2")])
    # C1: billed in January, then no read for three months (exceptions), read again in May
    # C2: installed with a read in October 2025, first read after that in May
    Reads().add("C1", OPEN, 1000_00).add("C1", month_end(JAN), 1100_00) \
        .add("C1", month_end(may), 1400_00) \
        .add("C2", month_end(Period(2025, 9)), 20_00).add("C2", month_end(may), 520_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    for p in (FEB, Period(2026, 3), Period(2026, 4)):
        assert run_bill_run(db, p, issue_clock(p)).exceptions == 2
    res = run_bill_run(db, may, issue_clock(may))
    assert (res.billed, res.exceptions) == (2, 0)
    got = {(b["account_id"], b["period"]): b["kwh"] for b in bills(db)}
    # C1 from January's closing read 1100 (three months before), C2 from its installation read
    assert got[("C1", "2026-05")] == 300_00
    assert got[("C2", "2026-05")] == 500_00


def test_an_account_failing_in_two_runs_is_one_open_exception(db: Database) -> None:
    from dianfei.billing.service import open_exceptions, period_totals

    load_people(db, [Person("C1"), Person("C2")])
    Reads().add("C1", OPEN, 0).add("C2", OPEN, 0).add("C2", month_end(JAN), 10_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    run_bill_run(db, JAN, issue_clock(JAN))  # C1 still has no read: excepted again
    assert scalar(db.engine, "SELECT count(*) FROM bill_exceptions") == 2
    assert open_exceptions(db).select("period", "account_id", "reason").rows() == [
        ("2026-01", "C1", "no_read")]
    assert period_totals(db).select("period", "bills", "kwh", "exceptions").rows() == [
        ("2026-01", 1, 10_00, 1)]
    # once C1's read arrives and it is billed, it leaves the exceptions list
    Reads().add("C1", month_end(JAN), 5_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    assert open_exceptions(db).height == 0
