"""The collections pages in a real browser: a collector works the list on a phone and records a
promise to pay; a supervisor approves a payment plan another user proposed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app as cli
from dianfei.collections import worklist as wl
from dianfei.collections.plan_workflow import propose_plan
from dianfei.collections.promises import promises_json
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.risk.service import create_experiment
from tests.browser.conftest import LiveServer, shot, sign_in
from tests.collections.worklist_fixtures import DAY, at, load

PASSWORD = "correct horse battery"
CLOCK = FixedClock(at(DAY, 18))


@pytest.fixture
def county(db: Database) -> Database:
    load(db)
    for name, role in (("zhang", "collector"), ("li", "collector"), ("boss", "supervisor")):
        res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                                 input=PASSWORD + "\n")
        assert res.exit_code == 0, res.output
    wl.set_roster(db, "K1", by="admin", username="zhang")
    wl.set_roster(db, "K2", by="admin", username="li")
    return db


def test_a_collector_works_the_list_on_a_phone_and_records_a_promise(
        county: Database, phone: Any) -> None:
    with LiveServer(county, CLOCK) as server:
        sign_in(phone, server.url, "zhang", PASSWORD)
        phone.goto(f"{server.url}/worklist")
        assert phone.locator("h1").inner_text() == "催费工单"
        # under 640 px the table is a stack of cards: no header row, each cell names its column
        assert phone.locator("thead").is_hidden()
        assert phone.locator("tbody tr").count() == 2
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        first = phone.locator("tbody tr").first
        assert first.evaluate("e => getComputedStyle(e).display") == "block"
        assert first.locator("td").nth(2).evaluate(
            "e => getComputedStyle(e, '::before').content") == '"户名"'
        assert "用户C01" in first.inner_text()
        shot(phone, "worklist")
        first.tap(position={"x": 200, "y": 20})  # anywhere on the card opens the account
        phone.wait_for_url("**/worklist/accounts/C01")
        assert "¥500.00" in phone.inner_text(".cards")
        # a promise below the policy's share of what is owed: the message sits by the amount
        phone.fill("#promise-form input[name=amount]", "10.00")
        phone.fill("#promise-form input[name=promise_on]", "2026-03-09")
        phone.click("#promise-form button[type=submit]")
        phone.wait_for_load_state("networkidle")
        assert "covers at least" in phone.inner_text("#promise-form [data-field=amount]")
        assert promises_json(county.engine, "C01") == []
        shot(phone, "promise-refused")
        phone.fill("#promise-form input[name=amount]", "300.00")
        phone.click("#promise-form button[type=submit]")
        phone.wait_for_url("**saved=promise**")
        assert "已记录承诺缴费：300.00 元，2026-03-09 前" in phone.inner_text("[role=status]")
        assert "promise made" in phone.inner_text("tbody")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        shot(phone, "promise-recorded")
    assert [(p["amount"], p["due_on"]) for p in promises_json(county.engine, "C01")] == [
        ("300.00", "2026-03-09")]


def test_a_supervisor_approves_a_plan_another_user_proposed(county: Database, page: Any) -> None:
    with county.session() as s:
        plan = propose_plan(s, account_id="C03", kind="pay_plan", down_payment_fen=600_00,
                            instalments=3, requested_by="li", clock=CLOCK)
        plan_id = plan.plan_id
    with LiveServer(county, CLOCK) as server:
        sign_in(page, server.url, "boss", PASSWORD)
        page.goto(f"{server.url}/plans")
        page.select_option("select[name=status]", "proposed")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**status=proposed**")
        assert page.locator("tbody tr").count() == 1
        shot(page, "proposed-plans")
        page.click(f"a[href='/plans/{plan_id}']")
        page.wait_for_url(f"**/plans/{plan_id}")
        assert page.inner_text("#plan-status") == "待审批"
        assert page.locator("tbody tr").count() == 4  # the down payment and three instalments
        page.click("#approve")
        page.wait_for_url("**saved=approved**")
        assert page.inner_text("#plan-status") == "执行中"
        assert "已批准" in page.inner_text("[role=status]")
        assert "boss" in page.inner_text("main")
        shot(page, "plan-approved")
        page.click("text=催费督办")
        page.wait_for_url("**/worklist/supervisor")
        assert page.locator("tbody tr").count() == 4  # one row per collector
        shot(page, "supervisor-view")
        with county.session() as s:
            create_experiment(s, experiment_id="dun-2026", description="统一 vs 风险驱动催费",
                              arms=[("holdout", 0.2), ("uniform", 0.4), ("risk_driven", 0.4)],
                              seed=7, started_on=DAY - timedelta(days=120), clock=CLOCK,
                              accounts=[f"C0{i}" for i in range(1, 8)])
        page.click("text=策略试验")
        page.click("text=dun-2026")
        page.wait_for_url("**/experiments/dun-2026")
        assert page.locator("tbody tr").count() == 3  # one row per arm
        assert "uniform ★" in page.inner_text("tbody")
        shot(page, "experiment")
