"""The approvals pages: a collector asks for a waiver on the page, the maker cannot decide it
(the page says why, nothing changes), a supervisor approves it and the fee is waived; refusing
needs a reason; the list filters, pages and exports; roles without approvals get 403."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from tests.approvals.helpers import PASSWORD, add_staff, clock
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import run, setup

from dianfei.collections.service import amount_due
from dianfei.db.engine import Database
from dianfei.web.app import create_app
from dianfei.web.csrf import csrf_token

BILL = "A-202512-1"
pytestmark = pytest.mark.db


@pytest.fixture
def app_db(db: Database) -> Database:
    setup(db, {"A": {}, "B": {"amount": 50_000}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    add_staff(db)
    return db


def browser(db: Database, user: str) -> tuple[TestClient, str]:
    c = TestClient(create_app(db, clock=clock(date(2026, 2, 2))), raise_server_exceptions=False)
    r = c.post("/session", data={"username": user, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c, csrf_token(c.cookies["dianfei_session"])


def due(db: Database) -> int:
    with db.engine.connect() as conn:
        return amount_due(conn, "A")


def test_ask_refuse_own_then_a_supervisor_approves(app_db: Database) -> None:
    db = app_db
    li, li_csrf = browser(db, "li")
    before = due(db)
    # bad input: named, nothing stored
    bad = li.post("/approvals/new", data={"csrf_token": li_csrf, "kind": "waiver",
                                          "reference": BILL, "reason": ""})
    assert bad.status_code == 422 and "reason" in bad.text
    assert "write_off" not in li.get("/approvals/new").text  # a collector asks only for waivers
    asked = li.post("/approvals/new", data={"csrf_token": li_csrf, "kind": "waiver",
                                            "reference": BILL, "reason": "住院 hospital stay"},
                    follow_redirects=False)
    assert asked.status_code == 303
    page = asked.headers["location"]
    assert "申请已提交" in li.get(page).text and 'id="approve"' not in li.get(page).text
    rid = int(page.split("/")[2].split("?")[0])
    # the maker cannot decide (a collector lacks the permission: 403 before the service)
    assert li.post(f"/approvals/{rid}/approve", data={"csrf_token": li_csrf}).status_code == 403

    wang, wang_csrf = browser(db, "wang")
    listed = wang.get("/approvals?state=pending&kind=waiver")
    assert listed.status_code == 200 and f"/approvals/{rid}" in listed.text
    assert "违约金减免" in listed.text
    assert wang.post(f"/approvals/{rid}/approve").status_code == 403  # no CSRF token
    assert due(db) == before
    no_reason = wang.post(f"/approvals/{rid}/reject", data={"csrf_token": wang_csrf})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    ok = wang.post(f"/approvals/{rid}/approve", data={"csrf_token": wang_csrf},
                   follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"].endswith("done=approved")
    shown = wang.get(ok.headers["location"]).text
    assert "已执行" in shown and "wang" in shown
    assert due(db) == before - 300
    # decided once: a second approval is refused on the page with the service's words
    zhao, zhao_csrf = browser(db, "zhao")
    again = zhao.post(f"/approvals/{rid}/approve", data={"csrf_token": zhao_csrf})
    assert again.status_code == 409 and "already" in again.text
    # the zh-CN page says in Chinese that nothing was done, with the service's words and its
    # stable code (the messages themselves are the services', not translated one by one)
    assert re.search(r"操作未完成：[^<]*already[^<]*（错误代码 already_decided）", again.text)
    en = zhao.post(f"/approvals/{rid}/approve?lang=en", data={"csrf_token": zhao_csrf})
    assert re.search(r"Not done: [^<]*already[^<]* \(error code already_decided\)", en.text)
    csv = wang.get("/approvals?format=csv").content.decode("utf-8")
    assert csv.startswith("\ufeff") and str(rid) in csv


def test_a_supervisor_cannot_approve_their_own_request(app_db: Database) -> None:
    wang, csrf = browser(app_db, "wang")
    asked = wang.post("/approvals/new", data={"csrf_token": csrf, "kind": "waiver",
                                              "reference": BILL, "reason": "x"},
                      follow_redirects=False)
    rid = int(asked.headers["location"].split("/")[2].split("?")[0])
    assert 'id="approve"' not in wang.get(f"/approvals/{rid}").text
    own = wang.post(f"/approvals/{rid}/approve", data={"csrf_token": csrf})
    assert own.status_code == 403 and "a second person must decide it" in own.text
    assert "操作未完成：" in own.text and "错误代码 maker_is_checker" in own.text
    assert "待审批" in wang.get(f"/approvals/{rid}").text


def test_roles_without_approvals_are_refused(app_db: Database) -> None:
    from tests.approvals.helpers import at

    from dianfei.security.service import add_user

    with app_db.session() as s:
        add_user(s, username="mon", role="monitor", password=PASSWORD, now=at(date(2026, 1, 1)))
    mon, _ = browser(app_db, "mon")
    assert mon.get("/approvals").status_code == 403
    anon = TestClient(create_app(app_db), raise_server_exceptions=False)
    assert anon.get("/approvals").status_code == 401
