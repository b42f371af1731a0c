"""The fund-flow audit on a real database: a day reconciled through the real statement path,
and the differences tie to the worklist; a refund and an unreconciled day are reported."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest
from tests.factories import Person, load_people
from tests.payments.statements.builders import Line, alipay_csv

from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import reconcile_service as rs
from dianfei.payments import service
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.statements import parse_statement
from dianfei.reporting.funds import audit, channel_ties

DAY = date(2024, 3, 5)
CLOCK = FixedClock(datetime(2024, 3, 6, 10, 0, tzinfo=BUSINESS_TZ))
AT = datetime(2024, 3, 5, 10, 0)
MARCH = Period(2024, 3)


@pytest.fixture
def population(db: Database) -> Database:
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    with db.session() as s:
        for acct, fen in (("C1", 8000), ("C2", 5000), ("C3", 3000)):
            ledger.post_entry(s, clock=CLOCK, account_id=acct, customer_id=acct, kind="bill",
                              amount=fen, reference=f"{acct}-202403-1", due_on=date(2024, 3, 18))
    return db


def test_differences_tie_to_the_worklist(population: Database) -> None:
    db = population
    paid = datetime(2024, 3, 5, 9, tzinfo=BUSINESS_TZ)
    with db.session() as s:
        o1 = service.create_order(s, account_id="C1", amount=8000, channel="alipay",
                                  clock=CLOCK).order_no
        o2 = service.create_order(s, account_id="C2", amount=5000, channel="alipay",
                                  clock=CLOCK).order_no
        service.post_channel_payment(s, ChannelPayment("alipay", "A1", 8000, paid, order_no=o1),
                                     clock=CLOCK, source="callback")
        # posted here, absent from the statement (短款)
        service.post_channel_payment(s, ChannelPayment("alipay", "A9", 1000, paid,
                                                       account_id="C3"),
                                     clock=CLOCK, source="callback")
        # a WeChat payment on another day, never reconciled by a statement
        service.post_channel_payment(
            s, ChannelPayment("wechatpay", "W1", 2000, datetime(2024, 3, 7, 9, tzinfo=BUSINESS_TZ),
                              account_id="C3"), clock=CLOCK, source="callback")
    # the statement: A1 matched, A2 a lost callback (auto-posted), A3 money we never posted (长款)
    statement = parse_statement("alipay", alipay_csv([
        Line("A1", 8000, AT, o1), Line("A2", 5000, AT, o2), Line("A3", 700, AT, "DFNOSUCH")]),
        name="ali.csv")
    with db.session() as s:
        rs.reconcile_statement(s, statement, day=DAY, clock=CLOCK)
    # and the wechat payment refunded on the 20th
    with db.session() as s:
        service.reverse_payment(s, service.payment_id_for("wechatpay", "W1"), reason="double pay",
                                clock=FixedClock(datetime(2024, 3, 20, 9, tzinfo=BUSINESS_TZ)))

    got = audit(db, MARCH)
    ali = next(c for c in got["channels"] if c["channel"] == "alipay")
    # the statement settled 80.00 + 50.00 + 7.00; the ledger holds 80.00 + 10.00 + 50.00
    assert (ali["settled"], ali["collected_on_reconciled_days"]) == ("137.00", "140.00")
    # −3.00 = +7.00 (missing in the ledger) − 10.00 (missing in the statement): it ties
    assert (ali["difference"], ali["worklist"], ali["unexplained"]) == ("-3.00", "-3.00", "0.00")
    assert ali["ties"] and ali["worklist_open"] == 2
    wx = next(c for c in got["channels"] if c["channel"] == "wechatpay")
    assert (wx["collected"], wx["refunded"], wx["net"]) == ("20.00", "20.00", "0.00")
    assert wx["not_reconciled_days"] == ["2024-03-07"] and not got["fully_reconciled"]
    # (the debits here are ledger entries only: no bill run, so nothing billed for the period)
    assert (got["bills"], got["collected"], got["refunded"]) == (0, "160.00", "20.00")
    assert got["ties"]


def test_a_payment_posted_after_reconciliation_is_unexplained() -> None:
    # pure: the ledger grew by 5.00 on a reconciled day after the report was made
    payments = pl.DataFrame({"channel": ["alipay"] * 2, "business_date": [DAY, DAY],
                             "amount": [8000, 500], "payment_id": ["P1", "P2"]})
    reports = pl.DataFrame({"channel": ["alipay"], "day": [DAY], "settled": [8000]})
    worklist = pl.DataFrame(schema={"channel": pl.String, "day": pl.Date, "kind": pl.String,
                                    "statement_amount": pl.Int64, "ledger_amount": pl.Int64,
                                    "resolved_at": pl.Datetime("us", "UTC")})
    refunds = pl.DataFrame(schema={"channel": pl.String, "amount": pl.Int64})
    row = channel_ties(payments, refunds, reports, worklist).row(0, named=True)
    assert (row["settled"], row["collected_on_reconciled_days"], row["unexplained"]) == \
        (8000, 8500, -500)
