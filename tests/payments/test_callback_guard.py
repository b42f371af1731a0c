"""Callbacks under attack (payments/refusal_log.py): junk never reaches the postings' writer.

Anyone can post to the callback URLs. What nobody proved the channel sent — a bad signature,
garbage, a body too large — is answered at once and kept in a capped log apart from the inbox;
a source that sends nothing but junk is throttled; genuine notifications, sent in between, are
posted exactly once whatever else arrives.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dianfei.core.clock import BUSINESS_TZ, FixedClock, SystemClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import fastpath, inbox, service
from dianfei.payments.channels.base import ChannelPayment, Refusal, Verified
from dianfei.payments.refusal_log import SUMMARY, GuardSettings, load_guard_settings, printable
from dianfei.web.app import create_app
from tests.factories import Person, load_people, scalar
from tests.fakes.alipay import FakeAlipay

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))
URL = "/api/v1/payments/notify/alipay"


@pytest.fixture
def alipay(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAlipay:
    fake = FakeAlipay()
    for k, v in fake.env(tmp_path / "alipay.pem").items():
        monkeypatch.setenv(k, v)
    load_people(db, [Person("C1")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=8070, reference="C1-202602-1", due_on=date(2026, 3, 18))
    return fake


def _order(db: Database, fen: int = 8070) -> str:
    with db.session() as s:
        return service.create_order(s, account_id="C1", amount=fen, channel="alipay",
                                    clock=SystemClock()).order_no


def _log(db: Database) -> list[tuple[str, int, str | None]]:
    with db.engine.connect() as conn:
        from sqlalchemy import text

        return [(str(r[0]), int(r[1]), r[2]) for r in conn.execute(text(
            "SELECT code, count, detail FROM payment_refusal_log ORDER BY id")).all()]


def test_junk_is_logged_apart_and_capped_while_the_genuine_one_posts_once(
        db: Database, alipay: FakeAlipay, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIANFEI_CALLBACK_KEEP_PER_MINUTE", "3")
    no = _order(db)
    app = create_app(db)
    client = TestClient(app)
    forged, ctype = alipay.forged(no, "T-GENUINE", 8070)
    genuine, _ = alipay.notification(no, "T-GENUINE", 8070)
    answers = [client.post(URL, content=forged, headers={"content-type": ctype}) for _ in range(5)]
    answers.append(client.post(URL, content=genuine, headers={"content-type": ctype}))
    answers += [client.post(URL, content=b"junk=\x00" * 10, headers={"content-type": ctype})
                for _ in range(5)]
    answers.append(client.post(URL, content=genuine, headers={"content-type": ctype}))
    assert [a.status_code for a in answers] == [401] * 5 + [200] + [401] * 5 + [200]
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1
    # the inbox holds the genuine deliveries only: nothing anyone could send fills it
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox") == 2
    app.state.callback_guard.flush()
    log = _log(db)
    kept = [row for row in log if row[2] != SUMMARY]
    summaries = {row[0]: row[1] for row in log if row[2] == SUMMARY}
    assert len(kept) == 3 and sum(r[1] for r in log) == 10
    assert sum(summaries.values()) == 7
    assert scalar(db.engine, "SELECT max(body_size) FROM payment_refusal_log") > 0
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C1") == 0


def test_a_body_over_the_limit_is_refused_before_it_is_stored(db: Database, alipay: FakeAlipay) -> None:
    app = create_app(db)
    client = TestClient(app)
    big = b"a=" + b"x" * (64 * 1024)
    answer = client.post(URL, content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.text) == (413, "fail")
    app.state.callback_guard.flush()
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox") == 0
    assert _log(db)[0][0] == "too_large"
    assert scalar(db.engine, "SELECT body_sha256 FROM payment_refusal_log") is None


def test_a_source_of_nothing_but_junk_is_throttled_a_channel_never(
        db: Database, alipay: FakeAlipay, monkeypatch: pytest.MonkeyPatch) -> None:
    # the test client is "the proxy": X-Forwarded-For says who is behind it
    monkeypatch.setenv("DIANFEI_CALLBACK_TRUSTED_PROXIES", "testclient")
    monkeypatch.setenv("DIANFEI_CALLBACK_THROTTLE_AFTER", "4")
    no = _order(db)
    client = TestClient(create_app(db))
    forged, ctype = alipay.forged(no, "T-1", 8070)
    genuine, _ = alipay.notification(no, "T-1", 8070)

    def post(body: bytes, source: str) -> int:
        headers = {"content-type": ctype, "x-forwarded-for": f"198.51.100.7, {source}"}
        return client.post(URL, content=body, headers=headers).status_code

    assert [post(forged, "203.0.113.9") for _ in range(6)] == [401] * 4 + [429] * 2
    # the channel's address sent one genuine notification: its junk is refused, never throttled
    assert post(genuine, "110.75.1.1") == 200
    assert [post(forged, "110.75.1.1") for _ in range(6)] == [401] * 6
    assert post(genuine, "110.75.1.1") == 200
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1


def test_a_nul_in_a_refused_message_cannot_poison_the_batch(db: Database) -> None:
    """Found in review: a refusal holding a NUL, in the same PostgreSQL transaction as genuine
    payments, rolled the whole batch back."""
    load_people(db, [Person("C1")])
    with db.session() as s:
        no = service.create_order(s, account_id="C1", amount=500, channel="alipay", clock=CLOCK).order_no
    paid = Verified(payment=ChannelPayment(channel="alipay", transaction_id="T-OK", amount=500,
                                           paid_at=CLOCK.now(), order_no=no), status="TRADE_SUCCESS")
    items = [fastpath.Incoming("alipay", {}, b"x", Refusal("unknown_order", "no order D\x00F", "T\x00BAD",
                                                             signed=True), CLOCK.now()),
             fastpath.Incoming("alipay", {}, b"y", paid, CLOCK.now())]
    with db.engine.connect() as conn, conn.begin():
        res = fastpath.post_batch(conn, items, clock=CLOCK, cipher=db.pii_cipher)
    assert [r.verdict for r in res] == ["refused", "posted"]
    assert [m.transaction_id for m in inbox.worklist(db)] == ["TBAD"]


def test_settings_and_the_text_kept_of_an_unproven_sender() -> None:
    s = load_guard_settings({"payments": {"callbacks": {"max_body": 4096}}},
                            env={"DIANFEI_CALLBACK_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2"})
    assert (s.max_body, s.trusted_proxies, s.keep_per_minute) == (
        4096, frozenset({"10.0.0.1", "10.0.0.2"}), GuardSettings().keep_per_minute)
    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match="max_rows must be positive"):
        load_guard_settings({}, env={"DIANFEI_CALLBACK_MAX_ROWS": "0"})
    assert printable("T\x00X\r\n\u202e電費", 64) == "TX電費"
    assert printable("\x00\x01", 64) is None


def test_the_writers_end_with_the_database_writing_what_they_held(
        db: Database, alipay: FakeAlipay) -> None:
    no = _order(db)
    app = create_app(db)
    # a flush every hour: what is logged is still pending when the database closes
    app.state.callback_guard.settings = dataclasses.replace(app.state.callback_guard.settings,
                                                            flush_seconds=3600.0)
    client = TestClient(app)
    forged, ctype = alipay.forged(no, "T-1", 8070)
    genuine, _ = alipay.notification(no, "T-1", 8070)
    assert client.post(URL, content=forged, headers={"content-type": ctype}).status_code == 401
    assert client.post(URL, content=genuine, headers={"content-type": ctype}).status_code == 200
    guard, batcher = app.state.callback_guard, app.state.callback_batcher
    threads = [guard._thread, batcher._thread]
    assert all(t is not None and t.is_alive() for t in threads)
    assert scalar(db.engine, "SELECT count(*) FROM payment_refusal_log") == 0
    db.close()  # what the server's shutdown and the test's database fixture do
    # a thread left running retried against a dropped database and logged from its own thread
    assert not any(t.is_alive() for t in threads)
    assert scalar(db.engine, "SELECT count(*) FROM payment_refusal_log") == 1
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1
    db.close()  # twice is harmless (the fixture closes it again)


def test_a_flush_waits_for_the_writer_thread_holding_rows(db: Database) -> None:
    """Found by CI on a loaded machine: the writer thread had taken the pending rows and not yet
    committed them when the caller's flush ran, found nothing pending, and returned before the
    rows were visible. A flush now waits for the write in flight."""
    import threading

    from sqlalchemy import event

    from dianfei.payments.refusal_log import CallbackGuard

    writing, release = threading.Event(), threading.Event()

    def hold_the_writer(conn: object, cursor: object, statement: str, *args: object) -> None:
        if threading.current_thread().name == "refusal-log" and "payment_refusal_log" in statement \
                and statement.lstrip().upper().startswith("INSERT"):
            writing.set()
            release.wait(timeout=30)

    event.listen(db.engine, "before_cursor_execute", hold_the_writer)
    guard = CallbackGuard(db, CLOCK, GuardSettings(flush_seconds=0.01))
    try:
        guard.refused(channel="alipay", source="203.0.113.9", code="bad_signature", detail="forged",
                      body=b"x")
        assert writing.wait(timeout=30), "the writer thread never wrote"
        seen: list[int] = []

        def flush_and_look() -> None:
            guard.flush()
            seen.append(scalar(db.engine, "SELECT count(*) FROM payment_refusal_log"))

        caller = threading.Thread(target=flush_and_look)
        caller.start()
        caller.join(timeout=0.5)  # without the fix the caller is done here, having seen nothing
        release.set()
        caller.join(timeout=30)
        assert seen == [1]
    finally:
        release.set()
        guard.stop()
        event.remove(db.engine, "before_cursor_execute", hold_the_writer)
