"""The Alibaba Cloud SMS adapter: the signature, the request, the gateway's answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.notify.channels import Message, Recipient, SendError
from dianfei.notify.render import SAMPLE_CONTEXT, templates
from dianfei.notify.sms import RETRYABLE_CODES, AliyunSmsSender, AliyunSmsSettings, load_sms_settings, sign
from tests.fakes.sms_gateway import ACCESS_KEY_ID, FakeSmsGateway, expected_signature
from tests.notify._util import SMS_TEMPLATES, sms_sender


def test_signature_matches_the_documented_example() -> None:
    # the worked example of Alibaba Cloud's SMS API documentation (HTTP 协议及签名)
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert sign(params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), min_size=1, max_size=6))
def test_signature_agrees_with_an_independent_encoder(params: dict[str, str]) -> None:
    # any text, including *, ~, spaces, slashes, CJK and emoji, is encoded as the service does
    assert sign(params, "s3cret") == expected_signature(params, "s3cret")


def _message(phone: str | None = "13800138000", notice: str = "reminder") -> Message:
    rendered = templates().render(notice, "sms", "zh-CN", SAMPLE_CONTEXT,
                                  extra={"utility_name": "城关供电公司", "hotline": "95598"})
    return Message(outbox_id=7, key="dun:C1:reminder:sms", account_id="C1", attempt=1,
                   recipient=Recipient(customer_id="C1", name="张三", phone=phone), rendered=rendered,
                   at=datetime(2026, 11, 2, 2, tzinfo=UTC))


def test_the_gateway_receives_template_code_and_params(gateway: FakeSmsGateway) -> None:
    result = sms_sender(gateway).send(_message())
    [sent] = gateway.sent
    assert sent["phone"] == "13800138000" and sent["template_code"] == "SMS_0001"
    assert sent["params"] == {"account_id": "C00000001", "amount_due": "123.45",
                              "bill_link": "https://pay.example.cn/b/C00000001-202609-1",
                              "customer_name": "张三", "due_on": "2026-10-25"}
    assert sent["out_id"] == "dun:C1:reminder:sms"
    assert result.provider_ref == sent["biz_id"]


def test_a_wrong_secret_is_refused_by_the_signature_check(gateway: FakeSmsGateway) -> None:
    sender = AliyunSmsSender(AliyunSmsSettings(access_key_id=ACCESS_KEY_ID, access_key_secret="wrong",
                                               sign_name="城关供电", endpoint=gateway.endpoint,
                                               templates=SMS_TEMPLATES))
    with pytest.raises(SendError) as err:
        sender.send(_message())
    assert (err.value.code, err.value.retryable) == ("SignatureDoesNotMatch", False)
    assert gateway.sent == []


@pytest.mark.parametrize(("code", "retryable"), [
    ("isv.BUSINESS_LIMIT_CONTROL", True), ("isp.SYSTEM_ERROR", True), ("Throttling.User", True),
    ("isv.MOBILE_NUMBER_ILLEGAL", False), ("isv.TEMPLATE_MISSING_PARAMETERS", False),
    ("isv.BLACK_KEY_CONTROL_LIMIT", False),
])
def test_error_codes_are_told_apart(gateway: FakeSmsGateway, code: str, retryable: bool) -> None:
    gateway.fail_next(code)
    with pytest.raises(SendError) as err:
        sms_sender(gateway).send(_message())
    assert (err.value.code, err.value.retryable, err.value.outcome_unknown) == (code, retryable, False)
    assert (code in RETRYABLE_CODES) is retryable


def test_a_non_mobile_number_is_refused_before_the_round_trip(gateway: FakeSmsGateway) -> None:
    with pytest.raises(SendError) as err:
        sms_sender(gateway).send(_message(phone="0571-8888888"))
    assert (err.value.code, err.value.retryable) == ("isv.MOBILE_NUMBER_ILLEGAL", False)
    assert gateway.requests == 0


def test_a_notice_without_a_template_code_is_terminal(gateway: FakeSmsGateway) -> None:
    sender = AliyunSmsSender(AliyunSmsSettings(access_key_id=ACCESS_KEY_ID, access_key_secret="x",
                                               sign_name="城关供电", endpoint=gateway.endpoint))
    with pytest.raises(SendError) as err:
        sender.send(_message())
    assert err.value.code == "no_template_code" and gateway.requests == 0


def test_template_param_is_compact_json_of_strings(gateway: FakeSmsGateway) -> None:
    params = sms_sender(gateway).request_params(_message(notice="stop_notice"))
    assert json.loads(params["TemplateParam"])["stop_on"] == "2026-11-08"
    assert " " not in params["TemplateParam"]
    assert params["Signature"] == expected_signature(
        {k: v for k, v in params.items() if k != "Signature"},
        "fake-secret-0123456789")


def test_settings_need_secret_and_sign_name_once_a_key_is_set() -> None:
    assert load_sms_settings({}, env={}) is None
    with pytest.raises(Exception, match="access_key_secret, sign_name missing"):
        load_sms_settings({"sms": {"access_key_id": "id"}}, env={})
    s = load_sms_settings({"sms": {"access_key_id": "id", "templates": {"reminder": "SMS_1",
                                                                        "reminder.en": "SMS_2"}}},
                          env={"DIANFEI_SMS_ACCESS_KEY_SECRET": "x", "DIANFEI_SMS_SIGN_NAME": "供电"})
    assert s is not None
    assert (s.template_code("reminder", "zh-CN"), s.template_code("reminder", "en")) == ("SMS_1", "SMS_2")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40), st.text(min_size=1, max_size=30))
def test_the_precomputed_query_is_the_signed_request_params(name: str, key: str) -> None:
    # dispatch signs through _Signer (common parts encoded once); the result must be the query
    # request_params describes, signed as the independent encoder signs it
    from urllib.parse import parse_qsl

    from dianfei.notify.sms import percent_encode

    sender = AliyunSmsSender(AliyunSmsSettings(access_key_id="k1", access_key_secret="s3cret*~ /",
                                               sign_name="城关供电", templates=SMS_TEMPLATES))
    msg = _message()
    rendered = templates().render("reminder", "sms", "zh-CN", {**SAMPLE_CONTEXT, "customer_name": name},
                                  extra={"utility_name": "u", "hotline": "95598"})
    msg = Message(outbox_id=7, key=key, account_id="C1", attempt=1, recipient=msg.recipient,
                  rendered=rendered, at=msg.at)
    query = dict(parse_qsl(sender._query(msg), keep_blank_values=True))
    want = sender.request_params(msg)
    volatile = ("SignatureNonce", "Timestamp", "Signature")  # drawn per request
    assert {k: v for k, v in query.items() if k not in volatile} == \
        {k: v for k, v in want.items() if k not in volatile}
    unsigned = {k: v for k, v in query.items() if k != "Signature"}
    assert query["Signature"] == expected_signature(unsigned, "s3cret*~ /")
    # and the encoder agrees with the standard library's RFC 3986 quoting
    from urllib.parse import quote

    assert percent_encode(name + key) == quote(name + key, safe="~")


def test_nonces_are_unique_per_request(gateway: FakeSmsGateway) -> None:
    sender = sms_sender(gateway)
    nonces = {dict(p.split("=", 1) for p in sender._query(_message()).split("&"))["SignatureNonce"]
              for _ in range(1000)}
    assert len(nonces) == 1000
