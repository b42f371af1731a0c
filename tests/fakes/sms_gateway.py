"""A fake Alibaba Cloud SMS endpoint (dysmsapi ``SendSms``), for the one service we cannot run.

A real HTTP server on a loopback port (``http.server`` in a thread) that checks a request the way
the service does — common parameters, signature v1 (HMAC-SHA1 over the sorted, percent-encoded
query, recomputed here independently of dianfei's code), timestamp skew, nonce reuse, phone
number, template code, TemplateParam JSON — and answers in the service's JSON. Tests script
failures: ``fail_next("isv.BUSINESS_LIMIT_CONTROL")``, ``fail_next_http(500)``,
``hang_next(seconds)`` (a read timeout after the message was accepted). ``delay`` (seconds) makes
every answer take that long, as a real gateway's round trip does (~50 ms); the server answers
many requests at once (a thread per connection, HTTP/1.1 keep-alive), as the service does.

Usage::

    with FakeSmsGateway() as gw:
        gw.endpoint            # "http://127.0.0.1:PORT/"
        gw.sent                # accepted: [{"phone", "sign_name", "template_code", "params", "out_id"}]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCESS_KEY_ID = "LTAI5tFakeKeyId"
ACCESS_KEY_SECRET = "fake-secret-0123456789"
SIGN_NAME = "城关供电"


def _pct(text: str) -> str:
    # written out by hand (not dianfei's helper) so a shared mistake cannot hide
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-_.~"):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def expected_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
    return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1)
                            .digest()).decode()


class FakeSmsGateway:
    def __init__(self, templates: dict[str, list[str]] | None = None, *, delay: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        #: TemplateCode → the variables the registered template needs (None: accept any code)
        self.templates = templates
        #: seconds every answer waits (outside the lock: concurrent requests wait together)
        self.delay = delay
        self._address = (host, port)
        self.sent: list[dict[str, Any]] = []
        self.requests = 0
        self._script: deque[tuple[str, Any]] = deque()
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

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

    # -- server -----------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> FakeSmsGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive, as the real endpoint: a client reuses its connection
            protocol_version = "HTTP/1.1"
            # headers and body leave at once (Nagle + delayed ACK would add 40 ms per answer)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False)
                status, body, delay = gateway._handle(dict(pairs))
                delay = max(delay, gateway.delay)
                if delay:
                    time.sleep(delay)
                data = json.dumps(body).encode() if body is not None else b"<html>500</html>"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json;charset=utf-8"
                                     if body is not None else "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # hundreds of dispatch threads connect at once

        self._server = Server(self._address, Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # -- the service's checks ---------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str) -> tuple[int, dict[str, Any], float]:
        return status, {"RequestId": str(uuid.uuid4()).upper(), "Code": code, "Message": message}, 0.0

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
            try:
                ts = datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            except ValueError:
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
            if not all(re.fullmatch(r"1[3-9]\d{9}", ph) for ph in phones):
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
            return 200, {"RequestId": str(uuid.uuid4()).upper(), "Code": "OK", "Message": "OK",
                         "BizId": biz_id}, delay
