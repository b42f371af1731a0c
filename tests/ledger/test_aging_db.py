"""Aging through its real read path (``ledger.service.aging`` and ``dianfei ledger aging``) on a
real database: bills and payments posted, no entry ever reversed (``reverses_entry_id`` all NULL,
which a value-typed read once turned into text and the aging join refused)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from tests.factories import Person, load_people
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment

CLOCK = FixedClock(datetime(2025, 3, 3, 10, 0, tzinfo=BUSINESS_TZ))


@pytest.fixture
def billed(db: Database) -> Database:
    """Three accounts: A owes two bills (one paid in part), B paid in full, C owes one bill."""
    load_people(db, [Person("A"), Person("B"), Person("C")])
    with db.session() as s:
        for acct, ref, fen, due in (("A", "A-202501-1", 10000, date(2025, 1, 18)),
                                    ("A", "A-202502-1", 6000, date(2025, 3, 18)),
                                    ("B", "B-202502-1", 4000, date(2025, 3, 18)),
                                    ("C", "C-202501-1", 2500, date(2025, 2, 18))):
            ledger.post_entry(s, clock=CLOCK, account_id=acct, customer_id=acct, kind="bill",
                              amount=fen, reference=ref, due_on=due)
        paid = datetime(2025, 3, 3, 9, 0, tzinfo=BUSINESS_TZ)
        for acct, txn, fen in (("A", "T-A", 3000), ("B", "T-B", 4000)):
            order = payments.create_order(s, account_id=acct, amount=fen, channel="alipay", clock=CLOCK)
            payments.post_channel_payment(s, ChannelPayment("alipay", txn, fen, paid,
                                                            order_no=order.order_no),
                                          clock=CLOCK, source="callback")
    return db


def test_aging_reads_a_ledger_without_reversals(billed: Database) -> None:
    got = {r["account_id"]: r for r in ledger.aging(billed.engine, date(2025, 5, 31))
           .iter_rows(named=True)}
    # A: 30.00 paid clears the older bill first (due 01-18, 133 days: >90), 2025-03-18 is 74 days
    assert got["A"] == {"account_id": "A", "balance": 13000, "current": 0, "0-30": 0,
                        "31-60": 0, "61-90": 6000, ">90": 7000}
    assert got["B"]["balance"] == 0 and sum(got["B"][b] for b in ledger.AGING_BUCKETS) == 0
    assert got["C"]["balance"] == 2500 and got["C"][">90"] == 2500  # due 02-18: 102 days


def test_cli_ledger_aging_on_a_ledger_without_reversals(billed: Database) -> None:
    res = CliRunner().invoke(app, ["ledger", "aging", "--as-of", "2025-05-31", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"as_of": "2025-05-31", "accounts": 3, "balance": "155.00",
                                      "current": "0.00", "0-30": "0.00", "31-60": "0.00",
                                      "61-90": "60.00", ">90": "95.00"}


def test_aging_of_an_empty_ledger(db: Database) -> None:
    frame = ledger.aging(db.engine, date(2025, 5, 31))
    assert frame.height == 0
    assert frame.columns == ["account_id", "balance", *ledger.AGING_BUCKETS]
