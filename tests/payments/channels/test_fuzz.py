"""Untrusted input: whatever arrives, every adapter answers with a Verified or a Refusal, never an
exception, and a mutated notification is never accepted as something it was not.

Cases hypothesis found while this was written are kept as explicit tests at the bottom."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dianfei.payments.channels.alipay import AlipayNotifier
from dianfei.payments.channels.base import Refusal, Verified
from dianfei.payments.channels.online import OnlineNotifier
from dianfei.payments.channels.wechatpay import WechatPayNotifier
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay

NOW = datetime(2024, 3, 1, 2, 35, 0, tzinfo=UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@cache
def _alipay_genuine() -> tuple[bytes, str]:
    # built once: hypothesis needs the same input on every run of a case
    return FakeAlipay().notification("DF1", "T1", 12345, paid_at=NOW)


@cache
def _wechat_genuine() -> tuple[tuple[tuple[str, str], ...], bytes]:
    headers, body = FakeWechatPay().notification("DF1", "4201", 12345, "SUCCESS", NOW, timestamp=NOW)
    return tuple(headers.items()), body


form_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@FUZZ
@given(body=st.binary(max_size=600), content_type=st.text(max_size=60))
def test_alipay_random_bytes(alipay: AlipayNotifier, body: bytes, content_type: str) -> None:
    assert isinstance(alipay.verify(body, content_type), Refusal)


@FUZZ
@given(params=st.dictionaries(form_text, form_text, max_size=12))
def test_alipay_random_forms(alipay: AlipayNotifier, fake_alipay: FakeAlipay, params: dict[str, str]) -> None:
    body, ct = FakeAlipay.encode({**params, "sign_type": "RSA2", "sign": "AAAA"})
    assert isinstance(alipay.verify(body, ct), Refusal)


@FUZZ
@given(data=st.data())
def test_alipay_mutated_genuine_body(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay, data: st.DataObject
) -> None:
    body, ct = _alipay_genuine()
    genuine = alipay.verify(body, ct)
    pos = data.draw(st.integers(0, len(body) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = body[:pos] + bytes([byte]) + body[pos + 1 :]
    outcome = alipay.verify(mutated, ct)
    # a mutation either breaks the proof or leaves the same decoded notification (e.g. %3A → %3a)
    assert isinstance(outcome, Refusal) or outcome == genuine


header_values = st.text(max_size=80)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Wechatpay-Serial",
                "Wechatpay-Signature",
                "Wechatpay-Timestamp",
                "Wechatpay-Nonce",
                "Wechatpay-Signature-Type",
                "X",
            ]
        ),
        header_values,
    ),
    body=st.binary(max_size=400),
)
def test_wechat_random_headers_and_body(
    wechat: WechatPayNotifier, headers: dict[str, str], body: bytes
) -> None:
    assert isinstance(wechat.verify(headers, body, now=NOW), Refusal)


@FUZZ
@given(data=st.data())
def test_wechat_mutated_genuine(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, data: st.DataObject
) -> None:
    items, body = _wechat_genuine()
    headers = dict(items)
    assert isinstance(wechat.verify(headers, body, now=NOW), Verified)
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(body) - 1))
        body = (
            body[:pos]
            + bytes([data.draw(st.integers(0, 255).filter(lambda b: b != body[pos]))])
            + body[pos + 1 :]
        )
    else:
        name = data.draw(
            st.sampled_from(
                ["Wechatpay-Serial", "Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce"]
            )
        )
        value = data.draw(header_values.filter(lambda v: v.strip() != headers[name]))
        headers = {**headers, name: value}
    assert isinstance(wechat.verify(headers, body, now=NOW), Refusal)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["Dianfei-Timestamp", "Dianfei-Nonce", "Dianfei-Signature"]), header_values
    ),
    body=st.binary(max_size=300),
)
def test_online_random(online: OnlineNotifier, headers: dict[str, str], body: bytes) -> None:
    assert isinstance(online.verify(headers, body, now=NOW), Refusal)


# --- found cases, kept -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "\u0100=1".encode(),  # raw non-ASCII byte in a key: urllib's bytes path refused it
        b"sign_type=RSA2&sign=%ZZ",  # a broken percent escape
        b"charset=EBCDIC&sign=a&sign_type=RSA2",  # a charset we do not speak
        b"&&&=&=",
    ],
)
def test_alipay_found_cases(alipay: AlipayNotifier, body: bytes) -> None:
    assert isinstance(alipay.verify(body, "application/x-www-form-urlencoded"), Refusal)


@pytest.mark.parametrize("timestamp", ["99999999999999", "１２３", "-1", " "])
def test_wechat_found_timestamps(
    wechat: WechatPayNotifier, fake_wechat: FakeWechatPay, timestamp: str
) -> None:
    headers, body = fake_wechat.notification("DF1", "4201", 100, timestamp=NOW)
    # a timestamp past year 9999 overflowed datetime before the length check
    assert isinstance(wechat.verify({**headers, "Wechatpay-Timestamp": timestamp}, body, now=NOW), Refusal)


def test_genuine_still_verifies_for_the_fuzz_baseline(
    alipay: AlipayNotifier, fake_alipay: FakeAlipay
) -> None:
    assert isinstance(alipay.verify(*fake_alipay.notification("DF1", "T1", 1)), Verified)
