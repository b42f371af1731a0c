"""The callbacks' front door (web/payments_api.py ``CallbackFrontDoor``): under a flood, junk is
refused before the console's middleware stack — no caller lookup, no body read for a throttled
source or a declared oversize body — and the answers are the routes' own, byte for byte.

Timing is the benchmark's business (bench/callbacks_flood.py); these tests check what is
refused, how, and that nothing stored changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from dianfei.core.clock import BUSINESS_TZ, FixedClock, SystemClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import service
from dianfei.web import auth
from dianfei.web.app import create_app
from dianfei.web.payments_api import CallbackFrontDoor
from tests.factories import Person, load_people, scalar
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))
ALIPAY = "/api/v1/payments/notify/alipay"
WECHAT = "/api/v1/payments/notify/wechatpay"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


@pytest.fixture
def fakes(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeAlipay, FakeWechatPay]:
    alipay, wechat = FakeAlipay(), FakeWechatPay()
    for k, v in {**alipay.env(tmp_path / "a.pem"), **wechat.env(tmp_path / "w.pem")}.items():
        monkeypatch.setenv(k, v)
    load_people(db, [Person("C1")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=8070, reference="C1-202602-1", due_on=date(2026, 3, 18))
    return alipay, wechat


def _order(db: Database, channel: str = "alipay") -> str:
    with db.session() as s:
        return service.create_order(s, account_id="C1", amount=8070, channel=channel,
                                    clock=SystemClock()).order_no


def _stored(db: Database) -> tuple[int, int, int]:
    return (scalar(db.engine, "SELECT count(*) FROM payments"),
            scalar(db.engine, "SELECT count(*) FROM payment_inbox"),
            scalar(db.engine, "SELECT count(*) FROM ledger_entries"))


class Sent:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""


def call(app: Any, path: str, body: bytes, headers: dict[str, str], *, client: str = "203.0.113.9",
         receive: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> Sent:
    """One request straight into the ASGI app (as uvicorn hands it over): the body in one
    message unless ``receive`` is given."""
    out = Sent()
    given = False

    async def body_once() -> dict[str, Any]:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = dict(message["headers"])
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    hdrs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    hdrs.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": hdrs, "client": (client, 40000), "server": ("127.0.0.1", 80)}

    async def run() -> None:
        await app(scope, receive or body_once, send)

    anyio.run(run)
    return out


def test_the_front_door_is_in_front_of_every_other_middleware(db: Database, fakes: Any) -> None:
    app = create_app(db)
    assert app.user_middleware[0].cls is CallbackFrontDoor


def test_junk_with_a_session_token_never_costs_a_caller_lookup(
        db: Database, fakes: tuple[FakeAlipay, FakeWechatPay], monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the console's stack a bearer token or cookie on junk cost a database lookup each;
    the callbacks need no caller, so the front door answers before it."""
    lookups: list[str] = []
    monkeypatch.setattr(auth.CallerMiddleware, "_lookup", lambda self, token: lookups.append(token))
    alipay, _ = fakes
    app = create_app(db)
    before = _stored(db)
    forged, ctype = alipay.forged(_order(db), "T-FORGED", 8070)
    sent = call(app, ALIPAY, forged, {"content-type": ctype, "authorization": "Bearer junk",
                                      "cookie": f"{auth.COOKIE}=junk"})
    assert (sent.status, sent.body) == (401, b"fail")
    assert lookups == []
    assert _stored(db) == before
    # the answer carries what the console's stack would have added
    assert sent.headers[b"x-content-type-options"] == b"nosniff"
    assert len(sent.headers[b"x-request-id"]) == 32


def test_a_throttled_source_is_refused_before_its_body_is_read(
        db: Database, fakes: tuple[FakeAlipay, FakeWechatPay], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIANFEI_CALLBACK_THROTTLE_AFTER", "3")
    app = create_app(db)
    before = _stored(db)
    for _ in range(3):
        assert call(app, ALIPAY, b"junk=1", {"content-type": FORM}).status == 401

    async def must_not_read() -> dict[str, Any]:
        raise AssertionError("the body of a throttled source was read")

    sent = call(app, WECHAT, b"{}", {"content-type": "application/json"}, receive=must_not_read)
    assert sent.status == 429
    assert sent.body == b'{"code":"FAIL","message":"throttled: too many unverifiable notifications"}'
    assert _stored(db) == before
    # another source is not throttled
    assert call(app, ALIPAY, b"junk=1", {"content-type": FORM}, client="198.51.100.7").status == 401


def test_a_declared_oversize_body_is_refused_unread(db: Database, fakes: Any) -> None:
    app = create_app(db)
    before = _stored(db)

    async def must_not_read() -> dict[str, Any]:
        raise AssertionError("an oversize body was read")

    sent = call(app, ALIPAY, b"x" * (64 * 1024 + 1), {"content-type": FORM}, receive=must_not_read)
    assert (sent.status, sent.body) == (413, b"fail")
    assert _stored(db) == before


def test_a_caller_that_hangs_up_mid_body_posts_nothing_and_gets_no_answer(
        db: Database, fakes: tuple[FakeAlipay, FakeWechatPay]) -> None:
    alipay, _ = fakes
    app = create_app(db)
    before = _stored(db)
    genuine, ctype = alipay.notification(_order(db), "T-GONE", 8070)
    parts = [{"type": "http.request", "body": genuine[:50], "more_body": True},
             {"type": "http.disconnect"}]

    async def half() -> dict[str, Any]:
        return parts.pop(0)

    sent = call(app, ALIPAY, genuine, {"content-type": ctype}, receive=half)
    assert sent.status == 0 and sent.body == b""
    assert _stored(db) == before


def test_genuine_answers_are_the_channels_and_post_once(
        db: Database, fakes: tuple[FakeAlipay, FakeWechatPay]) -> None:
    alipay, wechat = fakes
    app = create_app(db)
    body, ctype = alipay.notification(_order(db), "T-ALI", 8070)
    for _ in range(2):  # a re-delivery is answered "success" again and not posted twice
        sent = call(app, ALIPAY, body, {"content-type": ctype})
        assert (sent.status, sent.body) == (200, b"success")
        assert sent.headers[b"content-type"] == b"text/plain; charset=utf-8"
    headers, wbody = wechat.notification(_order(db, "wechatpay"), "4200000000000000000000000001", 8070)
    sent = call(app, WECHAT, wbody, {**headers, "content-type": "application/json"})
    assert (sent.status, sent.body) == (204, b"")
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 2
    # the request's latency is observed under its route, as for every other route
    routes = {labels["route"] for m in app.state.latency.metrics() for labels, _ in m.samples}
    assert {ALIPAY, WECHAT} <= routes


def test_a_throttled_source_stays_throttled_while_it_keeps_sending(
        db: Database, fakes: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The throttle's window slides while the flood goes on: no fresh allowance of fully checked
    junk every ``throttle_seconds``; after a quiet spell the source is heard again."""
    from dianfei.payments import refusal_log

    now = [1000.0]
    monkeypatch.setattr(refusal_log.time, "monotonic", lambda: now[0])
    monkeypatch.setenv("DIANFEI_CALLBACK_THROTTLE_AFTER", "2")
    monkeypatch.setenv("DIANFEI_CALLBACK_THROTTLE_SECONDS", "10")
    app = create_app(db)
    before = _stored(db)
    statuses = []
    for _ in range(8):  # one junk request every 4 s: 32 s of flood, windows of 10 s
        statuses.append(call(app, ALIPAY, b"junk=1", {"content-type": FORM}).status)
        now[0] += 4
    assert statuses == [401, 401] + [429] * 6
    now[0] += 11  # quiet for longer than the window
    assert call(app, ALIPAY, b"junk=1", {"content-type": FORM}).status == 401
    assert _stored(db) == before
