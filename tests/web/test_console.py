"""The console shell: CSRF on cookie sessions, server-side paging and CSV/XLSX export of every
table, the language switch, the menu by role, and the locally served assets (/static, /docs)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from tests.factories import Person, Reads, load_people, month_end
from typer.testing import CliRunner

from dianfei.billing.service import run_bill_run
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.web.app import create_app
from dianfei.web.csrf import csrf_token

PASSWORD = "correct horse battery"
JAN = Period(2026, 1)
pytestmark = pytest.mark.db


@pytest.fixture
def client(db: Database) -> TestClient:
    """60 customers, two with reads: 58 exceptions for January (three pages of 25)."""
    people = [Person(f"C{i:02d}") for i in range(60)]
    load_people(db, people)
    (Reads().add("C00", month_end(Period(2025, 12)), 1000_00).add("C00", month_end(JAN), 1100_00)
     .add("C01", month_end(Period(2025, 12)), 1000_00).add("C01", month_end(JAN), 1200_00)
     .store(db))
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    for name, role in (("clerk", "billing_clerk"), ("cashier", "cashier"), ("mon", "monitor")):
        res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                                 input=PASSWORD + "\n")
        assert res.exit_code == 0, res.output
    return TestClient(create_app(db), raise_server_exceptions=False)


def sign_in(client: TestClient, user: str = "clerk") -> str:
    r = client.post("/session", data={"username": user, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_token(client.cookies["dianfei_session"])


def test_cookie_sessions_need_the_csrf_token_to_change_anything(client: TestClient) -> None:
    token = sign_in(client)
    # any state-changing request signed in by the cookie: refused before it reaches a route
    refused = client.post("/api/v1/no-such-route", json={})
    assert refused.status_code == 403 and refused.json()["error"] == "csrf"
    wrong = client.post("/api/v1/no-such-route", json={}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    # the header (htmx) or the form field (a plain form) passes the check
    assert client.post("/api/v1/no-such-route", json={},
                       headers={"X-CSRF-Token": token}).status_code == 404
    form = client.post("/api/v1/no-such-route", data={"csrf_token": token, "x": "1"})
    assert form.status_code == 404
    # reading needs no token; a bearer token (not sent by a browser on its own) needs none
    assert client.get("/periods").status_code == 200
    bearer = TestClient(client.app).post("/api/v1/auth/token",
                                         json={"username": "clerk", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {bearer.json()['access_token']}"}
    assert TestClient(client.app).post("/api/v1/no-such-route", json={},
                                       headers=headers).status_code == 404


def test_the_page_carries_its_csrf_token_for_htmx_and_forms(client: TestClient) -> None:
    token = sign_in(client)
    page = client.get("/periods").text
    assert f'"X-CSRF-Token": "{token}"' in page
    assert f'name="csrf_token" value="{token}"' in page  # the sign-out form


def test_tables_page_on_the_server(client: TestClient) -> None:
    sign_in(client)
    first = client.get("/exceptions/2026-01?size=25")
    assert first.status_code == 200
    assert first.text.count('data-label="户号"') == 25
    assert "第 1 / 3 页，共 58 条" in first.text and "page=2" in first.text
    last = client.get("/exceptions/2026-01?size=25&page=3")
    assert last.text.count('data-label="户号"') == 8 and "page=4" not in last.text
    # htmx asks for the table alone
    part = client.get("/exceptions/2026-01?size=25&page=2",
                      headers={"HX-Request": "true", "HX-Target": "table-exceptions-2026-01"})
    assert part.text.lstrip().startswith('<div class="table"') and "<html" not in part.text
    for bad in ("size=7", "page=0", "page=x"):
        r = client.get(f"/exceptions/2026-01?{bad}")
        assert r.status_code == 422, bad


def test_tables_export_every_row_to_csv_and_xlsx(client: TestClient) -> None:
    sign_in(client)
    r = client.get("/exceptions/2026-01?format=csv&size=25&page=2")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == ["户号", "原因", "说明", "核算批次"] and len(rows) == 59
    x = client.get("/exceptions/2026-01?format=xlsx&lang=en")
    sheet = load_workbook(io.BytesIO(x.content)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("Account", "Reason", "Detail", "Run") and len(values) == 59
    assert client.get("/exceptions/2026-01?format=pdf").status_code == 422


def test_language_switch_is_remembered(client: TestClient) -> None:
    sign_in(client)
    en = client.get("/periods?lang=en")
    assert "Billed periods" in en.text and '<html lang="en">' in en.text
    assert "dianfei_lang=en" in en.headers["set-cookie"]
    assert "Billed periods" in client.get("/periods").text
    assert "电费发行" in client.get("/periods?lang=zh-CN").text


def test_the_menu_shows_only_what_the_role_may_open(client: TestClient) -> None:
    sign_in(client, "cashier")
    page = client.get("/periods").text
    menu = page.split('<nav class="menu">')[1].split("</nav>")[0]
    for href in (a.split('"')[1] for a in menu.split('href=')[1:]):
        assert client.get(href).status_code == 200, href


def test_static_files_and_api_docs_are_served_locally(client: TestClient) -> None:
    assert client.get("/static/console.css").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static/vendor/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text.split("<body")[1]
    # an anonymous caller of a page is asked to sign in; a monitor has no console page
    anon = TestClient(client.app).get("/", follow_redirects=False)
    assert anon.status_code == 401
    sign_in(client, "mon")
    assert client.get("/", follow_redirects=False).status_code == 403
