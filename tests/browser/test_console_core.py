"""The console's core pages in a real browser: a supervisor opens the dashboard (the KPI charts
are drawn), searches an account from the header box and opens the customer 360 view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl
from typer.testing import CliRunner

from dianfei.billing.service import run_bill_run
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.payments.service import post_payments_frame
from dianfei.reporting import dashboard
from tests.browser.conftest import LiveServer, shot, sign_in
from tests.factories import Person, Reads, load_people, month_end

PASSWORD = "correct horse battery"
DEC, JAN, FEB = Period(2025, 12), Period(2026, 1), Period(2026, 2)


def _utility(db: Database) -> None:
    """Twelve customers, C00 (王小明) and C01 billed for January and February; C00 pays."""
    load_people(db, [Person("C00", name="王小明")] + [Person(f"C{i:02d}") for i in range(1, 12)])
    reads = Reads()
    for c, base in (("C00", 1000_00), ("C01", 2000_00)):
        reads.add(c, month_end(DEC), base).add(c, month_end(JAN), base + 120_00)
        reads.add(c, month_end(FEB), base + 260_00)
    reads.store(db)
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    run_bill_run(db, FEB, FixedClock(datetime(2026, 3, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    with db.engine.begin() as conn:
        post_payments_frame(conn, pl.DataFrame({
            "channel": ["alipay", "counter"], "transaction_id": ["T1", "T2"],
            "account_id": ["C00", "C01"], "amount": [60_00, 20_00],
            "paid_at": [datetime(2026, 2, 8, 2, tzinfo=UTC), datetime(2026, 3, 5, 2, tzinfo=UTC)]}),
            clock=FixedClock(datetime(2026, 3, 5, 3, tzinfo=UTC)), source="test")
    res = CliRunner().invoke(cli, ["users", "add", "lin", "--role", "supervisor",
                                   "--password-stdin"], input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output
    dashboard.forget()


def test_a_supervisor_reads_the_dashboard_finds_an_account_and_opens_it(
        db: Database, page: Any) -> None:
    _utility(db)
    now = FixedClock(datetime(2026, 3, 20, 9, 0, tzinfo=BUSINESS_TZ))
    with LiveServer(db, now) as server:
        sign_in(page, server.url, "lin", PASSWORD)
        page.wait_for_url("**/dashboard")
        assert page.locator("h1").inner_text().startswith("总览")
        page.wait_for_selector(".charts .chart canvas")  # ECharts drew the trend lines
        assert page.locator(".charts .chart canvas").count() == 5
        assert "电费回收率" in page.inner_text(".cards")
        shot(page, "dashboard")
        page.select_option("select[name=collector]", "K1")
        page.click("form.filters button")
        page.wait_for_url("**collector=K1**")
        page.wait_for_selector(".charts .chart canvas")
        # the header search box: a name matching one account goes straight to it
        page.fill("header .search input[name=q]", "小明")
        page.press("header .search input[name=q]", "Enter")
        page.wait_for_url("**/customers/C00?account=C00")
        assert "王小明" in page.locator("h1").inner_text()
        page.wait_for_selector("#usage-chart canvas")
        page.wait_for_selector("#table-bills-C00 tbody tr")  # htmx loaded the bills
        bills = page.inner_text("#table-bills-C00")
        assert "2026-02" in bills and "2026-01" in bills
        assert "60.00" in page.inner_text("#table-payments-C00")
        assert "13800138000" in page.inner_text("table.facts")  # a supervisor may see it
        shot(page, "customer-360")
        page.click("#table-bills-C00 >> text=2026-01")
        page.wait_for_url("**/bills/C00/2026-01")
        assert "缴费状态" in page.inner_text("#payment-status")
        shot(page, "bill-status")
        # a search with many matches: the paged results
        page.goto(f"{server.url}/search?q=用户")
        assert "共 11 条" in page.inner_text(".pager")
        shot(page, "search-results")
        page.click("nav.menu >> text=配置")
        page.wait_for_url("**/settings")
        page.click("#setting-late_fees summary")
        assert "late_fees.toml" in page.inner_text("#setting-late_fees")
        shot(page, "settings")
        page.click("nav.menu >> text=作业")
        page.wait_for_url("**/jobs")
        assert "共 0 条" in page.inner_text(".pager")


def test_the_customer_360_reads_on_a_phone(db: Database, phone: Any) -> None:
    _utility(db)
    now = FixedClock(datetime(2026, 3, 20, 9, 0, tzinfo=BUSINESS_TZ))
    with LiveServer(db, now) as server:
        sign_in(phone, server.url, "lin", PASSWORD)
        phone.goto(f"{server.url}/customers/by-account/C01")
        phone.wait_for_url("**/customers/C01?account=C01")
        phone.wait_for_selector("#table-bills-C01 tbody tr")
        phone.wait_for_selector("#usage-chart canvas")
        # tables become cards on a phone: each cell carries its column's name
        first = phone.locator("#table-bills-C01 tbody tr").first
        assert "已缴（元）" in first.locator("td").nth(5).get_attribute("data-label")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, width  # nothing wider than the screen
        shot(phone, "customer-360-phone")
