"""Reconciliation, bank withholding and agent files on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.crypto import PiiCipher
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import bankfiles, service
from dianfei.payments import reconcile_service as rs
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.layouts import load_layout
from dianfei.payments.statements import StatementError, parse_statement
from dianfei.payments.statements.bankfile import render
from tests.factories import Person, load_people, scalar
from tests.payments.statements.builders import Line, alipay_csv

DAY = date(2024, 3, 5)
CLOCK = FixedClock(datetime(2024, 3, 6, 10, 0, tzinfo=BUSINESS_TZ))
AT = datetime(2024, 3, 5, 10, 0)
CIPHER = PiiCipher(b"k" * 32)


@pytest.fixture
def population(db: Database) -> Database:
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    with db.session() as s:
        for acct, fen in (("C1", 8000), ("C2", 5000), ("C3", 3000)):
            ledger.post_entry(
                s,
                clock=CLOCK,
                account_id=acct,
                customer_id=acct,
                kind="bill",
                amount=fen,
                reference=f"{acct}-202402-1",
                due_on=date(2024, 3, 18),
            )
    return db


def test_reconcile_classifies_auto_posts_the_lost_callback_and_a_rerun_changes_nothing(
    population: Database,
) -> None:
    db = population
    with db.session() as s:
        o1 = service.create_order(s, account_id="C1", amount=8000, channel="alipay", clock=CLOCK).order_no
        o2 = service.create_order(s, account_id="C2", amount=5000, channel="alipay", clock=CLOCK).order_no
        paid = datetime(2024, 3, 5, 9, tzinfo=BUSINESS_TZ)
        service.post_channel_payment(
            s, ChannelPayment("alipay", "A1", 8000, paid, order_no=o1), clock=CLOCK, source="callback"
        )
        service.post_channel_payment(
            s, ChannelPayment("alipay", "A9", 1000, paid, account_id="C3"), clock=CLOCK, source="callback"
        )
    data = alipay_csv(
        [
            Line("A1", 8000, AT, o1),
            Line("A2", 5000, AT, o2),
            Line("A3", 700, AT, "DFNOSUCH"),
            Line("A1", 8000, AT, o1),
        ]
    )
    statement = parse_statement("alipay", data, name="ali.csv")

    def run() -> dict[str, object]:
        with db.session() as s:
            out = rs.outcome_json(rs.reconcile_statement(s, statement, day=DAY, clock=CLOCK), DAY)
        return json.loads(json.dumps(out))

    first = run()
    assert first["matched"] == 2
    assert [(x["transaction_id"], x["amount"]) for x in first["auto_posted"]] == [("A2", "50.00")]
    assert [x["transaction_id"] for x in first["missing_in_ledger"]] == ["A3"]
    assert "unknown_order" in first["missing_in_ledger"][0]["why_not_posted"]
    assert [x["transaction_id"] for x in first["missing_in_statement"]] == ["A9"]
    assert first["amount_mismatch"] == [] and [d["line"] for d in first["duplicates"]] == [9]
    assert scalar(db.engine, "SELECT source FROM payments WHERE transaction_id = 'A2'") == "statement"
    second = run()
    assert second == first
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 3
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'payment'") == 3
    with db.session() as s:
        rows = rs.worklist(s, clock=CLOCK)
    assert sorted((r["kind"], r["transaction_id"], r["owner"]) for r in rows) == [
        ("duplicate", "A1", "reconciler"),
        ("missing_in_ledger", "A3", "reconciler"),
        ("missing_in_statement", "A9", "reconciler"),
    ]
    assert {r["age_days"] for r in rows} == {0}
    with db.session() as s:
        rs.resolve(s, rows[0]["id"], note="checked with Alipay: duplicate line", clock=CLOCK)
        assert len(rs.worklist(s, clock=CLOCK)) == 2
        assert rs.report(s, "alipay", DAY)["settlement_ok"] is True  # type: ignore[index]


def test_a_statement_failing_its_totals_check_posts_nothing(population: Database) -> None:
    db = population
    with db.session() as s:
        o2 = service.create_order(s, account_id="C2", amount=5000, channel="alipay", clock=CLOCK).order_no
    statement = parse_statement("alipay", alipay_csv([Line("A2", 5000, AT, o2)], trades=(1, 5001)))
    with db.session() as s:
        out = rs.outcome_json(rs.reconcile_statement(s, statement, day=DAY, clock=CLOCK), DAY)
    assert out["settlement_check"]["mismatches"] == ["商家实收"]
    assert out["auto_posted"] == [] and [x["transaction_id"] for x in out["missing_in_ledger"]] == ["A2"]
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 0


def _result_file(
    layout_code: str, batch_id: str, rows: list[tuple[int, str, int, str]], *, total: int | None = None
) -> bytes:
    layout = load_layout(layout_code)
    details = [
        {
            "serial": s,
            "account_id": a,
            "bank_account": "6222000000001234",
            "amount": amt,
            "result_code": code,
            "result_message": "余额不足" if code == "3001" else "成功",
        }
        for s, a, amt, code in rows
    ]
    return render(
        layout,
        "result",
        header={"merchant_code": layout.merchant_code, "batch_id": batch_id, "date": DAY},
        details=details,
        trailer={
            "count": len(rows),
            "total": sum(r[2] for r in rows) if total is None else total,
            "success_count": 0,
            "success_total": 0,
        },
    )


@pytest.mark.parametrize("bank", ["icbc_generic", "rcc_generic"])
def test_bank_export_then_import_posts_successes_once_keeps_failures_and_reverses_returns(
    population: Database, bank: str
) -> None:
    db = population
    with db.session() as s:
        for acct in ("C1", "C2"):
            bankfiles.add_mandate(
                s,
                cipher=CIPHER,
                account_id=acct,
                bank=bank,
                bank_account="6222020200112233",
                holder_name=f"用户{acct}",
                active_from=date(2024, 1, 1),
                active_to=None,
                clock=CLOCK,
            )
        exp = bankfiles.export_debit_batch(
            s, layout=load_layout(bank), period=Period(2024, 3), cipher=CIPHER, clock=CLOCK
        )
    assert (exp.count, exp.total) == (2, 13000)
    assert "用户C1".encode("gbk") in exp.body and b"6222020200112233" in exp.body
    assert [x["bank_account"] for x in exp.lines] == ["************2233"] * 2
    with db.session() as s:  # exporting again before the answer rewrites the same batch
        again = bankfiles.export_debit_batch(
            s, layout=load_layout(bank), period=Period(2024, 3), cipher=CIPHER, clock=CLOCK
        )
    assert again.body == exp.body and again.reused
    ok, fail = ("0000", "3001") if bank == "icbc_generic" else ("00", "01")
    answer = _result_file(bank, exp.batch_id, [(1, "C1", 8000, ok), (2, "C2", 5000, fail)])
    if bank == "icbc_generic":
        with db.session() as s, pytest.raises(StatementError, match="trailer says"):
            bankfiles.import_bank_result(
                s,
                layout=load_layout(bank),
                body=_result_file(
                    bank, exp.batch_id, [(1, "C1", 8000, ok), (2, "C2", 5000, fail)], total=13001
                ),
                name="r",
                clock=CLOCK,
            )
        assert scalar(db.engine, "SELECT count(*) FROM payments") == 0
    for _ in range(2):
        with db.session() as s:
            res = bankfiles.import_bank_result(
                s, layout=load_layout(bank), body=answer, name="r", clock=CLOCK
            )
    assert (res.posted, res.already_posted, res.failed) == (0, 1, 1)
    assert scalar(db.engine, "SELECT count(*) FROM payments WHERE channel = 'bank'") == 1
    with db.session() as s:
        fails = rs.withholding_failures(s)
    assert [(f["account_id"], f["reason"]) for f in fails] == [("C2", "insufficient_funds")]
    returned = "9001" if bank == "icbc_generic" else "R1"
    with db.session() as s:
        res = bankfiles.import_bank_result(
            s,
            layout=load_layout(bank),
            body=_result_file(bank, exp.batch_id, [(1, "C1", 8000, returned)]),
            name="ret",
            clock=CLOCK,
        )
    assert res.returned == 1
    assert scalar(db.engine, "SELECT status FROM payments WHERE channel = 'bank'") == "returned"
    with db.engine.connect() as conn:
        assert service.check(conn) == []
        assert (
            conn.execute(text("SELECT sum(amount) FROM ledger_entries WHERE account_id = 'C1'")).scalar()
            == 8000
        )


def test_agent_file_is_posted_once_and_an_unknown_account_goes_to_the_worklist(population: Database) -> None:
    db = population
    layout = load_layout("post_agent")
    at = datetime(2024, 3, 5, 14, 30, tzinfo=BUSINESS_TZ)
    body = render(
        layout,
        "agent",
        header={"agent_code": "YZ0001", "date": DAY},
        details=[
            {"serial": "000001", "account_id": "C1", "amount": 3000, "paid_at": at, "outlet": "城关邮政所"},
            {"serial": "000002", "account_id": "NOBODY", "amount": 100, "paid_at": at},
        ],
        trailer={"count": 2, "total": 3100},
    )
    for _ in range(2):
        with db.session() as s:
            res = bankfiles.import_agent_file(s, layout=layout, body=body, name="yz.txt", clock=CLOCK)
    assert (res.posted, res.already_posted, len(res.unposted)) == (0, 1, 1)
    assert (
        scalar(db.engine, "SELECT transaction_id FROM payments WHERE channel = 'post'")
        == "YZ0001-20240305-000001"
    )
    with db.session() as s:
        assert [(r["kind"], r["transaction_id"]) for r in rs.worklist(s, clock=CLOCK)] == [
            ("unposted", "YZ0001-20240305-000002")
        ]
