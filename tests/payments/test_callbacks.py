"""Channel callbacks end to end: signed by the fakes, through the HTTP endpoints and the inbox.

The concurrency test fires the same notification from many threads at once; on PostgreSQL the
unique index on (channel, transaction id) is what makes exactly one of them post."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock, SystemClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import inbox, service
from dianfei.payments.channels.alipay import AlipayNotifier
from dianfei.payments.channels.config import load_channel_settings
from dianfei.web.app import create_app
from tests.factories import Person, load_people, scalar
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))


@pytest.fixture
def configured(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> tuple[Database, FakeAlipay, FakeWechatPay]:
    alipay, wechat = FakeAlipay(), FakeWechatPay()
    for k, v in {**alipay.env(tmp_path / "alipay.pem"),
                 **wechat.env(tmp_path / "wechat.pem")}.items():
        monkeypatch.setenv(k, v)
    load_people(db, [Person("C1"), Person("C2")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=8070, reference="C1-202602-1", due_on=date(2026, 3, 18))
    return db, alipay, wechat


def order(db: Database, channel: str, fen: int = 8070, account: str = "C1") -> str:
    with db.session() as s:
        return service.create_order(s, account_id=account, amount=fen, channel=channel,
                                    clock=SystemClock()).order_no


def test_alipay_notification_posts_once_and_answers_success(configured) -> None:  # type: ignore[no-untyped-def]
    db, alipay, _ = configured
    no = order(db, "alipay")
    body, ctype = alipay.notification(no, "2026031022001400001", 8070)
    app = create_app(db)
    client = TestClient(app)
    url = "/api/v1/payments/notify/alipay"
    answers = [client.post(url, content=body, headers={"content-type": ctype}) for _ in range(3)]
    assert [(a.status_code, a.text) for a in answers] == [(200, "success")] * 3
    # posted by the server's group-commit writer (payments/fastpath.py), not one by one
    assert app.state.callback_batcher.messages == 3
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1
    assert scalar(db.engine, "SELECT verdict FROM payment_inbox ORDER BY id LIMIT 1") == "posted"
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox WHERE verdict = 'duplicate'") == 2
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C1") == 0 and service.check(conn) == []


def test_forged_and_mismatched_alipay_notifications_are_refused_and_recorded(configured) -> None:  # type: ignore[no-untyped-def]
    db, alipay, _ = configured
    no = order(db, "alipay")
    client = TestClient(create_app(db))
    url = "/api/v1/payments/notify/alipay"
    forged, ctype = alipay.forged(no, "T-GENUINE", 8070)
    wrong_amount, _ = alipay.notification(no, "T-OTHER", 1)
    unknown, _ = alipay.notification("DF-NO-SUCH-ORDER", "T-X", 8070)
    genuine, _ = alipay.notification(no, "T-GENUINE", 8070)
    got = [client.post(url, content=b, headers={"content-type": ctype})
           for b in (forged, wrong_amount, unknown, genuine)]
    assert [(g.status_code, g.text) for g in got] == [(401, "fail"), (400, "fail"), (400, "fail"),
                                                      (200, "success")]
    # the channel's own (signed) refusals are for a person to clarify; the forged one is logged
    # apart (payments/refusal_log.py), never in the inbox the postings write
    assert [m.refusal for m in inbox.worklist(db)] == ["amount_mismatch", "unknown_order"]
    assert scalar(db.engine, "SELECT transaction_id FROM payments") == "T-GENUINE"
    client.app.state.callback_guard.flush()  # type: ignore[attr-defined]
    assert scalar(db.engine, "SELECT code FROM payment_refusal_log") == "bad_signature"


def test_wechatpay_notification_posts_and_answers_204(configured) -> None:  # type: ignore[no-untyped-def]
    db, _, wechat = configured
    no = order(db, "wechatpay")
    headers, body = wechat.notification(no, "4200002026031000001", 8070,
                                        timestamp=datetime.now(UTC))
    client = TestClient(create_app(db))
    url = "/api/v1/payments/notify/wechatpay"
    first = client.post(url, content=body, headers=headers)
    again = client.post(url, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (204, 204)
    stale_headers, stale_body = wechat.notification(
        no, "4200002026031000002", 8070, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    stale = client.post(url, content=stale_body, headers=stale_headers)
    assert stale.status_code == 401 and stale.json()["code"] == "FAIL"
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1


def test_concurrent_duplicates_post_exactly_once(configured) -> None:  # type: ignore[no-untyped-def]
    db, alipay, _ = configured
    orders = [order(db, "alipay", 1000 + i, account="C2") for i in range(5)]
    notifier = AlipayNotifier(load_channel_settings(db.settings, __import__("os").environ).alipay)
    bodies = [alipay.notification(no, f"T{i}", 1000 + i) for i, no in enumerate(orders)]
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def fire(k: int) -> None:
        body, ctype = bodies[k % 5]
        try:
            barrier.wait()
            res = inbox.receive(db, channel="alipay", headers={"content-type": ctype}, body=body,
                                verify=lambda: notifier.verify(body, ctype), clock=SystemClock())
            assert res.verdict in ("posted", "duplicate"), res
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 5
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox WHERE verdict = 'posted'") == 5
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox WHERE verdict = 'duplicate'") == 15
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'payment'") == 5
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C2") == -sum(1000 + i for i in range(5))
        assert service.check(conn) == []
        assert conn.execute(text("SELECT sum(amount) FROM payment_allocations")).scalar() == 5010


def test_a_cumulative_refund_after_a_partial_one_handled_by_hand_is_not_a_full_reversal(configured) -> None:  # type: ignore[no-untyped-def]
    """Alipay's refund_fee is the trade's total refunded so far. After a partial refund of 30.00
    went to the worklist (and was paid back by hand), the next notice says 80.70 in all: reversing
    the whole payment then would give the 30.00 back twice (found in review)."""
    db, alipay, _ = configured
    no = order(db, "alipay")
    trade = "2026031022001400077"
    app = create_app(db)
    client = TestClient(app)
    url = "/api/v1/payments/notify/alipay"
    body, ctype = alipay.notification(no, trade, 8070)
    assert client.post(url, content=body, headers={"content-type": ctype}).text == "success"
    for refund_no, total in (("RF-1", 3000), ("RF-2", 8070), ("RF-2", 8070)):
        body, ctype = alipay.refund_notification(no, trade, 8070, total, refund_no)
        client.post(url, content=body, headers={"content-type": ctype})  # to the worklist
    assert scalar(db.engine, "SELECT status FROM payments") == "posted"
    details = [str(r[0]) for r in db.engine.connect().execute(text(
        "SELECT detail FROM payment_inbox WHERE refusal = 'partial_refund' ORDER BY id")).all()]
    assert len(details) == 3
    assert details[0].startswith("refund RF-1 of 3000 fen")
    assert all("follows earlier partial refunds RF-1" in d for d in details[1:])
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C1") == 0 and service.check(conn) == []


def test_a_full_refund_with_no_earlier_partial_one_reverses_the_payment(configured) -> None:  # type: ignore[no-untyped-def]
    db, alipay, _ = configured
    no = order(db, "alipay")
    client = TestClient(create_app(db))
    url = "/api/v1/payments/notify/alipay"
    for body, ctype in (alipay.notification(no, "T-FULL", 8070),
                        alipay.refund_notification(no, "T-FULL", 8070, 8070, "RF-9")):
        assert client.post(url, content=body, headers={"content-type": ctype}).status_code == 200
    assert scalar(db.engine, "SELECT status FROM payments") == "refunded"
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C1") == 8070
