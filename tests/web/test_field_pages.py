"""The collections pages over the worklist, field-work, plan, ticket and experiment services:
a collector works only their own list and accounts; forms need the CSRF token, answer bad input
with a message next to the field and store nothing; supervisors reassign, balance, approve
(never their own plan) and decide; every table pages and exports."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from tests.collections.worklist_fixtures import DAY, at, load
from typer.testing import CliRunner

from dianfei.cli.main import app as cli
from dianfei.collections import worklist as wl
from dianfei.collections.plan_report import list_plans
from dianfei.collections.promises import promises_json
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.web.app import create_app
from dianfei.web.csrf import csrf_token

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.db


def add_user(name: str, role: str) -> None:
    res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                             input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output


@pytest.fixture
def app(db: Database) -> object:
    """Seven accounts in arrears on four collectors' lists; zhang signs in as K1, li as K2."""
    load(db)
    for name, role in (("zhang", "collector"), ("li", "collector"), ("boss", "supervisor"),
                       ("boss2", "supervisor"), ("audi", "auditor"), ("cash", "cashier")):
        add_user(name, role)
    wl.set_roster(db, "K1", by="admin", username="zhang")
    wl.set_roster(db, "K2", by="admin", username="li")
    return create_app(db, FixedClock(at(DAY, 18)))


def client_for(app: object, user: str) -> tuple[TestClient, str]:
    """Signed in; the day's lists are built by the first look at them (as the day starts)."""
    c = TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type]
    r = c.post("/session", data={"username": user, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text
    c.get("/worklist")
    return c, csrf_token(c.cookies["dianfei_session"])


def field_error(html: str, field: str) -> str:
    found = re.search(rf'data-field="{field}">([^<]*)<', html)
    assert found, f"no message for {field}"
    return found.group(1)


def test_a_collector_sees_only_their_own_list_and_accounts(app: object) -> None:
    zhang, _ = client_for(app, "zhang")
    page = zhang.get("/worklist")
    assert page.status_code == 200, page.text
    assert 'href="/worklist/accounts/C01"' in page.text and "用户C01" in page.text
    assert "C03" not in page.text  # K2's account
    assert page.text.count('data-label="户号"') == 2
    assert 'href="/worklist"' in page.text  # the menu entry
    assert zhang.get("/worklist?collector=K2").status_code == 403
    assert zhang.get("/worklist/accounts/C01").status_code == 200
    assert zhang.get("/worklist/accounts/C03").status_code == 404
    assert zhang.get("/worklist/supervisor").status_code == 403
    exported = zhang.get("/worklist?format=csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8")[1:])))
    assert rows[0][:3] == ["序", "户号", "户名"] and {r[1] for r in rows[1:]} == {"C01", "C02"}
    boss, _ = client_for(app, "boss")
    assert "选择催费员查看其工单" in boss.get("/worklist").text  # supervisors pick a collector
    assert boss.get("/worklist?collector=K2").text.count('data-label="户号"') == 2
    assert boss.get("/worklist/accounts/C03").status_code == 200
    cash, _ = client_for(app, "cash")
    assert cash.get("/worklist").status_code == 403
    en = zhang.get("/worklist?lang=en")
    assert "<h1>Worklist</h1>" in en.text and "Overdue (yuan)" in en.text


def test_a_collector_not_on_the_roster_has_no_list_and_records_nothing(app: object) -> None:
    add_user("nobody", "collector")
    nobody, token = client_for(app, "nobody")
    page = nobody.get("/worklist")
    assert page.status_code == 200 and "未关联催费员" in page.text
    assert 'data-label="户号"' not in page.text
    assert nobody.get("/worklist/accounts/C01").status_code == 404
    assert nobody.post("/worklist/accounts/C01", data={
        "csrf_token": token, "form": "visit", "request_id": "n-1", "channel": "call",
        "outcome": "refused", "at": "2026-03-02T10:00"}).status_code == 404


def test_a_promise_is_checked_field_by_field_and_stored_once(app: object, db: Database) -> None:
    zhang, token = client_for(app, "zhang")
    form = {"form": "promise", "request_id": "p-1", "channel": "call",
            "at": "2026-03-02T10:00", "amount": "300.00", "promise_on": "2026-03-09"}
    # no CSRF token: refused before the route
    assert zhang.post("/worklist/accounts/C01", data=form).status_code == 403
    bad = zhang.post("/worklist/accounts/C01",
                     data={**form, "csrf_token": token, "amount": "12.345", "promise_on": "9.3."})
    assert bad.status_code == 422
    assert "at most 2 decimal places" in field_error(bad.text, "amount")
    assert "YYYY-MM-DD" in field_error(bad.text, "promise_on")
    assert 'value="12.345"' in bad.text  # what was typed stays in the form
    past = zhang.post("/worklist/accounts/C01", data={**form, "csrf_token": token,
                                                      "promise_on": "2026-02-01"})
    assert past.status_code == 422
    assert "cannot be dated in the past" in field_error(past.text, "promise_on")
    small = zhang.post("/worklist/accounts/C01", data={**form, "csrf_token": token,
                                                       "amount": "1.00"})
    assert "covers at least" in field_error(small.text, "amount")
    assert promises_json(db.engine, "C01") == []  # nothing stored by a refused form
    ok = zhang.post("/worklist/accounts/C01", data={**form, "csrf_token": token},
                    follow_redirects=False)
    assert ok.status_code == 303, ok.text
    shown = zhang.get(ok.headers["location"])
    assert "已记录承诺缴费：300.00 元，2026-03-09 前" in shown.text
    assert "promise made" in shown.text  # on the timeline
    again = zhang.post("/worklist/accounts/C01", data={**form, "csrf_token": token},
                       follow_redirects=False)
    assert again.status_code == 303
    assert [(p["amount"], p["due_on"]) for p in promises_json(db.engine, "C01")] == [
        ("300.00", "2026-03-09")]
    # another collector's account: as if it did not exist, nothing stored
    other = zhang.post("/worklist/accounts/C03", data={**form, "csrf_token": token,
                                                       "request_id": "p-2"})
    assert other.status_code == 404 and promises_json(db.engine, "C03") == []


def test_visits_and_tickets_from_the_field_view(app: object) -> None:
    zhang, token = client_for(app, "zhang")
    visit = {"csrf_token": token, "form": "visit", "request_id": "v-1", "channel": "visit",
             "outcome": "refused", "at": "2026-03-02T11:30", "note": "不在家"}
    ok = zhang.post("/worklist/accounts/C02", data=visit, follow_redirects=False)
    assert ok.status_code == 303 and "saved=visit" in ok.headers["location"]
    dispute = zhang.post("/worklist/accounts/C02", data={**visit, "request_id": "v-2",
                                                         "outcome": "dispute"})
    assert dispute.status_code == 422
    assert "names the disputed bill" in field_error(dispute.text, "bill_id")
    future = zhang.post("/worklist/accounts/C02", data={**visit, "request_id": "v-3",
                                                        "at": "2026-03-03T09:00"})
    assert "in the future" in field_error(future.text, "at")
    ticket = zhang.post("/worklist/accounts/C02", follow_redirects=False, data={
        "csrf_token": token, "form": "ticket", "request_id": "t-1", "category": "meter_question",
        "summary": "表走得快"})
    assert ticket.status_code == 303 and "saved=ticket" in ticket.headers["location"]
    assert zhang.get("/tickets").status_code == 403  # a collector opens, a supervisor decides
    boss, boss_token = client_for(app, "boss")
    listed = boss.get("/tickets?status=open")
    assert "表计疑问" in listed.text and 'href="/tickets/1"' in listed.text
    assert boss.post("/tickets/1/decision", data={"decision": "表计校验正常"}).status_code == 403
    empty = boss.post("/tickets/1/decision", data={"csrf_token": boss_token, "decision": " "})
    assert empty.status_code == 422 and "says what was decided" in empty.text
    done = boss.post("/tickets/1/decision", data={"csrf_token": boss_token,
                                                  "decision": "表计校验正常"})
    assert done.status_code == 200 and "已办结" in done.text and "表计校验正常" in done.text
    again = boss.post("/tickets/1/decision", data={"csrf_token": boss_token, "decision": "x"})
    assert again.status_code == 409 and "already decided" in again.text
    audi, audi_token = client_for(app, "audi")
    assert audi.get("/tickets/1").status_code == 200
    assert audi.post("/tickets/1/decision", data={"csrf_token": audi_token,
                                                  "decision": "x"}).status_code == 403
    # the desk opens a ticket from the list; a bad bill is named next to its field
    bad = boss.post("/tickets", data={"csrf_token": boss_token, "request_id": "t-2",
                                      "account_id": "C05", "category": "billing_dispute"})
    assert bad.status_code == 422 and "names the disputed bill" in field_error(bad.text, "bill_id")


def test_the_supervisor_reassigns_and_balances(app: object) -> None:
    boss, token = client_for(app, "boss")
    page = boss.get("/worklist/supervisor")
    assert page.status_code == 200
    assert all(f'/worklist?collector={k}' in page.text for k in ("K1", "K2", "K3", "K4"))
    moved = boss.post("/worklist/supervisor/reassign", follow_redirects=False, data={
        "csrf_token": token, "date": DAY.isoformat(), "account_id": "C01", "to": "K2",
        "reason": "张三请假"})
    assert moved.status_code == 303 and "moved=1" in moved.headers["location"]
    assert "已移动 1 户" in boss.get(moved.headers["location"]).text
    assert boss.get("/worklist?collector=K2").text.count('data-label="户号"') == 3
    missing = boss.post("/worklist/supervisor/reassign", data={
        "csrf_token": token, "date": DAY.isoformat(), "account_id": "C02", "to": "K2"})
    assert missing.status_code == 422 and field_error(missing.text, "reason") == "必填"
    both = boss.post("/worklist/supervisor/reassign", data={
        "csrf_token": token, "date": DAY.isoformat(), "to": "K2", "reason": "x"})
    assert both.status_code == 422 and "exactly one" in both.text
    balanced = boss.post("/worklist/supervisor/balance", follow_redirects=False,
                         data={"csrf_token": token, "date": DAY.isoformat()})
    assert balanced.status_code == 303 and "moved=" in balanced.headers["location"]
    audi, audi_token = client_for(app, "audi")
    assert audi.get("/worklist/supervisor").status_code == 200
    assert 'action="/worklist/supervisor/reassign"' not in audi.get("/worklist/supervisor").text
    assert audi.post("/worklist/supervisor/balance", data={
        "csrf_token": audi_token, "date": DAY.isoformat()}).status_code == 403


def test_plans_are_proposed_within_policy_and_approved_by_another(app: object,
                                                                   db: Database) -> None:
    li, token = client_for(app, "li")
    form = {"csrf_token": token, "request_key": "k-1", "account_id": "C04", "kind": "pay_plan",
            "down_payment": "16.00", "instalments": "2"}
    small = li.post("/plans/new", data=form)  # 80 yuan owed: 32-yuan instalments are too small
    assert small.status_code == 422 and "50.00" in small.text
    bad = li.post("/plans/new", data={**form, "down_payment": "abc", "instalments": "0"})
    assert "not a decimal number" in field_error(bad.text, "down_payment")
    assert field_error(bad.text, "instalments").startswith("1–")
    theirs = li.post("/plans/new", data={**form, "account_id": "C01"})
    assert "none of your worklists" in field_error(theirs.text, "account_id")
    assert list_plans(db.engine) == []
    ok = li.post("/plans/new", follow_redirects=False, data={
        **form, "request_key": "k-2", "account_id": "C03", "down_payment": "600.00",
        "instalments": "3"})
    assert ok.status_code == 303, ok.text
    plan_url = ok.headers["location"].split("?")[0]
    assert "等待主管批准" in li.get(ok.headers["location"]).text
    assert li.post(f"{plan_url}/approve", data={"csrf_token": token}).status_code == 403
    boss, boss_token = client_for(app, "boss")
    listed = boss.get("/plans?status=proposed&collector=K2")
    assert f'href="{plan_url}"' in listed.text and "li" in listed.text
    assert "第 1 / 1 页，共 1 条" in listed.text  # paged in SQL: the count is the filter's
    assert "共 0 条" in boss.get("/plans?status=active").text
    assert boss.get("/plans?status=bogus").status_code == 422
    assert boss.post(f"{plan_url}/approve").status_code == 403  # no CSRF token
    approved = boss.post(f"{plan_url}/approve", data={"csrf_token": boss_token},
                         follow_redirects=False)
    assert approved.status_code == 303
    assert "执行中" in boss.get(plan_url).text
    assert [p["approved_by"] for p in list_plans(db.engine)] == ["boss"]
    # a collector sees only the plans they proposed
    zhang, _ = client_for(app, "zhang")
    assert zhang.get(plan_url).status_code == 404
    assert "C03" not in zhang.get("/plans").text


def test_four_eyes_the_proposer_cannot_approve(app: object, db: Database) -> None:
    boss, token = client_for(app, "boss")
    ok = boss.post("/plans/new", follow_redirects=False, data={
        "csrf_token": token, "request_key": "k-9", "account_id": "C03", "kind": "pay_plan",
        "down_payment": "600.00", "instalments": "3"})
    plan_url = ok.headers["location"].split("?")[0]
    refused = boss.post(f"{plan_url}/approve", data={"csrf_token": token})
    assert refused.status_code == 422
    assert "approved by someone other than the requester" in refused.text
    assert list_plans(db.engine)[0]["status"] == "proposed"
    other, other_token = client_for(app, "boss2")
    cancelled = other.post(f"{plan_url}/cancel", data={"csrf_token": other_token,
                                                       "reason": "客户撤回"},
                           follow_redirects=False)
    assert cancelled.status_code == 303
    assert "已取消" in other.get(plan_url).text


def test_experiments_show_arms_sizes_and_intervals(app: object, db: Database) -> None:
    from dianfei.risk.service import create_experiment

    boss, _ = client_for(app, "boss")
    assert "尚无策略试验" in boss.get("/experiments").text
    with db.session() as s:
        create_experiment(s, experiment_id="dun-2026", description="统一 vs 风险驱动",
                          arms=[("uniform", 0.5), ("risk_driven", 0.5)], seed=7,
                          started_on=DAY - timedelta(days=120),
                          clock=FixedClock(at(DAY)), accounts=[f"C0{i}" for i in range(1, 8)])
    listed = boss.get("/experiments")
    assert 'href="/experiments/dun-2026"' in listed.text and "uniform 50%" in listed.text
    one = boss.get(f"/experiments/dun-2026?as_of={DAY.isoformat()}")
    assert one.status_code == 200, one.text
    assert "uniform ★" in one.text and "risk_driven" in one.text and "[" in one.text
    assert boss.get("/experiments/dun-2026?as_of=soon").status_code == 422
    assert boss.get("/experiments/nope").status_code == 404
    zhang, _ = client_for(app, "zhang")
    assert zhang.get("/experiments").status_code == 403
    assert 'href="/experiments"' not in zhang.get("/worklist").text


def test_the_list_and_the_account_page_show_the_risk_segment(app: object, db: Database) -> None:
    from dianfei.collections.account import account_segment

    seg = account_segment(db, "C01", as_of=DAY)
    assert seg is not None
    zhang, _ = client_for(app, "zhang")
    page = zhang.get("/worklist")
    assert page.text.count('data-label="客户分类"') == 2 and seg["label"] in page.text
    acct = zhang.get("/worklist/accounts/C01")
    assert "客户分类" in acct.text and seg["label"] in acct.text
    assert html.escape(seg["rule"]) in acct.text  # the rule that put it there, in its words
    assert "Segment" in zhang.get("/worklist/accounts/C01?lang=en").text
