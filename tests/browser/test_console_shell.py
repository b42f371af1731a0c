"""The console in a real browser: sign in, the menu, paging a table with htmx, switching to
English."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from typer.testing import CliRunner

from dianfei.billing.service import run_bill_run
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from tests.browser.conftest import LiveServer, shot, sign_in
from tests.factories import Person, Reads, load_people, month_end

PASSWORD = "correct horse battery"
JAN = Period(2026, 1)


def test_a_clerk_signs_in_pages_the_exceptions_and_switches_language(
        db: Database, page: Any) -> None:
    load_people(db, [Person(f"C{i:02d}") for i in range(60)])
    (Reads().add("C00", month_end(Period(2025, 12)), 1000_00).add("C00", month_end(JAN), 1100_00)
     .store(db))
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    res = CliRunner().invoke(cli, ["users", "add", "clerk", "--role", "billing_clerk",
                                   "--password-stdin"], input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output
    with LiveServer(db) as server:
        sign_in(page, server.url, "clerk", PASSWORD)
        page.goto(f"{server.url}/periods")
        assert page.locator("h1").inner_text() == "电费发行"
        shot(page, "periods")
        page.click("text=59")  # the exceptions count links to the list
        page.wait_for_url("**/exceptions/2026-01")
        assert "第 1 / 2 页，共 59 条" in page.inner_text(".pager")
        page.click("text=下一页")  # htmx swaps the table in place and pushes the URL
        page.wait_for_url("**page=2**")
        assert "第 2 / 2 页" in page.inner_text(".pager")
        assert page.locator("tbody tr").count() == 9
        shot(page, "exceptions-page-2")
        page.click("text=English")
        assert page.locator("h1").inner_text().startswith("Not billed")
