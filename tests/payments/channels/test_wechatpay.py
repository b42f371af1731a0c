"""WeChat Pay APIv3 notifications: signature, serial, replay window, decryption, ids, parsing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dianfei.core.settings import load_settings
from dianfei.payments.channels.base import ChannelPayment, Refusal, Verified
from dianfei.payments.channels.common import RefundVerified
from dianfei.payments.channels.config import load_channel_settings
from dianfei.payments.channels.wechatpay import WechatPayNotifier
from tests.fakes.alipay import private_pem
from tests.fakes.wechatpay import FakeWechatPay

BJ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 3, 1, 2, 35, 0, tzinfo=UTC)
PAID = datetime(2024, 3, 1, 10, 34, 56, tzinfo=BJ)


def _note(fake: FakeWechatPay, **kw: object) -> tuple[dict[str, str], bytes]:
    kw.setdefault("timestamp", NOW)
    return fake.notification("DF20240301000002", "4200002024030112345678", 12345, "SUCCESS", PAID, **kw)  # type: ignore[arg-type]


def test_genuine_payment_is_verified_with_every_field(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay
) -> None:
    headers, body = _note(fake_wechat, payer_total=12000)
    outcome = wechat.verify(headers, body, now=NOW)
    assert isinstance(outcome, Verified) and outcome.status == "SUCCESS"
    p = outcome.payment
    assert isinstance(p, ChannelPayment)
    assert (p.channel, p.transaction_id, p.order_no, p.amount, p.paid_at) == (
        "wechatpay",
        "4200002024030112345678",
        "DF20240301000002",
        12345,
        PAID,
    )
    # the order's total is what is paid to the account; what the payer paid after coupons is kept
    assert p.extra["payer_total"] == "12000"
    assert p.extra["mchid"] == fake_wechat.mchid and p.extra["notify_event_type"] == "TRANSACTION.SUCCESS"


@pytest.mark.parametrize("style", ["lower", "upper", "django"])
def test_header_names_any_case(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, style: str) -> None:
    headers, body = _note(fake_wechat)
    if style == "lower":
        headers = {k.lower(): v for k, v in headers.items()}
    elif style == "upper":
        headers = {k.upper(): v for k, v in headers.items()}
    else:
        headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert isinstance(wechat.verify(headers, body, now=NOW), Verified)


def test_forged_signature_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    headers, body = fake_wechat.forged("DF1", "4200-FORGED", 100, timestamp=NOW)
    outcome = wechat.verify(headers, body, now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_signature"


def test_body_altered_after_signing_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    headers, body = _note(fake_wechat)
    headers, body = FakeWechatPay.altered_body(headers, body, b'"summary":"', b'"summary":"x')
    assert wechat.verify(headers, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_reencrypted_resource_with_old_signature_is_refused(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay
) -> None:
    # someone who stole the APIv3 key but not the platform private key cannot change the amount
    headers, body = _note(fake_wechat)
    forged = fake_wechat.reencrypted(headers, body, timestamp=NOW, amount={"total": 1, "currency": "CNY"})
    assert wechat.verify(*forged, now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_timestamp_or_nonce_changed_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    headers, body = _note(fake_wechat)
    assert (
        wechat.verify({**headers, "Wechatpay-Timestamp": str(int(NOW.timestamp()) + 1)}, body, now=NOW).code
        == "bad_signature"
    )  # type: ignore[union-attr]
    assert wechat.verify({**headers, "Wechatpay-Nonce": "X" * 32}, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_signtest_probe_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    headers, body = _note(fake_wechat)
    probe = {**headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]}
    assert wechat.verify(probe, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_wrong_serial_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    outcome = wechat.verify(
        *_note(fake_wechat, serial="PUB_KEY_ID_0000000000000000000000000000000000"), now=NOW
    )
    assert isinstance(outcome, Refusal) and outcome.code == "wrong_serial"


def test_serial_not_checked_when_no_key_id_is_configured(tmp_path: Path, fake_wechat: FakeWechatPay) -> None:
    env = fake_wechat.env(tmp_path / "k.pem", check_ids=False)
    notifier = WechatPayNotifier(load_channel_settings(load_settings({}), env).wechatpay)
    assert isinstance(
        notifier.verify(*_note(fake_wechat, serial="5157F09EFDC096DE15EBE81A47057A72"), now=NOW), Verified
    )


@pytest.mark.parametrize(
    ("age_s", "accepted"), [(0, True), (300, True), (-300, True), (301, False), (-301, False), (86400, False)]
)
def test_replay_window(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, age_s: int, accepted: bool
) -> None:
    headers, body = _note(fake_wechat, timestamp=NOW - timedelta(seconds=age_s))
    outcome = wechat.verify(headers, body, now=NOW)
    if accepted:
        assert isinstance(outcome, Verified)
    else:
        assert isinstance(outcome, Refusal) and outcome.code == "replay"


def test_replay_window_is_configurable(tmp_path: Path, fake_wechat: FakeWechatPay) -> None:
    env = {**fake_wechat.env(tmp_path / "k.pem"), "DIANFEI_WECHATPAY_REPLAY_WINDOW_SECONDS": "3600"}
    notifier = WechatPayNotifier(load_channel_settings(load_settings({}), env).wechatpay)
    stale = fake_wechat.stale("DF1", "4201", 100, now=NOW, age=timedelta(minutes=59))
    assert isinstance(notifier.verify(*stale, now=NOW), Verified)


def test_wrong_apiv3_key_cannot_decrypt(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    outcome = wechat.verify(*_note(fake_wechat, apiv3_key="Z" * 32), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "decrypt_failed"


def test_other_merchant_or_app_is_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    other_mch = wechat.verify(*_note(fake_wechat, mchid="1900009999"), now=NOW)
    assert isinstance(other_mch, Refusal) and other_mch.code == "wrong_merchant"
    assert other_mch.transaction_id == "4200002024030112345678"
    other_app = wechat.verify(*_note(fake_wechat, appid="wx0000000000000000"), now=NOW)
    assert isinstance(other_app, Refusal) and other_app.code == "wrong_app"


@pytest.mark.parametrize("state", ["NOTPAY", "CLOSED", "REFUND", "PAYERROR", "USERPAYING"])
def test_other_trade_states_are_acknowledged_not_paid(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, state: str
) -> None:
    headers, body = fake_wechat.notification("DF1", "4201", 100, state, PAID, timestamp=NOW)
    assert wechat.verify(headers, body, now=NOW) == Verified(payment=None, status=state)


@pytest.mark.parametrize(
    "amount",
    [
        {"total": 0},
        {"total": -5},
        {"total": "100"},
        {"total": 1.5},
        {"total": True},
        {},
        {"total": 100, "currency": "USD"},
    ],
)
def test_bad_amounts_are_refused_even_when_signed(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, amount: dict[str, object]
) -> None:
    outcome = wechat.verify(*_note(fake_wechat, amount=amount), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format"


@pytest.mark.parametrize("success_time", ["2024-03-01 10:34:56", "2024-03-01T10:34:56", "", "yesterday"])
def test_success_time_needs_an_offset(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, success_time: str
) -> None:
    outcome = wechat.verify(*_note(fake_wechat, success_time=success_time), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "bad_format"


def test_missing_headers_are_refused(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    headers, body = _note(fake_wechat)
    for name in ("Wechatpay-Serial", "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce"):
        partial = {k: v for k, v in headers.items() if k != name}
        outcome = wechat.verify(partial, body, now=NOW)
        assert (
            isinstance(outcome, Refusal)
            and outcome.code == "bad_signature"
            and name.lower() in outcome.message
        )
    wrong_type = {**headers, "Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}
    assert wechat.verify(wrong_type, body, now=NOW).code == "bad_signature"  # type: ignore[union-attr]


def test_refund_success_is_a_refund(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    at = datetime(2024, 3, 5, 9, 0, 0, tzinfo=BJ)
    outcome = wechat.verify(
        *fake_wechat.refund_notification(
            "DF1", "4201", 10000, 2500, "50300000000001", "RF-1", at, timestamp=NOW
        ),
        now=NOW,
    )
    assert isinstance(outcome, RefundVerified) and outcome.payment is None
    assert outcome.status == "REFUND.SUCCESS"
    r = outcome.refund
    assert r is not None
    assert (r.transaction_id, r.refund_id, r.amount, r.refunded_at, r.order_no, r.cumulative) == (
        "4201",
        "50300000000001",
        2500,
        at,
        "DF1",
        False,
    )
    abnormal = wechat.verify(
        *fake_wechat.refund_notification(
            "DF1", "4201", 10000, 2500, "50300000000002", "RF-2", at, status="ABNORMAL", timestamp=NOW
        ),
        now=NOW,
    )
    assert abnormal == Verified(payment=None, status="REFUND.ABNORMAL")


def test_not_configured_channel_refuses_everything(fake_wechat: FakeWechatPay) -> None:
    outcome = WechatPayNotifier(None).verify(*_note(fake_wechat), now=NOW)
    assert isinstance(outcome, Refusal) and outcome.code == "not_configured"


# --- cross-check with wechatpayv3 (what merchants and the independent checks use) --------------


def _core(fake: FakeWechatPay):  # type: ignore[no-untyped-def]
    core_mod = pytest.importorskip("wechatpayv3.core")
    merchant_key = private_pem(fake.key).decode()  # any RSA private key: unused for callbacks
    return core_mod.Core(
        mchid=fake.mchid,
        cert_serial_no="444F4864EA9B34415...",
        private_key=merchant_key,
        apiv3_key=fake.apiv3_key,
        public_key=fake.public_key_pem.decode(),
        public_key_id=fake.public_key_id,
    )


def test_wechatpayv3_accepts_what_our_fake_sends(fake_wechat: FakeWechatPay) -> None:
    core = _core(fake_wechat)
    headers, body = _note(fake_wechat)
    result = core.callback(headers, body)
    assert result is not None
    assert result["resource"]["out_trade_no"] == "DF20240301000002"
    assert result["resource"]["amount"]["total"] == 12345


def test_we_accept_what_wechatpayv3_signs(wechat: WechatPayNotifier, fake_wechat: FakeWechatPay) -> None:
    # given a notification signed with wechatpayv3's own rsa_sign and its key loader
    utils = pytest.importorskip("wechatpayv3.utils")
    key = utils.load_private_key(private_pem(fake_wechat.key).decode())
    tx = fake_wechat.transaction("DF-V3", "4200000000000000000099", 4321, paid_at=PAID)
    nonce = "k3Xy7Qw9Lp2M"
    ct = AESGCM(fake_wechat.apiv3_key.encode()).encrypt(
        nonce.encode(), json.dumps(tx).encode(), b"transaction"
    )
    body = json.dumps(
        {
            "id": "EV-1",
            "create_time": "2024-03-01T10:35:00+08:00",
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ct).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
    )
    ts, hnonce = str(int(NOW.timestamp())), "593BEC0C930BF1AFEB40B4A08C8FB242"
    signature = utils.rsa_sign(key, f"{ts}\n{hnonce}\n{body}\n")
    headers = {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": hnonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": fake_wechat.public_key_id,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    # and wechatpayv3 itself agrees it is genuine
    assert _core(fake_wechat).callback(headers, body) is not None
    outcome = wechat.verify(headers, body.encode(), now=NOW)
    assert isinstance(outcome, Verified) and outcome.payment is not None
    assert (outcome.payment.order_no, outcome.payment.amount) == ("DF-V3", 4321)
