"""In a real browser: a collector asks for a late-fee waiver on the approvals page, and a
supervisor opens the request, approves it, and sees it carried out (the fee waived)."""

from __future__ import annotations

from datetime import date
from typing import Any

from dianfei.collections.service import amount_due
from dianfei.db.engine import Database
from tests.approvals.helpers import PASSWORD, add_staff, clock
from tests.browser.conftest import LiveServer, shot, sign_in
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import run, setup


def test_a_supervisor_approves_a_waiver(db: Database, browser: Any) -> None:
    setup(db, {"A": {}, "B": {"amount": 50_000}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    add_staff(db)
    with db.engine.connect() as conn:
        before = amount_due(conn, "A")
    with LiveServer(db, clock(date(2026, 2, 2))) as server:
        collector = browser.new_context(locale="zh-CN")
        page = collector.new_page()
        page.test_name = "approvals-collector"
        sign_in(page, server.url, "li", PASSWORD)
        page.goto(f"{server.url}/approvals/new")
        page.select_option("select[name=kind]", "waiver")
        page.fill("input[name=reference]", "A-202512-1")
        page.fill("textarea[name=reason]", "住院期间未能缴费")
        shot(page, "ask")
        page.click("#submit")
        page.wait_for_selector("text=申请已提交")
        request_url = page.url.split("?")[0]
        collector.close()

        supervisor = browser.new_context(locale="zh-CN")
        page = supervisor.new_page()
        page.test_name = "approvals-supervisor"
        sign_in(page, server.url, "wang", PASSWORD)
        page.goto(f"{server.url}/approvals?state=pending")
        shot(page, "pending")
        page.click(f"a[href='{request_url.removeprefix(server.url)}']")
        assert page.inner_text("#state") == "待审批"
        page.click("#approve")
        page.wait_for_selector("text=已批准并执行")
        assert page.inner_text("#state") == "已执行"
        shot(page, "approved")
        supervisor.close()
    with db.engine.connect() as conn:
        assert amount_due(conn, "A") == before - 300
