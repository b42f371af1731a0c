"""A small billed population for the reporting tests: six accounts, two bill runs."""

from __future__ import annotations

from datetime import datetime

import pytest
from tests.factories import Person, Reads, load_people, month_end

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database

JAN, FEB = Period(2026, 1), Period(2026, 2)
PEOPLE = [f"K{i}" for i in range(6)]
ISSUE = {JAN: datetime(2026, 2, 3, 9, tzinfo=BUSINESS_TZ),
         FEB: datetime(2026, 3, 3, 9, tzinfo=BUSINESS_TZ)}


def bill_two_periods(db: Database) -> None:
    load_people(db, [Person(c) for c in PEOPLE])
    opening = month_end(Period(2025, 12))
    reads = Reads()
    for i, c in enumerate(PEOPLE):
        # K0 uses nothing: a zero bill, left out of payment days
        use = 0 if i == 0 else 90_00 + 37_00 * i
        reads.add(c, opening, 1000_00).add(c, month_end(JAN), 1000_00 + use) \
            .add(c, month_end(FEB), 1000_00 + 2 * use)
    reads.store(db)
    for p in (JAN, FEB):
        run_bill_run(db, p, FixedClock(ISSUE[p]))


@pytest.fixture
def billed(db: Database) -> Database:
    bill_two_periods(db)
    return db
