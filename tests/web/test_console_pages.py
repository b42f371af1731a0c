"""The console's core pages: dashboard, search, customer 360, the bill's payment status,
settings and the job history — data shown, roles refused, paging and export, masked personal
data."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, time

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end
from typer.testing import CliRunner

from dianfei.billing.service import run_bill_run
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.jobs.calendar import Entry
from dianfei.jobs.service import queue_manual
from dianfei.payments.service import post_payments_frame
from dianfei.reporting import dashboard
from dianfei.reporting.kpi import period_kpis
from dianfei.web.app import create_app

PASSWORD = "correct horse battery"
DEC, JAN = Period(2025, 12), Period(2026, 1)
NOW = FixedClock(datetime(2026, 3, 10, 9, 0, tzinfo=BUSINESS_TZ))
pytestmark = pytest.mark.db


@pytest.fixture
def client(db: Database) -> TestClient:
    """30 customers (C00 named 王小明), C00 and C01 billed for January, C00 paid 10.00 of it."""
    load_people(db, [Person("C00", name="王小明")] + [Person(f"C{i:02d}") for i in range(1, 30)])
    (Reads().add("C00", month_end(DEC), 1000_00).add("C00", month_end(JAN), 1100_00)
     .add("C01", month_end(DEC), 1000_00).add("C01", month_end(JAN), 1200_00).store(db))
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    with db.engine.begin() as conn:
        post_payments_frame(conn, pl.DataFrame({
            "channel": ["counter"], "transaction_id": ["T1"], "account_id": ["C00"],
            "amount": [10_00], "paid_at": [datetime(2026, 2, 5, 2, tzinfo=UTC)]}),
            clock=FixedClock(datetime(2026, 2, 5, 3, tzinfo=UTC)), source="test")
    for name in ("supervisor", "cashier", "billing_clerk", "collector", "auditor", "monitor"):
        res = CliRunner().invoke(cli, ["users", "add", name, "--role", name, "--password-stdin"],
                                 input=PASSWORD + "\n")
        assert res.exit_code == 0, res.output
    dashboard.forget()
    return TestClient(create_app(db, NOW), raise_server_exceptions=False)


def sign_in(client: TestClient, user: str) -> None:
    client.cookies.clear()
    r = client.post("/session", data={"username": user, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def rows_of(csv_bytes: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"))))


def test_the_dashboard_shows_the_kpis_of_the_latest_period_with_their_trend(
        client: TestClient, db: Database) -> None:
    sign_in(client, "supervisor")
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    expected = period_kpis(db, JAN, NOW.now().date())
    rate = f"{expected['collection_rate'] * 100:.2f}%"
    assert "电费回收率" in page.text and rate in page.text and "2026-01" in page.text
    assert page.text.count("data-chart=") == 5  # one ECharts line per KPI
    assert f">{expected['billed']}<" in page.text
    assert "缓存" not in page.text
    again = client.get("/dashboard")
    assert "缓存" in again.text and rate in again.text  # second view: the cached figures
    # a payment moves the ledger: the figures are computed again
    with db.engine.begin() as conn:
        post_payments_frame(conn, pl.DataFrame({
            "channel": ["counter"], "transaction_id": ["T2"], "account_id": ["C01"],
            "amount": [5_00], "paid_at": [datetime(2026, 2, 6, 2, tzinfo=UTC)]}),
            clock=FixedClock(datetime(2026, 2, 6, 3, tzinfo=UTC)), source="test")
    fresh = client.get("/dashboard")
    assert "缓存" not in fresh.text
    now_rate = period_kpis(db, JAN, NOW.now().date())["collection_rate"]
    assert f"{now_rate * 100:.2f}%" in fresh.text and now_rate != expected["collection_rate"]


def test_the_dashboard_filters_by_region_class_and_collector(client: TestClient) -> None:
    sign_in(client, "supervisor")
    all_ = client.get("/dashboard").text
    mine = client.get("/dashboard?region=R1&collector=K1&customer_class=residential").text
    assert 'value="R1" selected' in mine and 'value="K1" selected' in mine
    assert all_.count("data-chart=") == mine.count("data-chart=") == 5
    none = client.get("/dashboard?customer_class=commercial")
    assert none.status_code == 200 and "no bills for period 2026-01" in none.text
    assert client.get("/dashboard?customer_class=spaceship").status_code == 422
    assert client.get("/dashboard?period=2026-13").status_code == 422


def test_the_dashboard_is_refused_to_roles_without_the_periods(client: TestClient) -> None:
    for user in ("collector", "monitor"):
        sign_in(client, user)
        assert client.get("/dashboard").status_code == 403


def test_search_goes_straight_to_a_single_match(client: TestClient) -> None:
    sign_in(client, "collector")
    for q in ("C00", "MC00", "小明"):  # customer id, meter number, part of the name
        r = client.get(f"/search?q={q}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/customers/C00?account=C00", q
    assert "王小明" in client.get("/search?q=C00").text


def test_search_results_page_and_export(client: TestClient) -> None:
    sign_in(client, "cashier")
    page = client.get("/search?q=用户&size=25")
    assert page.status_code == 200
    assert "第 1 / 2 页，共 29 条" in page.text and "/customers/C01?account=C01" in page.text
    second = client.get("/search?q=用户&size=25&page=2",
                        headers={"HX-Request": "true", "HX-Target": "table-search"})
    assert second.text.startswith('<div class="table"') and "C29" in second.text
    exported = rows_of(client.get("/search?q=用户&format=csv").content)
    assert len(exported) == 30 and exported[0][0] == "户号"
    assert "共 0 条" in client.get("/search?q=nobody-like-this").text
    assert client.get("/search").status_code == 200  # the empty form
    assert client.get("/search?q=" + "x" * 65).status_code == 422
    assert client.get("/search?q=%25").text.count("/customers/") == 0  # % is a character


def test_search_is_refused_without_customer_access(client: TestClient) -> None:
    sign_in(client, "monitor")
    assert client.get("/search?q=C00").status_code == 403


def test_the_customer_360_shows_who_what_is_owed_and_the_timeline(client: TestClient) -> None:
    sign_in(client, "supervisor")
    r = client.get("/customers/by-account/C00", follow_redirects=False)
    assert r.headers["location"] == "/customers/C00?account=C00"
    page = client.get("/customers/C00")
    assert page.status_code == 200
    text = page.text
    for shown in ("王小明", "城关镇", "城关供电所", "张三", "13800138000", "风险评分", "尚未评级",
                  "户务时间线", 'id="usage-chart"', "/customers/C00/bills?account=C00",
                  "/customers/C00/payments?account=C00"):
        assert shown in text, shown
    assert "缴费" in text and "账单" in text  # timeline kinds in words
    # the risk segment the dunning ladder reads, with the rule that put the account there
    assert re.search(r'客户分类</div><div class="value">[^<]+ (on time|occasionally late|chronic|'
                     r"hardship|strategic|vacant|suspected theft)</div>", text)
    bills = client.get("/customers/C00/bills?account=C00&format=csv")
    header, row = rows_of(bills.content)
    got = dict(zip(header, row, strict=True))
    amount = float(got["电费（元）"])
    assert got["账期"] == "2026-01" and got["已缴（元）"] == "10.00"
    assert float(got["未缴（元）"]) == pytest.approx(amount - 10)
    assert got["逾期（元）"] == got["未缴（元）"]  # due in February, today is 10 March
    pays = client.get("/customers/C00/payments?account=C00",
                      headers={"HX-Request": "true", "HX-Target": "table-payments-C00"})
    assert pays.status_code == 200 and "10.00" in pays.text and "counter" in pays.text


def test_personal_data_is_masked_for_a_role_without_pii(client: TestClient) -> None:
    sign_in(client, "cashier")
    text = client.get("/customers/C00").text
    assert "138****8000" in text and "13800138000" not in text


def test_the_customer_360_refusals(client: TestClient) -> None:
    sign_in(client, "billing_clerk")  # reads customers, not payments
    assert client.get("/customers/C00").status_code == 200
    assert 'table-payments-C00' not in client.get("/customers/C00").text
    assert client.get("/customers/C00/payments").status_code == 403
    assert client.get("/customers/NOPE").status_code == 404
    assert client.get("/customers/C00?account=C01").status_code == 404  # not C00's account
    assert client.get("/customers/by-account/NOPE", follow_redirects=False).status_code == 404
    sign_in(client, "monitor")
    assert client.get("/customers/C00").status_code == 403


def test_the_web_bill_says_what_is_paid_open_and_overdue(client: TestClient) -> None:
    sign_in(client, "billing_clerk")
    page = client.get("/bills/C00/2026-01")
    assert page.status_code == 200
    assert "缴费状态" in page.text and 'data-key="paid">10.00<' in page.text
    assert "截至 2026-03-10" in page.text
    en = client.get("/bills/C01/2026-01?lang=en")
    assert "Payment status" in en.text and 'data-key="paid">0.00<' in en.text


def test_settings_show_each_source_file_read_only(client: TestClient) -> None:
    sign_in(client, "auditor")
    page = client.get("/settings")
    assert page.status_code == 200
    for shown in ("cn-zj-residential", "late_fees.toml", "plans.toml", "assignment.toml",
                  "schedule.toml", "residential.toml", "notices.toml", "[[job]]"):
        assert shown in page.text, shown
    assert "<form" not in page.text.split("</header>", 1)[1]  # nothing editable
    versions = rows_of(client.get("/settings?format=csv").content)
    assert versions[0][0] == "电价" and any(r[0] == "cn-zj-residential" for r in versions[1:])
    sign_in(client, "cashier")
    assert client.get("/settings").status_code == 403


def test_the_job_history_pages_and_filters(client: TestClient, db: Database) -> None:
    for i in range(3):
        queue_manual(db, Entry(f"vee{i}", "vee_run", "day", time(2)), clock=NOW, user="admin")
    queue_manual(db, Entry("notify", "notify_dispatch", "day", time(8)), clock=NOW, user="admin")
    sign_in(client, "auditor")
    page = client.get("/jobs?size=25")
    assert page.status_code == 200 and "共 4 条" in page.text and "user:admin" in page.text
    assert "共 3 条" in client.get("/jobs?kind=vee_run").text
    assert "共 4 条" in client.get("/jobs?state=queued").text
    assert "共 0 条" in client.get("/jobs?state=failed").text
    assert client.get("/jobs?state=bogus").status_code == 422
    assert len(rows_of(client.get("/jobs?kind=notify_dispatch&format=csv").content)) == 2
    sign_in(client, "cashier")
    assert client.get("/jobs").status_code == 403


def test_the_dashboard_reads_the_figures_the_refresh_job_stored(
        client: TestClient, db: Database) -> None:
    """After `dianfei report dashboard` (the dashboard_refresh job) a view reads the stored row:
    the same figures as `dianfei kpi`, labelled with when they were computed, for every customer
    and each region, class and collector; two filters at once are still computed on view."""
    res = CliRunner().invoke(cli, ["report", "dashboard"], env={"DIANFEI_NOW": NOW.now().isoformat()})
    assert res.exit_code == 0, res.output
    done = json.loads(res.output)
    assert done["period"] == "2026-01" and done["as_of"] == "2026-03-10"
    with db.engine.connect() as conn:
        keys = sorted(r[0] for r in conn.execute(text("SELECT filter_key FROM dashboard_figures")))
    # every customer, then each region, class and collector of the 30 (the two billed are theirs)
    assert keys == ["", "collector=K1", "customer_class=residential", "region=R1"], keys
    assert done["stored"] == 4 and done["without_bills"] == 0
    sign_in(client, "supervisor")
    page = client.get("/dashboard")
    expected = period_kpis(db, JAN, NOW.now().date())
    assert "看板数据计算于 2026-03-10 09:00" in page.text
    assert f"{expected['collection_rate'] * 100:.2f}%" in page.text
    assert "看板数据计算于" in client.get("/dashboard?region=R1").text
    assert "看板数据计算于" not in client.get("/dashboard?region=R1&collector=K1").text
    # a payment after the refresh: the stored figures stay until the next refresh
    with db.engine.begin() as conn:
        post_payments_frame(conn, pl.DataFrame({
            "channel": ["counter"], "transaction_id": ["T3"], "account_id": ["C01"],
            "amount": [5_00], "paid_at": [datetime(2026, 2, 6, 2, tzinfo=UTC)]}),
            clock=FixedClock(datetime(2026, 2, 6, 3, tzinfo=UTC)), source="test")
    assert f"{expected['collection_rate'] * 100:.2f}%" in client.get("/dashboard").text
    res = CliRunner().invoke(cli, ["report", "dashboard"], env={"DIANFEI_NOW": NOW.now().isoformat()})
    assert res.exit_code == 0, res.output
    after = period_kpis(db, JAN, NOW.now().date())["collection_rate"]
    assert after != expected["collection_rate"]
    assert f"{after * 100:.2f}%" in client.get("/dashboard").text
