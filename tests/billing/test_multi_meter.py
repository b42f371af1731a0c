"""Accounts on several meters (一户多表): one bill, a line group per meter, tiers on the total."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end, scalar

from dianfei.billing.documents import bill_document
from dianfei.billing.render import render_html
from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.ledger.service import check
from dianfei.tariffs.models import MeterUsage, Usage
from dianfei.tariffs.rating_scalar import rate
from dianfei.tariffs.service import load_catalogue

JAN, FEB = Period(2026, 1), Period(2026, 2)
OPEN = month_end(Period(2025, 12))


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def add_meter(db: Database, account: str, meter: str, *, multiplier: int = 1, digits: int = 6,
              registers: str = "total") -> None:
    with db.engine.begin() as conn:
        sp = conn.execute(text("SELECT service_point_id FROM meters WHERE account_id = :a"),
                          {"a": account}).scalar()
        conn.execute(text(
            "INSERT INTO meters (meter_id, service_point_id, account_id, multiplier, digits, "
            "registers, installed_on) VALUES (:m, :sp, :a, :mult, :d, :r, :on)"),
            {"m": meter, "sp": sp, "a": account, "mult": multiplier, "d": digits,
             "r": registers, "on": date(2020, 1, 1)})


def read(meter: str, at: datetime, value: int, register: str = "total",
         source: str = "ami") -> dict[str, object]:
    return {"meter_id": meter, "read_at": at, "register": register, "value": value,
            "source": source}


def store(db: Database, rows: list[dict[str, object]]) -> None:
    r = Reads()
    r.rows.extend(rows)
    r.store(db)


def lines_of(db: Database, bill_id: str) -> list[tuple[object, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT line_no, code, quantity, amount, meter_id FROM bill_lines "
            "WHERE bill_id = :b ORDER BY line_no"), {"b": bill_id})]


def test_two_meters_one_bill_tiers_on_the_total_then_the_next_month_opens_per_meter(
        db: Database) -> None:
    # given a household with two meters: MC1 and a second one on a 2× multiplier with four
    # digits that rolls over; 2000 + 2 × 500 = 3000 kWh in January, neither meter alone
    # reaching the 2760 kWh tier
    load_people(db, [Person("C1"), Person("C2")])
    add_meter(db, "C1", "MC1B", multiplier=2, digits=4)
    store(db, [read("MC1", OPEN, 1000_00), read("MC1", month_end(JAN), 3000_00),
               read("MC1B", OPEN, 9800_00), read("MC1B", month_end(JAN), 300_00,
                                                  source="estimated"),
               read("MC2", OPEN, 0), read("MC2", month_end(JAN), 100_00)])
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.candidates, res.billed, res.exceptions) == (2, 2, 0)
    # then one bill: tiers on the account's 3000 kWh: 2760 × 0.5380 + 240 × 0.5880 = 1626.00
    with db.engine.connect() as conn:
        bill = conn.execute(text("SELECT amount, kwh, estimated, meter_id, read_from_at, "
                                 "read_to_at FROM bills WHERE bill_id = 'C1-202601-1'")).one()
        meters = [tuple(r) for r in conn.execute(text(
            "SELECT meter_id, multiplier, kwh, estimated, read_from, read_to FROM bill_meters "
            "ORDER BY meter_id"))]
    assert (bill.amount, bill.kwh, bool(bill.estimated), bill.meter_id) == (
        162600, 3000_00, True, None)
    assert bill.read_to_at is not None and bill.read_from_at is not None
    assert [(m[0], m[1], m[2], bool(m[3]), m[4], m[5]) for m in meters] == [
        ("MC1", 1, 2000_00, False, 1000_00, 3000_00),
        ("MC1B", 2, 1000_00, True, 9800_00, 300_00)]
    assert lines_of(db, "C1-202601-1") == [(1, "energy_tier1", 2760_00, 148488, None),
                                           (2, "energy_tier2", 240_00, 14112, None)]
    # tier lines are the account's own, on one meter too
    assert lines_of(db, "C2-202601-1") == [(1, "energy_tier1", 100_00, 5380, None)]

    # when February is billed, each meter opens where January's bill stopped
    store(db, [read("MC1", month_end(FEB), 3100_00), read("MC1B", month_end(FEB), 310_00),
               read("MC2", month_end(FEB), 150_00)])
    res = run_bill_run(db, FEB, issue_clock(FEB))
    assert (res.billed, res.exceptions) == (2, 0)
    # 100 + 2 × 10 = 120 kWh on a year to date of 3000: all tier 2, 120 × 0.5880 = 70.56
    assert scalar(db.engine, "SELECT amount FROM bills WHERE bill_id = 'C1-202602-1'") == 7056
    assert scalar(db.engine, "SELECT count(*) FROM bill_meters b JOIN bills USING (bill_id) "
                  "WHERE period = '2026-02'") == 2
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'bill'") == 4
    with db.engine.connect() as conn:
        assert check(conn) == []

    doc = bill_document(db.engine, "C1", FEB)
    assert [g["meter_id"] for g in doc["meters"]] == ["MC1", "MC1B"]
    assert [g["kwh"] for g in doc["meters"]] == ["100.00", "20.00"]
    assert [ln["code"] for ln in doc["account_lines"]] == ["energy_tier1", "energy_tier2"]
    html = render_html(doc)
    assert "MC1B" in html and "MC1" in html


def test_time_of_use_is_split_per_meter_and_account_charges_appear_once(db: Database) -> None:
    load_people(db, [Person("C1", tariff_id="cn-general-industrial",
                            customer_class="industrial",
                            registers="total,peak,flat,valley")])
    add_meter(db, "C1", "MC1B", registers="total,peak,flat,valley")
    reads = []
    for meter, (p, f, v) in (("MC1", (300_00, 500_00, 200_00)), ("MC1B", (50_00, 0, 70_00))):
        for reg, val in (("total", p + f + v), ("peak", p), ("flat", f), ("valley", v)):
            reads += [read(meter, OPEN, 10_00, reg), read(meter, month_end(JAN), 10_00 + val, reg)]
    store(db, reads)
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.billed, res.exceptions) == (1, 0)
    got = lines_of(db, "C1-202601-1")
    version = load_catalogue().version_for("cn-general-industrial", JAN)
    want = rate(version, JAN, Usage(kwh=Decimal("1120")), [
        MeterUsage("MC1", Decimal("1000"), peak_kwh=Decimal(300), flat_kwh=Decimal(500),
                   valley_kwh=Decimal(200)),
        MeterUsage("MC1B", Decimal("120"), peak_kwh=Decimal(50), flat_kwh=Decimal(0),
                   valley_kwh=Decimal(70))])
    assert got == [(i, ln.code, ln.quantity, ln.amount, ln.meter_id)
                   for i, ln in enumerate(want, start=1)]
    assert [c for _, c, _, _, m in got if m == "MC1B"] == ["energy_peak", "energy_flat",
                                                           "energy_valley"]
    account_codes = [c for _, c, _, _, m in got if m is None]
    assert account_codes and all(c.startswith("fund_") for c in account_codes)
    assert len(account_codes) == len(set(account_codes))
    assert scalar(db.engine, "SELECT amount FROM bills") == sum(ln.amount for ln in want)


def test_a_bad_read_on_one_meter_keeps_the_whole_account_off_bills(db: Database) -> None:
    load_people(db, [Person("C1")])
    add_meter(db, "C1", "MC1B")
    store(db, [read("MC1", OPEN, 1000_00), read("MC1", month_end(JAN), 1100_00),
               read("MC1B", OPEN, 500_00), read("MC1B", month_end(JAN), 400_00)])
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.candidates, res.billed, res.exceptions) == (1, 0, 1)
    with db.engine.connect() as conn:
        reason, detail = conn.execute(text("SELECT reason, detail FROM bill_exceptions")).one()
    assert reason == "read_backwards" and "MC1B" in detail
    # a meter with no read at all keeps it off too
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM register_reads WHERE value = 40000"))
        conn.execute(text("DELETE FROM register_reads WHERE meter_id = 'MC1'"))
    store(db, [read("MC1B", month_end(JAN), 600_00, source="manual")])
    res = run_bill_run(db, JAN, issue_clock(JAN))
    assert (res.billed, res.exceptions) == (0, 1)
    assert scalar(db.engine, "SELECT reason FROM bill_exceptions ORDER BY id DESC LIMIT 1") \
        == "no_read"


def test_an_account_excepted_last_month_opens_each_meter_where_its_last_bill_stopped(
        db: Database) -> None:
    # given C1 on two meters billed in January, excepted in February (MC1B's read is missing),
    # and C2 on one meter excepted the same way: both were not billed last period, so March
    # looks their meters up in the bills before it (bill_meters for C1, bills for C2)
    mar = Period(2026, 3)
    load_people(db, [Person("C1"), Person("C2")])
    add_meter(db, "C1", "MC1B")
    store(db, [read("MC1", OPEN, 1000_00), read("MC1", month_end(JAN), 1100_00),
               read("MC1B", OPEN, 500_00), read("MC1B", month_end(JAN), 550_00),
               read("MC2", OPEN, 0), read("MC2", month_end(JAN), 100_00),
               read("MC1", month_end(FEB), 1180_00),
               read("MC1", month_end(mar), 1200_00), read("MC1B", month_end(mar), 600_00),
               read("MC2", month_end(mar), 300_00)])
    assert run_bill_run(db, JAN, issue_clock(JAN)).billed == 2
    assert run_bill_run(db, FEB, issue_clock(FEB)).exceptions == 2
    # when March is billed
    res = run_bill_run(db, mar, issue_clock(mar))
    assert (res.billed, res.exceptions) == (2, 0)
    # then each meter opens at January's closing read: MC1 1100 → 1200, MC1B 550 → 600, MC2
    # 100 → 300 (February's MC1 read of 1180, never billed, is not where C1 starts)
    with db.engine.connect() as conn:
        meters = [tuple(r) for r in conn.execute(text(
            "SELECT meter_id, read_from, read_to, kwh FROM bill_meters "
            "WHERE bill_id = 'C1-202603-1' ORDER BY meter_id"))]
        c2 = conn.execute(text("SELECT read_from, read_to, kwh FROM bills "
                               "WHERE bill_id = 'C2-202603-1'")).one()
        assert check(conn) == []
    assert meters == [("MC1", 1100_00, 1200_00, 100_00), ("MC1B", 550_00, 600_00, 50_00)]
    assert tuple(c2) == (100_00, 300_00, 200_00)
