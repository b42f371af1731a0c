"""A small utility with a year of bills for the bill document tests: explicit people and reads."""

from __future__ import annotations

from datetime import datetime

from tests.factories import Person, Reads, load_people, month_end

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database

OPEN = Period(2025, 1)
LAST = Period(2026, 2)


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def periods(first: Period, last: Period) -> list[Period]:
    out, p = [], first
    while p <= last:
        out.append(p)
        p = p.next()
    return out


def build(db: Database, *, estimated_last: bool = True) -> None:
    """C1 (300 kWh a month: reaches tier 2 of the annual tiers in October 2025), C2
    (low-income, 100 kWh), C3 (200 kWh, Zhejiang TOU) — monthly bills from 2025-01 to 2026-02;
    C1's last read is estimated."""
    load_people(db, [Person("C1"), Person("C2", low_income=True),
                     Person("C3", tariff_id="cn-zj-residential-tou", registers="total,peak,valley")])
    start = {"C1": 1000_00, "C2": 500_00, "C3": 2000_00}
    per_month = {"C1": 300_00, "C2": 100_00, "C3": 200_00}
    before = OPEN.prev()
    r = Reads()
    for c, v in start.items():
        r.add(c, month_end(before), v)
        if c == "C3":
            r.add(c, month_end(before), 0, register="peak").add(c, month_end(before), 0,
                                                                register="valley")
    r.store(db)
    for i, p in enumerate(periods(OPEN, LAST), start=1):
        for c, v in start.items():
            est = "estimated" if (c == "C1" and p == LAST and estimated_last) else "ami"
            r.add(c, month_end(p), v + i * per_month[c], source=est)
            if c == "C3":
                r.add(c, month_end(p), i * 140_00, register="peak")
                r.add(c, month_end(p), i * 60_00, register="valley")
        r.store(db)
        run_bill_run(db, p, issue_clock(p))
