"""A fake Alibaba Cloud SMS endpoint (dysmsapi ``SendSms``), for the one service we cannot run.

A real HTTP/1.1 server on a loopback port that checks a request the way the service does —
common parameters, signature v1 (HMAC-SHA1 over the sorted, percent-encoded query, recomputed
here independently of dianfei's code), timestamp skew, nonce reuse, phone number, template code,
TemplateParam JSON — and answers in the service's JSON. Tests script failures:
``fail_next("isv.BUSINESS_LIMIT_CONTROL")``, ``fail_next_http(500)``, ``hang_next(seconds)`` (a
read timeout after the message was accepted). ``delay`` (seconds) makes every answer take that
long, as a real gateway's round trip does (~50 ms); the server answers many requests at once, as
the service does.

It runs on an event loop of its own thread (uvloop when installed; httptools parses the requests;
keep-alive, pipelined requests answered in order): a delayed answer is a timer, not a sleeping
thread, so a benchmark's gateway process costs ~0.1 ms of CPU a request instead of ~0.5 ms with
``http.server`` and a thread per connection.

Usage::

    with FakeSmsGateway() as gw:
        gw.endpoint            # "http://127.0.0.1:PORT/"
        gw.sent                # accepted: [{"phone", "sign_name", "template_code", "params", "out_id"}]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

ACCESS_KEY_ID = "LTAI5tFakeKeyId"
ACCESS_KEY_SECRET = "fake-secret-0123456789"
SIGN_NAME = "城关供电"

# written out by hand (not dianfei's helper) so a shared mistake cannot hide: every byte but
# A-Z a-z 0-9 - _ . ~ becomes %XX (upper-case hex), UTF-8 first
_PCT_BYTE = [chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_.~") else f"%{b:02X}"
             for b in range(256)]
_UNRESERVED = re.compile(r"[A-Za-z0-9\-_.~]*")


def _pct(text: str) -> str:
    if _UNRESERVED.fullmatch(text):
        return text
    return "".join([_PCT_BYTE[b] for b in text.encode("utf-8")])


def expected_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
    return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1)
                            .digest()).decode()


def _query_params(target: bytes) -> dict[str, str]:
    """The query of a request target as a dict (form rules: ``+`` is a space, %XX is UTF-8)."""
    _, _, query = target.decode("latin-1").partition("?")
    out: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        out[unquote(name.replace("+", " "))] = unquote(value.replace("+", " "))
    return out


_MOBILE = re.compile(r"1[3-9]\d{9}")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class _HttpConnection(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered in order (keep-alive)."""

    def __init__(self, gateway: FakeSmsGateway) -> None:
        import httptools

        self.gateway = gateway
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        #: answers in request order: [bytes or None (not ready yet), keep_alive]
        self._pending: deque[list[Any]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.gateway._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway._connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                self.transport.close()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        gw = self.gateway
        status, body, delay = gw._handle(_query_params(self._url))
        delay = max(delay, gw.delay)
        data = json.dumps(body).encode() if body is not None else b"<html>500</html>"
        ctype = b"application/json;charset=utf-8" if body is not None else b"text/html"
        keep = bool(self.parser.should_keep_alive())
        answer = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n".encode()
                  + b"Content-Type: " + ctype + b"\r\nContent-Length: " + str(len(data)).encode()
                  + (b"\r\n\r\n" if keep else b"\r\nConnection: close\r\n\r\n") + data)
        slot: list[Any] = [None, keep]
        self._pending.append(slot)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._ready, slot, answer)
        else:
            self._ready(slot, answer)

    def _ready(self, slot: list[Any], answer: bytes) -> None:
        slot[0] = answer
        while self._pending and self._pending[0][0] is not None:
            data, keep = self._pending.popleft()
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(data)
            if not keep:
                self.transport.close()
                return


class FakeSmsGateway:
    def __init__(self, templates: dict[str, list[str]] | None = None, *, delay: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        #: TemplateCode → the variables the registered template needs (None: accept any code)
        self.templates = templates
        #: seconds every answer waits (concurrent requests wait together)
        self.delay = delay
        self._address = (host, port)
        self.sent: list[dict[str, Any]] = []
        self.requests = 0
        self._script: deque[tuple[str, Any]] = deque()
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._port = 0
        self._connections: set[_HttpConnection] = set()
        self._ts_cache: tuple[str, datetime | None] = ("", None)
        self._id_prefix = str(uuid.uuid4()).upper()[:24]

    # -- scripting --------------------------------------------------------------------------------
    def fail_next(self, code: str, message: str = "scripted failure", times: int = 1) -> None:
        for _ in range(times):
            self._script.append(("code", (code, message)))

    def fail_next_http(self, status: int, times: int = 1) -> None:
        for _ in range(times):
            self._script.append(("http", status))

    def hang_next(self, seconds: float) -> None:
        """Accept (and count as sent) the next message, but answer only after ``seconds``."""
        self._script.append(("hang", seconds))

    def wait_sent(self, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The accepted messages once there are at least ``count`` of them. A live server sends
        some messages after it has answered (the portal's sign-in code is a background task, so
        the answer takes as long for a stranger's number as for a customer's): a test that
        reads ``sent`` straight after the page changed races that task."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.sent) >= count:
                    return list(self.sent)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sent)} message(s) accepted, {count} expected "
                                     f"within {timeout:.0f} s")
            time.sleep(0.02)

    # -- server -----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._port}/"

    def __enter__(self) -> FakeSmsGateway:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
            loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-sms-gateway", daemon=True)
        self._thread.start()

        async def start() -> asyncio.AbstractServer:
            return await loop.create_server(lambda: _HttpConnection(self), *self._address,
                                            backlog=1024)

        server = asyncio.run_coroutine_threadsafe(start(), loop).result()
        self._server = server
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._loop is not None and self._thread is not None
        server, loop = self._server, self._loop

        async def stop() -> None:
            server.close()
            for conn in list(self._connections):
                if conn.transport is not None:
                    conn.transport.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        loop.close()

    def _timestamp(self, text: str) -> datetime | None:
        if self._ts_cache[0] != text:
            try:
                ts: datetime | None = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
                ts = None
            self._ts_cache = (text, ts)
        return self._ts_cache[1]

    # -- the service's checks ---------------------------------------------------------------------
    def _request_id(self) -> str:
        """A RequestId shaped like the service's (an upper-case UUID): a random one per gateway,
        with the request count in its last group (no system call per request)."""
        return f"{self._id_prefix}{self.requests:012X}"

    def _error(self, status: int, code: str, message: str) -> tuple[int, dict[str, Any], float]:
        return status, {"RequestId": self._request_id(), "Code": code, "Message": message}, 0.0

    def _handle(self, p: dict[str, str]) -> tuple[int, dict[str, Any] | None, float]:
        with self._lock:
            self.requests += 1
            common = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod", "SignatureNonce",
                      "SignatureVersion", "Timestamp", "Version", "Signature")
            missing = [k for k in (*common, "PhoneNumbers", "SignName", "TemplateCode") if not p.get(k)]
            if missing:
                return self._error(400, "MissingParameter", f"missing {missing[0]}")
            if p["Action"] != "SendSms" or p["Version"] != "2017-05-25":
                return self._error(400, "InvalidAction.NotFound", "unknown action or version")
            if p["SignatureMethod"] != "HMAC-SHA1" or p["SignatureVersion"] != "1.0":
                return self._error(400, "InvalidSignatureMethod", "HMAC-SHA1 1.0 only")
            if p["AccessKeyId"] != ACCESS_KEY_ID:
                return self._error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
            signature = p.pop("Signature")
            if not hmac.compare_digest(signature, expected_signature(p, ACCESS_KEY_SECRET)):
                return self._error(400, "SignatureDoesNotMatch",
                                   "Specified signature is not matched with our calculation.")
            ts = self._timestamp(p["Timestamp"])
            if ts is None:
                return self._error(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.")
            if abs((datetime.now(UTC) - ts).total_seconds()) > 900:
                return self._error(400, "InvalidTimeStamp.Expired", "Specified time stamp is expired.")
            if p["SignatureNonce"] in self._nonces:
                return self._error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces.add(p["SignatureNonce"])
            if self._script:
                kind, arg = self._script.popleft()
                if kind == "code":
                    return self._error(200, arg[0], arg[1])
                if kind == "http":
                    return arg, None, 0.0
                delay = float(arg)
            else:
                delay = 0.0
            if p["SignName"] != SIGN_NAME:
                return self._error(200, "isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
            phones = p["PhoneNumbers"].split(",")
            if not all(_MOBILE.fullmatch(ph) for ph in phones):
                return self._error(200, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
            try:
                params = json.loads(p.get("TemplateParam") or "{}")
            except ValueError:
                return self._error(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
            if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
                return self._error(200, "isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
            if self.templates is not None:
                needed = self.templates.get(p["TemplateCode"])
                if needed is None:
                    return self._error(200, "isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
                lacking = [v for v in needed if v not in params]
                if lacking:
                    return self._error(200, "isv.TEMPLATE_MISSING_PARAMETERS",
                                       f"模板变量缺少对应参数值 {lacking}")
            biz_id = f"{len(self.sent) + 1:06d}^0"
            for ph in phones:
                self.sent.append({"phone": ph, "sign_name": p["SignName"], "template_code": p["TemplateCode"],
                                  "params": params, "out_id": p.get("OutId"), "biz_id": biz_id})
            return 200, {"RequestId": self._request_id(), "Code": "OK", "Message": "OK",
                         "BizId": biz_id}, delay
