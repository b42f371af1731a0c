"""SMS through Alibaba Cloud SMS (阿里云短信服务) ``SendSms``, the RPC-style API, signature v1.

The wire format, as the service documents it:

- ``GET https://dysmsapi.aliyuncs.com/?<query>`` with the common parameters ``AccessKeyId``,
  ``Action=SendSms``, ``Format=JSON``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``,
  ``SignatureNonce`` (unique per request), ``SignatureVersion=1.0``, ``Timestamp``
  (``YYYY-MM-DDThh:mm:ssZ``, UTC), ``Version=2017-05-25`` and the action's ``PhoneNumbers``,
  ``SignName`` (短信签名), ``TemplateCode`` (短信模板, pre-approved on the console),
  ``TemplateParam`` (JSON of the template's variables) and ``OutId`` (our reference);
- every name and value percent-encoded (RFC 3986: space → %20, ``*`` → %2A, ``~`` kept),
  sorted by name, joined ``k=v&…``; ``StringToSign = "GET&%2F&" + percent(that)``;
  ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``;
- the reply is JSON ``{"Code": "OK", "Message": "OK", "BizId": "…", "RequestId": "…"}`` or an
  error code. Throttles and transient faults (``isv.BUSINESS_LIMIT_CONTROL`` — the per-number
  frequency limit —, ``Throttling.User``, ``isp.SYSTEM_ERROR``, ``SignatureNonceUsed``, HTTP 5xx)
  are retried; everything else (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.TEMPLATE_MISSING_PARAMETERS``,
  ``SignatureDoesNotMatch``, …) is terminal.

A *read* timeout is an unknown outcome: the gateway may already have sent the SMS, and SendSms
has no idempotency key (OutId is only echoed back in receipts), so dispatch does not resend; the
row goes to the worklist. A refused or timed-out *connection* sent nothing and is retried.

Settings ``[notify.sms]``: ``endpoint``, ``access_key_id``, ``access_key_secret``, ``sign_name``,
``region_id`` (cn-hangzhou), ``timeout`` (seconds); ``[notify.sms.templates]`` maps a notice (or
``notice.locale``, e.g. ``"reminder.en"``) to its TemplateCode. Environment:
``DIANFEI_SMS_ENDPOINT``, ``DIANFEI_SMS_ACCESS_KEY_ID``, ``DIANFEI_SMS_ACCESS_KEY_SECRET``,
``DIANFEI_SMS_SIGN_NAME``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from dianfei.core.errors import ValidationError
from dianfei.notify.channels import Message, SendError, SendResult

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"

#: codes after which the same request may succeed later
RETRYABLE_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL",   # per-number frequency limit (1/min, 5/h, 10/day by default)
    "Throttling.User", "Throttling", "Throttling.Api",
    "isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "ServiceUnavailable", "InternalError",
    "SignatureNonceUsed",           # a new nonce is drawn on the next try
    "isv.OUT_OF_SERVICE",           # the utility's SMS account is in arrears: top it up, then retry
    "isv.AMOUNT_NOT_ENOUGH",
})

_MOBILE = re.compile(r"^1[3-9]\d{9}$")


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's signature v1 wants it: only A–Z a–z 0–9 - _ . ~ kept."""
    return quote(text, safe="~")


def string_to_sign(params: Mapping[str, str], method: str = "GET") -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def sign(params: Mapping[str, str], secret: str, method: str = "GET") -> str:
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(params, method).encode(),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class AliyunSmsSettings:
    access_key_id: str
    access_key_secret: str
    sign_name: str
    endpoint: str = DEFAULT_ENDPOINT
    region_id: str = "cn-hangzhou"
    timeout: float = 10.0
    #: notice (or "notice.locale") → TemplateCode
    templates: Mapping[str, str] = field(default_factory=dict)

    def template_code(self, notice: str, locale: str) -> str | None:
        return self.templates.get(f"{notice}.{locale}") or self.templates.get(notice)


def load_sms_settings(notify_raw: Mapping[str, Any],
                      env: Mapping[str, str] | None = None) -> AliyunSmsSettings | None:
    """``[notify.sms]`` overlaid by ``DIANFEI_SMS_*``; None when no access key is configured."""
    env = os.environ if env is None else env
    cfg = dict(notify_raw.get("sms", {}) or {})
    for name in ("endpoint", "access_key_id", "access_key_secret", "sign_name"):
        value = env.get(f"DIANFEI_SMS_{name.upper()}")
        if value:
            cfg[name] = value
    provider = cfg.get("provider", "aliyun")
    if provider != "aliyun":
        raise ValidationError(f"notify.sms.provider: only 'aliyun' is implemented, got {provider!r}")
    if not cfg.get("access_key_id"):
        return None
    missing = [k for k in ("access_key_secret", "sign_name") if not cfg.get(k)]
    if missing:
        raise ValidationError(f"notify.sms: {', '.join(missing)} missing (access_key_id is set)")
    templates = cfg.get("templates", {}) or {}
    if not isinstance(templates, Mapping):
        raise ValidationError("notify.sms.templates must be a table of notice = TemplateCode")
    return AliyunSmsSettings(
        access_key_id=str(cfg["access_key_id"]), access_key_secret=str(cfg["access_key_secret"]),
        sign_name=str(cfg["sign_name"]), endpoint=str(cfg.get("endpoint") or DEFAULT_ENDPOINT),
        region_id=str(cfg.get("region_id", "cn-hangzhou")), timeout=float(cfg.get("timeout", 10)),
        templates={str(k): str(v) for k, v in templates.items()})


class AliyunSmsSender:
    channel = "sms"
    idempotent = False

    def __init__(self, settings: AliyunSmsSettings, *, transport: Any = None) -> None:
        import httpx

        self.settings = settings
        self._client = httpx.Client(timeout=settings.timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def request_params(self, message: Message) -> dict[str, str]:
        """The signed query of one SendSms call."""
        r = message.rendered
        s = self.settings
        code = s.template_code(r.notice, r.locale)
        if not code:
            raise SendError("no_template_code",
                            f"no TemplateCode for notice {r.notice!r} in [notify.sms.templates]",
                            retryable=False)
        phone = (message.recipient.phone or "").strip()
        if phone.startswith("+86"):
            phone = phone[3:]
        params = {
            "AccessKeyId": s.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": message.key[:64],
            "PhoneNumbers": phone,
            "RegionId": s.region_id,
            "SignName": s.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": code,
            "TemplateParam": json.dumps(dict(r.sms_params or {}), ensure_ascii=False,
                                        separators=(",", ":"), sort_keys=True),
            # the signature's timestamp must be the real time (the service refuses a skewed one),
            # not the business clock that simulations move
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        params["Signature"] = sign(params, s.access_key_secret)
        return params

    def send(self, message: Message) -> SendResult:
        import httpx

        if not message.recipient.phone:
            raise SendError("no_phone", "the customer has no mobile number", retryable=False)
        params = self.request_params(message)
        if not _MOBILE.match(params["PhoneNumbers"]):
            # the gateway would refuse it (isv.MOBILE_NUMBER_ILLEGAL); don't pay for the round trip
            raise SendError("isv.MOBILE_NUMBER_ILLEGAL", "not a mainland mobile number", retryable=False)
        query = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
        url = self.settings.endpoint.rstrip("/") + "/?" + query
        try:
            resp = self._client.get(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SendError("connect", f"{self.settings.endpoint}: {exc}", retryable=True) from None
        except httpx.TimeoutException as exc:
            raise SendError("timeout", f"no answer from the gateway: {exc!r}", retryable=True,
                            outcome_unknown=True) from None
        except httpx.HTTPError as exc:
            raise SendError("http_error", repr(exc), retryable=True, outcome_unknown=True) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "Code" not in body:
            raise SendError(f"http_{resp.status_code}", resp.text[:200],
                            retryable=resp.status_code >= 500 or resp.status_code == 429)
        code = str(body["Code"])
        if code == "OK":
            return SendResult(provider_ref=str(body.get("BizId") or body.get("RequestId") or ""))
        raise SendError(code, str(body.get("Message", "")), retryable=code in RETRYABLE_CODES)
