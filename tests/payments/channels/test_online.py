"""Online banking / app gateway callbacks: HMAC-SHA256 over timestamp, nonce and body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dianfei.payments.channels.base import ChannelPayment, Refusal, Verified
from dianfei.payments.channels.online import OnlineNotifier, sign
from tests.payments.channels.conftest import ONLINE_SECRET

NOW = datetime(2024, 3, 1, 2, 35, 0, tzinfo=UTC)
NONCE = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"


def _callback(
    payload: dict[str, object], *, at: datetime = NOW, secret: str = ONLINE_SECRET, nonce: str = NONCE
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    ts = str(int(at.timestamp()))
    return {
        "Dianfei-Timestamp": ts,
        "Dianfei-Nonce": nonce,
        "Dianfei-Signature": sign(secret.encode(), ts, nonce, body),
    }, body


PAYLOAD = {
    "order_no": "DF20240301000003",
    "transaction_id": "ICBC20240301000123",
    "amount": 12345,
    "paid_at": "2024-03-01T10:34:56+08:00",
    "status": "SUCCESS",
    "payer_channel": "app",
}


def test_genuine_callback(online: OnlineNotifier) -> None:
    outcome = online.verify(*_callback(PAYLOAD), now=NOW)
    assert isinstance(outcome, Verified)
    p = outcome.payment
    assert isinstance(p, ChannelPayment)
    assert (p.channel, p.transaction_id, p.order_no, p.amount, p.paid_at.isoformat()) == (
        "online",
        "ICBC20240301000123",
        "DF20240301000003",
        12345,
        "2024-03-01T10:34:56+08:00",
    )
    assert p.extra == {"payer_channel": "app"}


def test_wrong_secret_or_altered_body_is_refused(online: OnlineNotifier) -> None:
    assert online.verify(*_callback(PAYLOAD, secret="x" * 32), now=NOW).code == "bad_signature"  # type: ignore[union-attr]
    headers, body = _callback(PAYLOAD)
    assert online.verify(headers, body.replace(b"12345", b"12346"), now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_stale_callback_is_a_replay(online: OnlineNotifier) -> None:
    outcome = online.verify(*_callback(PAYLOAD, at=NOW - timedelta(minutes=6)), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "replay"


def test_other_status_is_acknowledged(online: OnlineNotifier) -> None:
    assert online.verify(*_callback({**PAYLOAD, "status": "FAILED"}), now=NOW) == Verified(None, "FAILED")


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "123.45"},
        {"amount": 0},
        {"amount": 1.5},
        {"order_no": ""},
        {"paid_at": "2024-03-01 10:34:56"},
        {"transaction_id": None},
    ],
)
def test_bad_fields_are_refused(online: OnlineNotifier, change: dict[str, object]) -> None:
    outcome = online.verify(*_callback({**PAYLOAD, **change}), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format"


def test_missing_or_malformed_headers(online: OnlineNotifier) -> None:
    headers, body = _callback(PAYLOAD)
    assert online.verify({}, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]
    assert online.verify({**headers, "Dianfei-Signature": "zz"}, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]
    assert online.verify(*_callback(PAYLOAD, nonce="short"), now=NOW).code == "bad_signature"  # type: ignore[union-attr]
