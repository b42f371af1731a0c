"""Group commit of callbacks (payments/fastpath.py): the batch decides exactly as one-by-one does.

Every scenario runs twice — through ``post_batch`` in one transaction and through the one-by-one
path (``inbox.receive``) — and both must give the same exact verdicts, rows and balances: the same
refusal codes and messages, a forged message that cannot block the genuine one, in-batch and
earlier duplicates, an order paid twice, two payments to one account allocated one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import date, datetime

import pytest
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock, SystemClock
from dianfei.db.engine import Database
from dianfei.db.pii import open_inbox_body
from dianfei.ledger import service as ledger
from dianfei.payments import fastpath, inbox, service
from dianfei.payments.channels.base import ChannelPayment, Outcome, Refusal, Verified
from dianfei.payments.inbox import InboxResult
from tests.factories import Person, load_people, scalar

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))
PAID_AT = datetime(2026, 3, 10, 9, 30, tzinfo=BUSINESS_TZ)


def verified(order_no: str, txn: str, fen: int, channel: str = "alipay") -> Verified:
    return Verified(payment=ChannelPayment(channel=channel, transaction_id=txn, amount=fen,
                                           paid_at=PAID_AT, order_no=order_no),
                    status="TRADE_SUCCESS")


def incoming(outcome: Outcome, channel: str = "alipay") -> fastpath.Incoming:
    return fastpath.Incoming(channel, {"Content-Type": "application/x-www-form-urlencoded",
                                       "X-Noise": "dropped"}, b"raw body", outcome, CLOCK.now())


def make_order(db: Database, account: str, fen: int, channel: str = "alipay",
               status: str = "open") -> str:
    with db.session() as s:
        no = service.create_order(s, account_id=account, amount=fen, channel=channel,
                                  clock=CLOCK).order_no
    if status != "open":
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE payment_orders SET status = :s WHERE order_no = :n"),
                         {"s": status, "n": no})
    return no


@pytest.fixture
def accounts(db: Database) -> Database:
    load_people(db, [Person("C1"), Person("C2")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=5000, reference="C1-202601-1", due_on=date(2026, 2, 18))
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=4000, reference="C1-202602-1", due_on=date(2026, 3, 18))
    return db


def batch_path(db: Database, items: list[fastpath.Incoming]) -> list[InboxResult]:
    with db.engine.connect() as conn, conn.begin():
        return fastpath.post_batch(conn, items, clock=CLOCK, cipher=db.pii_cipher)


def one_by_one(db: Database, items: list[fastpath.Incoming]) -> list[InboxResult]:
    def receive(it: fastpath.Incoming) -> InboxResult:
        return inbox.receive(db, channel=it.channel, headers=it.headers, body=it.body,
                             verify=lambda: it.outcome, clock=CLOCK)

    return [receive(it) for it in items]


@pytest.mark.parametrize("path", [batch_path, one_by_one], ids=["batch", "one_by_one"])
def test_a_batch_decides_every_message_as_one_by_one_would(
        accounts: Database, path: Callable[[Database, list[fastpath.Incoming]], list[InboxResult]]
) -> None:
    # given: orders for both accounts, one closed, and a payment posted before the batch
    db = accounts
    o1, o2, o3 = make_order(db, "C1", 3000), make_order(db, "C1", 7000), make_order(db, "C2", 500)
    closed = make_order(db, "C2", 800, status="closed")
    earlier = make_order(db, "C2", 900)
    assert one_by_one(db, [incoming(verified(earlier, "T-EARLY", 900))])[0].verdict == "posted"
    # when: one batch of everything a channel can send
    items = [
        incoming(Refusal("bad_signature", "signature does not verify", "T1")),  # forged, claims T1
        incoming(verified(o1, "T1", 3000)),                   # the genuine T1 after it
        incoming(verified(o1, "T1", 3000)),                   # re-delivered in the same batch
        incoming(verified(o2, "T2", 7000)),                   # same account: sees T1's allocation
        incoming(verified(o1, "T9", 3000)),                   # another transaction, o1 now paid
        incoming(verified(o3, "T3", 999)),                    # amount mismatch
        incoming(verified(o3, "T3", 500, channel="wechatpay"), channel="wechatpay"),  # wrong channel
        incoming(verified("DF-NO-SUCH", "T4", 100)),          # unknown order
        incoming(verified(closed, "T5", 800)),                # closed order
        incoming(verified(earlier, "T-EARLY", 900)),          # posted before the batch
        incoming(Verified(payment=None, status="WAIT_BUYER_PAY")),
        incoming(verified(o3, "T3", 500)),                    # genuine after two bad ones
    ]
    got = path(db, items)
    # then: the same verdicts, codes and messages either way
    assert [(r.verdict, r.code) for r in got] == [
        ("refused", "bad_signature"), ("posted", None), ("duplicate", None), ("posted", None),
        ("refused", "order_already_paid"), ("refused", "amount_mismatch"),
        ("refused", "wrong_channel"), ("refused", "unknown_order"), ("refused", "closed_order"),
        ("duplicate", None), ("acknowledged", None), ("posted", None)]
    assert got[4].message == f"order {o1} was already paid by another transaction; T9 needs a refund"
    assert got[5].message == f"order {o3} is for 500 fen, the channel reports 999 fen"
    assert got[1].payment_id == got[2].payment_id == service.payment_id_for("alipay", "T1")
    assert [r.balance_after for r in got[1:4]] == [9000 - 3000, 9000 - 3000, 9000 - 10000]
    assert got[11].balance_after == -900 - 500
    # the database: three new payments, each once, allocated in arrival order
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 4
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'payment'") == 4
    with db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.transaction_id, a.allocated_to, a.item_reference, a.amount "
            "FROM payment_allocations a JOIN payments p ON p.payment_id = a.payment_id "
            "ORDER BY p.transaction_id, a.id")).all()
        statuses = {r[0]: r[1] for r in conn.execute(text("SELECT order_no, status FROM payment_orders"))}
        kept = conn.execute(text(
            "SELECT verdict, refusal, transaction_id, payment_id IS NOT NULL, headers, body, "
            "body_sha256, body_enc, channel FROM payment_inbox ORDER BY id")).all()
        assert service.check(conn) == []
    assert [tuple(r) for r in rows] == [
        ("T-EARLY", "credit", None, 900),
        ("T1", "bill", "C1-202601-1", 3000),
        ("T2", "bill", "C1-202601-1", 2000), ("T2", "bill", "C1-202602-1", 4000),
        ("T2", "credit", None, 1000),
        ("T3", "credit", None, 500)]
    assert statuses == {o1: "paid", o2: "paid", o3: "paid", closed: "closed", earlier: "paid"}
    # every message is on file, raw, with its verdict (the forged one never got a payment id)
    assert [tuple(k[:4]) for k in kept[1:]] == [
        ("refused", "bad_signature", "T1", False), ("posted", None, "T1", True),
        ("duplicate", None, "T1", True), ("posted", None, "T2", True),
        ("refused", "order_already_paid", "T9", False), ("refused", "amount_mismatch", "T3", False),
        ("refused", "wrong_channel", "T3", False), ("refused", "unknown_order", "T4", False),
        ("refused", "closed_order", "T5", False), ("duplicate", None, "T-EARLY", True),
        ("acknowledged", None, None, False), ("posted", None, "T3", True)]
    # the body sealed (it names the payer), bound to channel and digest; nothing in clear
    assert {(k[4], bytes(k[5])) for k in kept} == {
        ('{"content-type": "application/x-www-form-urlencoded"}', b"")}
    assert {open_inbox_body(db.pii_cipher, k[7], k[8], k[6]) for k in kept} == {b"raw body"}


def test_a_replay_with_another_amount_in_a_batch_is_a_conflicting_duplicate(
        accounts: Database) -> None:
    db = accounts
    o1, o2 = make_order(db, "C2", 300), make_order(db, "C2", 400)
    got = batch_path(db, [incoming(verified(o1, "T1", 300)), incoming(verified(o2, "T1", 400))])
    assert [(r.verdict, r.code) for r in got] == [("posted", None),
                                                  ("refused", "conflicting_duplicate")]
    assert got[1].message == "alipay transaction T1 is already posted as 300 fen to C2"
    assert scalar(db.engine, "SELECT sum(amount) FROM payment_allocations") == 300
    assert scalar(db.engine, f"SELECT status FROM payment_orders WHERE order_no = '{o2}'") == "open"


def test_a_failing_batch_is_posted_one_by_one_with_each_raw_row_kept(
        accounts: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a batch write that fails (as a concurrent writer or a lost connection would make it)
    db = accounts
    o1 = make_order(db, "C2", 300)

    def broken(*_a: object, **_k: object) -> list[InboxResult]:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(fastpath, "post_batch", broken)
    batcher = fastpath.Batcher(db, clock=CLOCK)
    items = [incoming(verified(o1, "T1", 300)), incoming(Refusal("bad_signature", "no")),
             incoming(verified(o1, "T1", 300))]
    futures: list[Future[InboxResult]] = [Future() for _ in items]
    # when
    batcher.write(list(zip(items, futures, strict=True)))
    # then: every message answered, nothing lost, nothing posted twice
    assert [(f.result().verdict, f.result().code) for f in futures] == [
        ("posted", None), ("refused", "bad_signature"), ("duplicate", None)]
    assert (batcher.batches, batcher.messages) == (0, 0)
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox") == 3
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1


def test_refunds_and_orderless_payments_take_the_one_by_one_path() -> None:
    orderless = incoming(Verified(payment=ChannelPayment(
        channel="online", transaction_id="T", amount=1, paid_at=PAID_AT, account_id="C1"),
        status="SUCCESS"))
    assert not fastpath.batchable(orderless)
    assert fastpath.batchable(incoming(verified("DF1", "T", 1)))
    assert fastpath.batchable(incoming(Refusal("bad_signature", "x")))


def test_two_writers_posting_the_same_notifications_concurrently_post_each_once(
        accounts: Database) -> None:
    # given: two writers, as two server processes have, and 5 notifications sent 8 times each
    db = accounts
    orders = [make_order(db, "C2", 100 + i) for i in range(5)]
    writers = [fastpath.Batcher(db, clock=SystemClock()), fastpath.Batcher(db, clock=SystemClock())]
    barrier = threading.Barrier(40)
    results: list[InboxResult] = []
    errors: list[BaseException] = []

    def fire(k: int) -> None:
        try:
            barrier.wait()
            fut = writers[k % 2].submit(incoming(verified(orders[k % 5], f"T{k % 5}", 100 + k % 5)))
            results.append(fut.result(timeout=60))
        except BaseException as exc:
            errors.append(exc)

    # when
    threads = [threading.Thread(target=fire, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert errors == []
    assert sorted(r.verdict for r in results) == ["duplicate"] * 35 + ["posted"] * 5
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 5
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'payment'") == 5
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox WHERE verdict = 'posted'") == 5
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C2") == -sum(100 + i for i in range(5))
        assert service.check(conn) == []
