"""What the payment callbacks keep of the payer (issue 17, personal data): a notification names
its payer — Alipay's ``buyer_logon_id`` is a phone number or an e-mail address, ``buyer_id`` a
lasting id; WeChat Pay's envelope holds the payer's openid for whoever has the APIv3 key — so
``payment_inbox`` keeps the body sealed (``body_enc``, bound to channel and digest) and nothing of
it in clear; the refusal log of unverifiable messages keeps no body at all."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock, SystemClock
from dianfei.db.engine import Database
from dianfei.db.pii import key_usage, open_inbox_body, reencrypt
from dianfei.ledger import service as ledger
from dianfei.payments import inbox, service
from dianfei.payments.channels.base import Refusal
from dianfei.web.app import create_app
from tests.factories import Person, load_people, scalar
from tests.fakes.alipay import FakeAlipay

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))
URL = "/api/v1/payments/notify/alipay"
PHONE = "13812345678"
EMAIL = "zhang.san@example.cn"
BUYER_ID = "2088102177846880"
PAYER = {"buyer_logon_id": PHONE, "buyer_email": EMAIL}


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


def _order(db: Database) -> str:
    with db.session() as s:
        return service.create_order(s, account_id="C1", amount=8070, channel="alipay",
                                    clock=SystemClock()).order_no


def _table(db: Database, table: str) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id")).mappings()]


def _clear(rows: list[dict[str, object]]) -> str:
    """Every stored value as text, bytes decoded as the form was sent (percent-encoded too)."""
    from urllib.parse import unquote_plus

    out = []
    for r in rows:
        for v in r.values():
            s = bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v)
            out += [s, unquote_plus(s)]
    return "\n".join(out)


def test_a_genuine_and_a_signed_refused_notification_are_kept_sealed(
        db: Database, alipay: FakeAlipay) -> None:
    client = TestClient(create_app(db))
    genuine, ctype = alipay.notification(_order(db), "T-PAID", 8070, **PAYER)
    # signed by the channel, refused by us (no such order): it goes to the worklist
    unknown, _ = alipay.notification("DF-NO-SUCH-ORDER", "T-UNKNOWN", 8070, **PAYER)
    assert client.post(URL, content=genuine, headers={"content-type": ctype}).text == "success"
    answer = client.post(URL, content=unknown, headers={"content-type": ctype})
    assert answer.status_code == 400 and answer.text == "fail"
    rows = _table(db, "payment_inbox")
    assert [(r["verdict"], r["transaction_id"]) for r in rows] == [("posted", "T-PAID"),
                                                                   ("refused", "T-UNKNOWN")]
    stored = _clear(rows)
    for personal in (PHONE, EMAIL, BUYER_ID):
        assert personal not in stored
    for row, sent in zip(rows, (genuine, unknown), strict=True):
        assert bytes(row["body"]) == b""  # type: ignore[arg-type]
        assert str(row["body_enc"]).startswith("v2:k0:")
        assert open_inbox_body(db.pii_cipher, str(row["body_enc"]), "alipay",
                               str(row["body_sha256"])) == sent
    with pytest.raises(Exception, match="moved from another row"):  # bound to its channel
        open_inbox_body(db.pii_cipher, str(rows[0]["body_enc"]), "wechatpay",
                        str(rows[0]["body_sha256"]))
    assert key_usage(db.engine)["k0"]["payment_inbox.body_enc"] == 2


def test_a_forged_notification_leaves_nothing_of_its_payer(db: Database, alipay: FakeAlipay) -> None:
    app = create_app(db)
    client = TestClient(app)
    forged, ctype = alipay.forged(_order(db), "T-FORGED", 8070, **PAYER)
    answer = client.post(URL, content=forged, headers={"content-type": ctype})
    assert answer.status_code == 401 and answer.text == "fail"
    app.state.callback_guard.flush()
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox") == 0
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 0
    log = _table(db, "payment_refusal_log")
    assert [r["code"] for r in log] == ["bad_signature"]
    stored = _clear(log)
    for personal in (PHONE, EMAIL, BUYER_ID):
        assert personal not in stored


def test_the_one_by_one_path_seals_too(db: Database) -> None:
    body = json.dumps({"receipt": "R1", "payer_phone": PHONE}).encode()
    res = inbox.receive(db, channel="counter", headers={}, body=body, clock=CLOCK,
                        verify=lambda: Refusal("unknown_order", "no such receipt", "R1", signed=True))
    assert res.verdict == "refused"
    [row] = _table(db, "payment_inbox")
    assert PHONE not in _clear([row])
    assert open_inbox_body(db.pii_cipher, str(row["body_enc"]), "counter", str(row["body_sha256"])) == body


def test_rows_stored_in_clear_before_are_sealed_by_reencrypt(db: Database) -> None:
    body = f"trade_no=T-OLD&buyer_logon_id={PHONE}".encode()
    with db.engine.begin() as conn:  # as migration 0031 left them
        conn.execute(text("INSERT INTO payment_inbox (channel, received_at, headers, body, verdict) "
                          "VALUES ('alipay', :at, '', :body, 'posted')"),
                     {"at": CLOCK.now().replace(tzinfo=None), "body": body})
    assert reencrypt(db.engine, db.pii_cipher) >= 1
    [row] = _table(db, "payment_inbox")
    assert PHONE not in _clear([row])
    assert open_inbox_body(db.pii_cipher, str(row["body_enc"]), "alipay", str(row["body_sha256"])) == body
    assert reencrypt(db.engine, db.pii_cipher) == 0  # done once
