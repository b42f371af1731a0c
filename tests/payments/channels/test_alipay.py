"""Alipay notifications: what Alipay (and python-alipay-sdk) signs is accepted, nothing else is."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus, urlencode
from zoneinfo import ZoneInfo

import pytest

from dianfei.core.settings import load_settings
from dianfei.payments.channels.alipay import AlipayNotifier, canonical_strings
from dianfei.payments.channels.base import ChannelPayment, Refusal, Verified
from dianfei.payments.channels.common import RefundVerified
from dianfei.payments.channels.config import load_channel_settings
from tests.fakes.alipay import FakeAlipay, private_pem

BJ = ZoneInfo("Asia/Shanghai")
PAID = datetime(2024, 3, 1, 10, 34, 56, tzinfo=BJ)


def test_genuine_payment_is_verified_with_every_field(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    # given a genuine TRADE_SUCCESS notification for 123.45 yuan
    body, ct = fake_alipay.notification("DF20240301000001", "2024030122001400001", 12345, paid_at=PAID)
    # when it is verified
    outcome = alipay.verify(body, ct)
    # then it is one payment of 12345 fen at the Beijing payment time, order and trade numbers echoed
    assert isinstance(outcome, Verified)
    assert outcome.status == "TRADE_SUCCESS"
    p = outcome.payment
    assert isinstance(p, ChannelPayment)
    assert (p.channel, p.transaction_id, p.order_no, p.amount) == (
        "alipay",
        "2024030122001400001",
        "DF20240301000001",
        12345,
    )
    assert p.paid_at == PAID and p.paid_at.utcoffset() is not None
    assert p.extra["app_id"] == fake_alipay.app_id
    assert p.extra["notify_id"].startswith("2024")
    assert "buyer_logon_id" not in p.extra  # personal data is not kept


def test_trade_finished_is_the_same_payment(alipay: AlipayNotifier, fake_alipay: FakeAlipay) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, "TRADE_FINISHED", PAID))
    assert isinstance(outcome, Verified) and outcome.payment is not None
    assert outcome.payment.transaction_id == "T1"


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_unpaid_statuses_are_acknowledged_not_paid(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, status: str
) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, status, PAID))
    assert outcome == Verified(payment=None, status=status)


def test_gbk_notification(alipay: AlipayNotifier, fake_alipay: FakeAlipay) -> None:
    # given a notification sent in GBK (charset=GBK, subject 电费缴费 percent-encoded in GBK)
    body, ct = fake_alipay.notification("DF1", "T1", 5000, charset="GBK", paid_at=PAID)
    assert b"subject=%B5%E7%B7%D1%BD%C9%B7%D1" in body
    outcome = alipay.verify(body, ct)
    assert isinstance(outcome, Verified) and outcome.payment is not None
    assert outcome.payment.amount == 5000


def test_charset_from_content_type_when_the_form_has_none(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    params = fake_alipay.params("DF1", "T1", 100, paid_at=PAID, subject="电费")
    del params["charset"]
    signed = fake_alipay.sign(params, charset="gbk")
    body = urlencode(signed, encoding="gbk", quote_via=quote_plus).encode()
    assert isinstance(alipay.verify(body, "application/x-www-form-urlencoded; charset=GBK"), Verified)
    # read as UTF-8 the GBK bytes are not text: refused, not guessed
    assert alipay.verify(body, "application/x-www-form-urlencoded").code == "bad_format"  # type: ignore[union-attr]


def test_forged_signature_is_refused_with_the_claimed_id(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    outcome = alipay.verify(*fake_alipay.forged("DF1", "T-FORGED", 100))
    assert isinstance(outcome, Refusal)
    assert (outcome.code, outcome.transaction_id) == ("bad_signature", "T-FORGED")


@pytest.mark.parametrize(
    "change",
    [
        {"total_amount": "0.01"},
        {"out_trade_no": "DF-OTHER"},
        {"trade_no": "T-OTHER"},
        {"trade_status": "TRADE_SUCCESS", "gmt_payment": "2024-03-02 00:00:00"},
        {"subject": "x"},
        {"app_id": "2021000000000000"},
        {"extra_field": "1"},
        {"notify_id": None},
    ],
)
def test_any_tampered_field_is_refused(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, change: dict[str, str | None]
) -> None:
    body, ct = fake_alipay.notification("DF1", "T1", 12345, paid_at=PAID)
    outcome = alipay.verify(FakeAlipay.tamper(body, **change), ct)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_signature"


def test_sign_type_must_be_rsa2(alipay: AlipayNotifier, fake_alipay: FakeAlipay) -> None:
    body, ct = fake_alipay.notification("DF1", "T1", 100, sign_type="RSA")
    outcome = alipay.verify(body, ct)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_signature" and "RSA2" in outcome.message
    unsigned = FakeAlipay.tamper(body, sign_type=None)
    assert alipay.verify(unsigned, ct).code == "bad_signature"  # type: ignore[union-attr]
    assert alipay.verify(FakeAlipay.tamper(body, sign=None), ct).code == "bad_signature"  # type: ignore[union-attr]


def test_other_app_is_refused_when_app_id_is_configured(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, app_id="2021999999999999"))
    assert isinstance(outcome, Refusal) and outcome.code == "wrong_app" and outcome.transaction_id == "T1"


def test_any_app_is_accepted_when_app_id_is_not_configured(tmp_path: Path, fake_alipay: FakeAlipay) -> None:
    env = fake_alipay.env(tmp_path / "k.pem", check_app_id=False)
    notifier = AlipayNotifier(load_channel_settings(load_settings({}), env).alipay)
    outcome = notifier.verify(*fake_alipay.notification("DF1", "T1", 100, app_id="2021999999999999"))
    assert isinstance(outcome, Verified) and outcome.payment is not None


def test_bare_base64_public_key_as_the_console_gives_it(tmp_path: Path, fake_alipay: FakeAlipay) -> None:
    path = fake_alipay.write_public_key(tmp_path / "bare.txt", bare=True)
    notifier = AlipayNotifier(
        load_channel_settings(load_settings({}), {"DIANFEI_ALIPAY_PUBLIC_KEY_FILE": str(path)}).alipay
    )
    assert isinstance(notifier.verify(*fake_alipay.notification("DF1", "T1", 100)), Verified)


@pytest.mark.parametrize(
    ("text", "fen"), [("0.01", 1), ("0.1", 10), ("1", 100), ("123.45", 12345), ("99999999.99", 9999999999)]
)
def test_amount_text_to_fen_exactly(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, text: str, fen: int
) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 1, total_amount=text))
    assert isinstance(outcome, Verified) and outcome.payment is not None
    assert outcome.payment.amount == fen


@pytest.mark.parametrize(
    "text", ["1.234", "-1.00", "0.00", "1e2", " 1.00", "1,00", "", "01.00", "NaN", "1.", ".5", "１.00"]
)
def test_bad_amounts_are_refused_even_when_signed(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, text: str
) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 1, total_amount=text))
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format" and outcome.transaction_id == "T1"


@pytest.mark.parametrize("text", ["2024-03-01T10:34:56", "2024-02-30 10:00:00", "2024-03-01", ""])
def test_bad_payment_time_is_refused(alipay: AlipayNotifier, fake_alipay: FakeAlipay, text: str) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, gmt_payment=text))
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format"


def test_unknown_status_is_refused(alipay: AlipayNotifier, fake_alipay: FakeAlipay) -> None:
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, trade_status="TRADE_PENDING"))
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format"


def test_duplicate_parameter_is_refused(alipay: AlipayNotifier, fake_alipay: FakeAlipay) -> None:
    body, ct = fake_alipay.notification("DF1", "T1", 100)
    assert alipay.verify(body + b"&total_amount=0.01", ct).code == "bad_format"  # type: ignore[union-attr]


def test_refund_notification_is_a_refund_not_a_payment(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    at = datetime(2024, 3, 5, 9, 0, 0, 123000, tzinfo=BJ)
    outcome = alipay.verify(*fake_alipay.refund_notification("DF1", "T1", 10000, 2500, "RF-1", at))
    assert isinstance(outcome, RefundVerified) and outcome.payment is None
    r = outcome.refund
    assert r is not None
    assert (r.transaction_id, r.refund_id, r.amount, r.refunded_at, r.order_no, r.cumulative) == (
        "T1",
        "RF-1",
        2500,
        at,
        "DF1",
        True,
    )
    full = alipay.verify(*fake_alipay.refund_notification("DF1", "T1", 10000, 10000, "RF-2", at))
    assert isinstance(full, RefundVerified) and full.status == "TRADE_CLOSED"


def test_not_configured_channel_refuses_everything(fake_alipay: FakeAlipay) -> None:
    outcome = AlipayNotifier(None).verify(*fake_alipay.notification("DF1", "T1", 100))
    assert isinstance(outcome, Refusal) and outcome.code == "not_configured"
    assert "DIANFEI_ALIPAY_PUBLIC_KEY_FILE" in outcome.message


def test_canonical_string_official_form_first() -> None:
    params = {"b": "2", "a": "x y", "sign": "S", "sign_type": "RSA2", "e": ""}
    assert canonical_strings(params) == [
        "a=x y&b=2",
        "a=x y&b=2&e=",
        "a=x y&b=2&sign_type=RSA2",
        "a=x y&b=2&e=&sign_type=RSA2",
    ]


# --- cross-check with python-alipay-sdk (what merchants and the independent checks use) --------


def _sdk(fake: FakeAlipay):  # type: ignore[no-untyped-def]
    alipay_sdk = pytest.importorskip("alipay")
    pem = private_pem(fake.key).decode()
    return alipay_sdk.AliPay(
        appid=fake.app_id,
        app_notify_url=None,
        app_private_key_string=pem,
        alipay_public_key_string=fake.public_key_pem.decode(),
        sign_type="RSA2",
    )


def test_sdk_verifies_what_our_fake_sends(fake_alipay: FakeAlipay) -> None:
    sdk = _sdk(fake_alipay)
    body, _ = fake_alipay.notification("DF1", "T1", 12345, paid_at=PAID)
    data = dict(parse_qsl(body.decode(), keep_blank_values=True))
    signature = data.pop("sign")
    assert sdk.verify(data, signature) is True


@pytest.mark.parametrize("with_sign_type", [False, True])
def test_we_verify_what_the_sdk_signs(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, with_sign_type: bool
) -> None:
    # given a notification signed by python-alipay-sdk's sign_data (as an independent check does);
    # sign_data signs every key it is given, so with sign_type in the data it is signed too (rsaCheckV2)
    sdk = _sdk(fake_alipay)
    params = fake_alipay.params("DF-SDK", "T-SDK", 8800, paid_at=PAID, passback_params="")
    if with_sign_type:
        params["sign_type"] = "RSA2"
    signed = sdk.sign_data(dict(params))
    body = (signed if with_sign_type else signed + "&sign_type=RSA2").encode()
    outcome = alipay.verify(body, "application/x-www-form-urlencoded;charset=utf-8")
    assert isinstance(outcome, Verified) and outcome.payment is not None
    assert (outcome.payment.order_no, outcome.payment.amount) == ("DF-SDK", 8800)
    # and the same body with one amount changed is refused
    tampered = FakeAlipay.tamper(body, total_amount="1.00")
    assert alipay.verify(tampered, "application/x-www-form-urlencoded").code == "bad_signature"  # type: ignore[union-attr]


def test_another_seller_under_the_same_key_is_refused(alipay: AlipayNotifier,
                                                     fake_alipay: FakeAlipay) -> None:
    """Merchant binding: a notification Alipay signed for another seller (a service provider's
    sub-merchants share the key) is refused, as a signed message for a person to look at."""
    outcome = alipay.verify(*fake_alipay.notification("DF1", "T1", 100, seller_id="2088999999999999"))
    assert isinstance(outcome, Refusal) and outcome.code == "wrong_merchant" and outcome.signed
    forged = alipay.verify(*fake_alipay.forged("DF1", "T1", 100))
    assert isinstance(forged, Refusal) and not forged.signed


def test_merchant_identities_can_be_required(tmp_path: Path, fake_alipay: FakeAlipay) -> None:
    from dianfei.core.errors import ValidationError
    from dianfei.payments.channels.config import missing_merchant_ids

    env = fake_alipay.env(tmp_path / "k.pem", check_app_id=False)
    assert missing_merchant_ids(load_channel_settings(load_settings({}), env)) == [
        "DIANFEI_ALIPAY_APP_ID", "DIANFEI_ALIPAY_SELLER_ID"]
    strict = {"DIANFEI_PAYMENTS_REQUIRE_MERCHANT_IDS": "1"}
    with pytest.raises(ValidationError, match="DIANFEI_ALIPAY_APP_ID, DIANFEI_ALIPAY_SELLER_ID"):
        load_channel_settings(load_settings({}), {**env, **strict})
    full = fake_alipay.env(tmp_path / "k2.pem")
    assert load_channel_settings(load_settings({}), {**full, **strict}).alipay
