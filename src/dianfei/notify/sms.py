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

Two ways to send, with the same outcomes: ``send`` (httpx, blocking) and ``send_async``, which
dispatch uses to keep hundreds of requests in flight on one event loop — keep-alive connections
of a small HTTP/1.1 client (asyncio + httptools) that this class pools per event loop. httpx
shared by hundreds of threads or tasks costs 3–6 ms of CPU a request on its pool's lock; this costs
~50 µs, and with a 50 ms gateway the CPU, not the network, is what bounds a dispatch pass.

Settings ``[notify.sms]``: ``endpoint``, ``access_key_id``, ``access_key_secret``, ``sign_name``,
``region_id`` (cn-hangzhou), ``timeout`` (seconds); ``[notify.sms.templates]`` maps a notice (or
``notice.locale``, e.g. ``"reminder.en"``) to its TemplateCode. Environment:
``DIANFEI_SMS_ENDPOINT``, ``DIANFEI_SMS_ACCESS_KEY_ID``, ``DIANFEI_SMS_ACCESS_KEY_SECRET``,
``DIANFEI_SMS_SIGN_NAME``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

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
#: TemplateParam: compact JSON of strings, keys sorted, Chinese as is (made once, not per request)
_PARAM_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
#: byte → itself if unreserved, else %XX (upper-case hex)
_PCT = tuple(chr(b) if _UNRESERVED.fullmatch(chr(b)) and b < 128 else f"%{b:02X}" for b in range(256))


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's signature v1 wants it: only A–Z a–z 0–9 - _ . ~ kept,
    every other byte of the UTF-8 as %XX (``urllib.parse.quote(text, safe="~")``, at a third of
    its cost: this runs a dozen times per SMS)."""
    if _UNRESERVED.fullmatch(text):
        return text
    return "".join(map(_PCT.__getitem__, text.encode()))


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
        # thread-safe; dispatch itself goes through send_async
        self._client = httpx.Client(timeout=settings.timeout, transport=transport)
        self._pool: _AsyncPool | None = None
        self._signer = _Signer(settings)

    def close(self) -> None:
        self._client.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

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

    def _query(self, message: Message) -> str:
        """The request's query string (signed), after the checks that need no round trip: the
        query of :meth:`request_params` (sorted by name, ``Signature`` last), built by
        :class:`_Signer` from the parts that do not change between requests."""
        if not message.recipient.phone:
            raise SendError("no_phone", "the customer has no mobile number", retryable=False)
        r = message.rendered
        code = self.settings.template_code(r.notice, r.locale)
        if not code:
            raise SendError("no_template_code",
                            f"no TemplateCode for notice {r.notice!r} in [notify.sms.templates]",
                            retryable=False)
        phone = message.recipient.phone.strip()
        if phone.startswith("+86"):
            phone = phone[3:]
        if not _MOBILE.match(phone):
            # the gateway would refuse it (isv.MOBILE_NUMBER_ILLEGAL); don't pay for the round trip
            raise SendError("isv.MOBILE_NUMBER_ILLEGAL", "not a mainland mobile number", retryable=False)
        params = _PARAM_JSON.encode(dict(r.sms_params or {}))
        return self._signer.query(out_id=message.key[:64], phone=phone, template_code=code,
                                  template_param=params)

    def send(self, message: Message) -> SendResult:
        import httpx

        url = self.settings.endpoint.rstrip("/") + "/?" + self._query(message)
        try:
            resp = self._client.get(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise SendError("connect", f"{self.settings.endpoint}: {exc}", retryable=True) from None
        except httpx.TimeoutException as exc:
            raise SendError("timeout", f"no answer from the gateway: {exc!r}", retryable=True,
                            outcome_unknown=True) from None
        except httpx.HTTPError as exc:
            raise SendError("http_error", repr(exc), retryable=True, outcome_unknown=True) from None
        return outcome(resp.status_code, resp.content)

    def close_connections(self) -> None:
        """Close the pooled connections of :meth:`send_async` (call on their event loop)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def send_async(self, message: Message) -> SendResult:
        """:meth:`send` on the running event loop, over a pooled keep-alive connection."""
        query = self._query(message)
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            # a new dispatch pass runs a new loop; the old loop's connections went with it
            self._pool = _AsyncPool(loop, self.settings.endpoint, self.settings.timeout)
        status, body = await self._pool.get(query)
        return outcome(status, body)


class _Signer:
    """The signed query of a SendSms request, fast: the common parameters are percent-encoded once,
    in their sorted place; per request only OutId, PhoneNumbers, SignatureNonce, TemplateCode,
    TemplateParam and Timestamp (encoded once a second) are encoded, the canonical query is
    percent-encoded a second time by three replacements (after the first encoding it holds only
    unreserved characters, ``%``, ``=`` and ``&``) and signed by one ``hmac.digest`` call. The result
    is the query :meth:`AliyunSmsSender.request_params` describes (tests check both against the
    fake gateway's independent implementation)."""

    _VARIABLE = ("OutId", "PhoneNumbers", "SignatureNonce", "TemplateCode", "TemplateParam", "Timestamp")

    def __init__(self, s: AliyunSmsSettings) -> None:
        fixed = {"AccessKeyId": s.access_key_id, "Action": "SendSms", "Format": "JSON",
                 "RegionId": s.region_id, "SignName": s.sign_name, "SignatureMethod": "HMAC-SHA1",
                 "SignatureVersion": "1.0", "Version": API_VERSION}
        #: (encoded "name=" prefix, encoded fixed value or the index of a variable), sorted by name
        self._layout: list[tuple[str, str | int]] = []
        for name in sorted((*fixed, *self._VARIABLE)):
            slot: str | int = (percent_encode(fixed[name]) if name in fixed
                               else self._VARIABLE.index(name))
            self._layout.append((percent_encode(name) + "=", slot))
        # keyed once; a copy per request (hmac.digest() would re-key, and drops the GIL each call)
        self._hmac = hmac.new(f"{s.access_key_secret}&".encode(), digestmod=hashlib.sha1)
        self._stamp = (0, "")
        # SignatureNonce: unique per request, which a random 64-bit prefix per sender and a
        # counter guarantee without a system call (and a GIL release) per request
        self._nonce_prefix = os.urandom(8).hex()
        self._nonces = itertools.count()

    def _timestamp(self) -> str:
        # the signature's timestamp must be the real time (the service refuses a skewed one),
        # not the business clock that simulations move
        now = datetime.now(UTC)
        second = int(now.timestamp())
        if self._stamp[0] != second:
            self._stamp = (second, percent_encode(now.strftime("%Y-%m-%dT%H:%M:%SZ")))
        return self._stamp[1]

    def query(self, *, out_id: str, phone: str, template_code: str, template_param: str) -> str:
        nonce = f"{self._nonce_prefix}{next(self._nonces):016x}"
        values = (percent_encode(out_id), percent_encode(phone), nonce,
                  percent_encode(template_code), percent_encode(template_param), self._timestamp())
        canonical = "&".join([name + (values[v] if isinstance(v, int) else v) for name, v in self._layout])
        to_sign = "GET&%2F&" + canonical.replace("%", "%25").replace("&", "%26").replace("=", "%3D")
        mac = self._hmac.copy()
        mac.update(to_sign.encode())
        signature = base64.b64encode(mac.digest()).decode()
        return canonical + "&Signature=" + percent_encode(signature)


def outcome(status: int, content: bytes) -> SendResult:
    """The gateway's answer → a SendResult, or the SendError it means."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "Code" not in body:
        raise SendError(f"http_{status}", content[:200].decode("utf-8", "replace"),
                        retryable=status >= 500 or status == 429)
    code = str(body["Code"])
    if code == "OK":
        return SendResult(provider_ref=str(body.get("BizId") or body.get("RequestId") or ""))
    raise SendError(code, str(body.get("Message", "")), retryable=code in RETRYABLE_CODES)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; a response is parsed by httptools (Content-Length or
    chunked). One request at a time."""

    def __init__(self) -> None:
        import httptools

        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._got_bytes = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        import httptools

        self._got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"the gateway closed the connection{f': {exc}' if exc else ''}"))

    # -- httptools callbacks
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = bool(self.parser.should_keep_alive())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((int(self.parser.get_status_code()), b"".join(self._body)))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._body = []
        self._got_bytes = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _AsyncPool:
    """Idle keep-alive connections to the gateway, for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, endpoint: str, timeout: float) -> None:
        url = urlsplit(endpoint)
        self.loop = loop
        self.endpoint = endpoint
        self.timeout = timeout
        self.host = url.hostname or "localhost"
        self.tls = url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.path = (url.path.rstrip("/") or "") + "/?"
        host = self.host if url.port is None else f"{self.host}:{url.port}"
        self._head = f"Host: {host}\r\nAccept: application/json\r\nUser-Agent: dianfei\r\n\r\n".encode()
        self._idle: list[_Connection] = []
        self._ssl = ssl.create_default_context() if self.tls else None

    async def _connect(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                _Connection, self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self.tls else None), self.timeout)
        except (OSError, TimeoutError) as exc:
            # nothing was sent: safe to try again
            raise SendError("connect", f"{self.endpoint}: {exc!r}", retryable=True) from None
        return conn

    async def get(self, query: str) -> tuple[int, bytes]:
        conn = await self._connect()
        waiter = conn.request(f"GET {self.path}{query} HTTP/1.1\r\n".encode() + self._head)
        # a timer on the waiter, not asyncio.wait_for (a task and more per request in 3.11)
        timer = self.loop.call_later(self.timeout, _expire, waiter)
        try:
            status, body = await waiter
        except TimeoutError:
            conn.close()
            raise SendError("timeout", f"no answer from the gateway in {self.timeout} s", retryable=True,
                            outcome_unknown=True) from None
        except ConnectionError as exc:
            conn.close()
            # the request was written: the gateway may have taken it
            raise SendError("http_error", repr(exc), retryable=True, outcome_unknown=True) from None
        except BaseException:
            conn.close()  # cancelled mid-request: the connection's state is unknown
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()
        return status, body

    def close(self) -> None:
        for conn in self._idle:
            if not self.loop.is_closed():
                conn.close()
        self._idle.clear()
