"""The back office's operational pages: bill runs with progress (/billing), the VEE worklist
(/vee), the reconciliation worklist (/reconcile) and the cashier's counter (/counter) — roles,
CSRF, field-level errors with nothing stored, refusals in words."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end, scalar
from tests.payments.statements.builders import Line, alipay_csv
from typer.testing import CliRunner

from dianfei.cli.jobs import KINDS
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.jobs.service import claim, run_claimed
from dianfei.ledger import service as ledger
from dianfei.metering.vee.models import VeeEstimate, VeeFinding
from dianfei.payments import reconcile_service as rs
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.statements import parse_statement
from dianfei.web.app import create_app
from dianfei.web.csrf import csrf_token
from dianfei.web.ops_billing import WORKER_KINDS

PASSWORD = "correct horse battery"
JAN = Period(2026, 1)
CLOCK = FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ))
pytestmark = pytest.mark.db

USERS = {"clerk": "billing_clerk", "cashier": "cashier", "cashier2": "cashier",
         "sup": "supervisor", "aud": "auditor", "coll": "collector"}


@pytest.fixture
def world(db: Database) -> Database:
    """Three customers with January reads (C02 without: an exception), owing a bill each."""
    load_people(db, [Person("C00"), Person("C01"), Person("C02")])
    (Reads().add("C00", month_end(Period(2025, 12)), 1000_00).add("C00", month_end(JAN), 1100_00)
     .add("C01", month_end(Period(2025, 12)), 1000_00).add("C01", month_end(JAN), 1200_00)
     .store(db))
    for name, role in USERS.items():
        res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                                 input=PASSWORD + "\n")
        assert res.exit_code == 0, res.output
    return db


@pytest.fixture
def client(world: Database) -> TestClient:
    return TestClient(create_app(world, CLOCK), raise_server_exceptions=False)


def sign_in(client: TestClient, user: str) -> str:
    client.cookies.clear()
    r = client.post("/session", data={"username": user, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_token(client.cookies["dianfei_session"])


def work_one(db: Database) -> dict[str, object]:
    """What the worker does for one run (dianfei worker's claim and run)."""
    run = claim(db, clock=CLOCK, worker="test")
    assert run is not None
    return run_claimed(db, run, KINDS, clock=CLOCK, worker="test")


# -- roles and CSRF ------------------------------------------------------------------------------


PAGES = {"/billing": "clerk", "/vee": "clerk", "/reconcile": "sup", "/reconcile/breaks": "aud",
         "/counter": "cashier"}


def test_each_page_is_for_its_roles_only(client: TestClient) -> None:
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    for path, user in PAGES.items():
        assert anonymous.get(path).status_code == 401, path
        sign_in(client, user)
        assert client.get(path).status_code == 200, (path, user)
        sign_in(client, "coll")
        assert client.get(path).status_code == 403, path
    sign_in(client, "cashier")
    for path in ("/billing", "/vee", "/reconcile"):
        assert client.get(path).status_code == 403, path
    sign_in(client, "clerk")
    assert client.get("/counter").status_code == 403
    # the menu shows each role its own pages
    menu = client.get("/billing").text.split('<nav class="menu">')[1].split("</nav>")[0]
    assert 'href="/billing"' in menu and 'href="/vee"' in menu and "/counter" not in menu


def test_every_form_needs_the_csrf_token(client: TestClient, world: Database) -> None:
    sign_in(client, "clerk")
    r = client.post("/billing/run", data={"period": "2026-01"})
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    sign_in(client, "cashier")
    for path, data in (("/counter/open", {"float": "0"}),
                       ("/counter/pay", {"account": "C00", "amount": "1", "method": "cash"}),
                       ("/counter/close", {"counted": "0"})):
        assert client.post(path, data=data).status_code == 403, path
    sign_in(client, "sup")
    assert client.post("/reconcile/breaks/1/resolve", data={"note": "x"}).status_code == 403
    assert scalar(world.engine, "SELECT count(*) FROM job_runs") == 0
    assert scalar(world.engine, "SELECT count(*) FROM cashier_shifts") == 0


def test_the_page_kinds_are_the_workers() -> None:
    assert set(WORKER_KINDS) == set(KINDS)


# -- bill runs -------------------------------------------------------------------------------------


def test_a_clerk_starts_a_bill_run_and_follows_it_to_the_end(
        client: TestClient, world: Database) -> None:
    token = sign_in(client, "clerk")
    page = client.get("/billing")
    assert 'value="2026-01"' in page.text  # last month is offered
    r = client.post("/billing/run", data={"period": "2026-01", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/billing?job=")
    job = int(r.headers["location"].split("=")[1])
    queued = client.get(f"/billing?job={job}").text
    assert f'hx-get="/billing/jobs/{job}"' in queued and 'hx-trigger="every 2s"' in queued
    assert "排队中" in queued and "等待作业进程" in queued
    # a second run while one is queued: refused in words, nothing queued
    again = client.post("/billing/run", data={"period": "2026-01", "csrf_token": token})
    assert again.status_code == 409
    assert f"a bill run is already queued (job run {job}" in again.text
    assert scalar(world.engine, "SELECT count(*) FROM job_runs") == 1
    # the worker runs it; the panel stops polling and shows the run's figures
    done = work_one(world)
    assert done["status"] == "done", done
    panel = client.get(f"/billing/jobs/{job}")
    assert panel.status_code == 200 and "<html" not in panel.text
    assert "every 2s" not in panel.text and 'data-status="done"' in panel.text
    assert "已处理 3 / 3 户" in panel.text and 'href="/exceptions/2026-01"' in panel.text
    table = client.get("/billing").text
    assert "2026-01-001" in table and "已完成" in table
    csv_rows = list(csv.reader(io.StringIO(
        client.get("/billing?format=csv").content.decode("utf-8")[1:])))
    assert csv_rows[1][:7] == ["2026-01", "2026-01-001", "已完成", "3", "3", "2", "1"]


@pytest.mark.parametrize(("period", "message"), [
    ("2026-13", "period month must be 01..12"), ("26-1", "period must be YYYY-MM"),
    ("2026-03", "has not started yet")])
def test_a_wrong_period_is_refused_next_to_the_field(
        client: TestClient, world: Database, period: str, message: str) -> None:
    token = sign_in(client, "clerk")
    r = client.post("/billing/run", data={"period": period, "csrf_token": token})
    assert r.status_code == 422
    assert re.search(r'<p class="error" id="period-error">[^<]*' + re.escape(message), r.text)
    assert f'value="{period}"' in r.text  # what was typed comes back
    assert scalar(world.engine, "SELECT count(*) FROM job_runs") == 0


def test_a_failed_run_is_shown_in_words(client: TestClient, world: Database) -> None:
    token = sign_in(client, "clerk")
    r = client.post("/billing/run", data={"period": "2026-01", "csrf_token": token},
                    follow_redirects=False)
    job = int(r.headers["location"].split("=")[1])

    def broken(_db: Database, _ctx: object) -> dict[str, object]:
        raise OSError("the tariff directory is not readable")

    with world.engine.begin() as conn:  # the last attempt: the run lands on the failed list
        conn.execute(text("UPDATE job_runs SET max_attempts = 1"))
    run = claim(world, clock=CLOCK, worker="test")
    assert run is not None
    assert run_claimed(world, run, {"bill_run": broken}, clock=CLOCK,
                       worker="test")["status"] == "failed"
    panel = client.get(f"/billing/jobs/{job}").text
    assert "核算失败：OSError: the tariff directory is not readable" in panel
    assert "every 2s" not in panel
    blocked = client.post("/billing/run", data={"period": "2026-01", "csrf_token": token})
    assert blocked.status_code == 409 and "retry or skip it first" in blocked.text


# -- the counter -----------------------------------------------------------------------------------


def owe(db: Database) -> None:
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C00", customer_id="C00", kind="bill",
                          amount=8070, reference="C00-202601-1", due_on=date(2026, 2, 18))


def test_a_cashier_takes_payments_and_closes_the_till(client: TestClient, world: Database) -> None:
    owe(world)
    token = sign_in(client, "cashier")
    assert "开班" in client.get("/counter").text
    bad = client.post("/counter/open", data={"float": "-5", "csrf_token": token})
    assert bad.status_code == 422 and 'id="float-error"' in bad.text
    assert scalar(world.engine, "SELECT count(*) FROM cashier_shifts") == 0
    r = client.post("/counter/open", data={"float": "500.00", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/counter").text
    shift = re.search(r'id="shift-id">([^<]+)<', page).group(1)  # type: ignore[union-attr]
    receipt_no = re.search(r'name="receipt_no" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert receipt_no == f"{shift}-00001"
    form = {"receipt_no": receipt_no, "account": "C00", "amount": "50.00", "method": "cash",
            "tendered": "100", "csrf_token": token}
    paid = client.post("/counter/pay", data=form, follow_redirects=False)
    assert paid.status_code == 303 and paid.headers["location"] == f"/counter?receipt={receipt_no}"
    shown = client.get(paid.headers["location"]).text
    assert 'id="receipt"' in shown and "C00 · ¥50.00" in shown and "找零 ¥50.00" in shown
    assert "缴费后欠费 ¥30.70" in shown
    # the same form again (a double click): the same receipt, nothing new posted
    twice = client.post("/counter/pay", data=form, follow_redirects=False)
    assert twice.headers["location"] == f"/counter?receipt={receipt_no}&again=1"
    assert scalar(world.engine, "SELECT count(*) FROM payments WHERE channel = 'counter'") == 1
    card = client.post("/counter/pay", data={**form, "receipt_no": f"{shift}-00002",
                                             "amount": "30.70", "method": "card",
                                             "tendered": ""}, follow_redirects=False)
    assert card.status_code == 303
    assert ledger.balance(world.engine.connect(), "C00") == 0
    printed = client.get(f"/counter/receipts/{receipt_no}")
    assert printed.status_code == 200 and "100.00" in printed.text
    # another cashier sees neither the receipt nor the shift
    sign_in(client, "cashier2")
    assert client.get(f"/counter/receipts/{receipt_no}").status_code == 404
    assert 'id="receipt"' not in client.get(f"/counter?receipt={receipt_no}").text
    token = sign_in(client, "cashier")
    closed = client.post("/counter/close", data={"shift_id": shift, "counted": "549.00",
                                                 "csrf_token": token}, follow_redirects=False)
    assert closed.status_code == 303 and closed.headers["location"] == f"/counter?closed={shift}"
    summary = client.get(closed.headers["location"]).text
    assert 'id="till-closed"' in summary
    assert re.search(r'id="difference">-1.00<', summary)  # 500 + 50 expected, 549 counted
    assert re.search(r'id="hand-over">49.00<', summary)
    # the close is posted once and audited; a closed till takes nothing more
    again = client.post("/counter/close", data={"shift_id": shift, "counted": "549.00",
                                                "csrf_token": token})
    assert again.status_code == 409 and "is closed" in again.text
    late = client.post("/counter/pay", data={**form, "receipt_no": "", "csrf_token": token})
    assert late.status_code == 409 and "no open shift" in late.text
    assert scalar(world.engine, "SELECT count(*) FROM audit_records WHERE action = "
                  "'counter.till_closed'") == 1
    assert scalar(world.engine, "SELECT count(*) FROM payments WHERE channel = 'counter'") == 2


@pytest.mark.parametrize(("fields", "where", "message"), [
    ({"amount": "abc"}, "amount", "not a decimal number"),
    ({"amount": "1.234"}, "amount", "at most 2 decimal places"),
    ({"amount": "0"}, "amount", "must be more than 0"),
    ({"account": ""}, "account", "required"),
    ({"account": "NOPE"}, "account", "does not exist"),
    ({"method": "cheque"}, "method", "one of cash, card"),
    ({"tendered": "10"}, "tendered", "less than the amount"),
])
def test_a_wrong_payment_is_refused_next_to_its_field_and_stores_nothing(
        client: TestClient, world: Database, fields: dict[str, str], where: str,
        message: str) -> None:
    owe(world)
    token = sign_in(client, "cashier")
    client.post("/counter/open", data={"float": "0", "csrf_token": token})
    form = {"account": "C00", "amount": "50.00", "method": "cash", "csrf_token": token, **fields}
    r = client.post("/counter/pay", data=form)
    assert r.status_code in (409, 422)
    assert re.search(f'id="{where}-error">[^<]*{re.escape(message)}', r.text), r.text[-3000:]
    assert scalar(world.engine, "SELECT count(*) FROM payments") == 0
    assert scalar(world.engine, "SELECT count(*) FROM counter_receipts") == 0


# -- the VEE worklist ------------------------------------------------------------------------------


def test_the_vee_worklist_pages_filters_and_links_the_account(
        client: TestClient, world: Database) -> None:
    at = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    with world.session() as s:
        s.add_all([VeeFinding(rule="spike", meter_id="MC00", ts=at, ref="", value_wh=9000,
                              detail="far above the median", run_id="V1"),
                   VeeFinding(rule="gap", meter_id="MC01", ts=at, ref="", value_wh=None,
                              detail="4 slots missing", run_id="V1"),
                   VeeEstimate(meter_id="MC01", ts=at, minutes=15, wh=100, method="linear",
                               inputs="{}", run_id="V1")])
    sign_in(client, "clerk")
    page = client.get("/vee")
    assert page.status_code == 200 and "共 3 条" in page.text
    assert 'href="/customers/by-account/C00"' in page.text
    spikes = client.get("/vee?reason=spike").text
    assert "共 1 条" in spikes and "MC00" in spikes and "MC01" not in spikes
    assert "共 3 条" in client.get("/vee?station=S1").text
    wrong = client.get("/vee?reason=nonsense")
    assert wrong.status_code == 422 and 'id="reason-error"' in wrong.text
    rows = list(csv.reader(io.StringIO(
        client.get("/vee?format=csv&reason=estimated").content.decode("utf-8")[1:])))
    assert rows[1][:3] == ["estimated", "MC01", "C01"] and len(rows) == 2


# -- reconciliation --------------------------------------------------------------------------------


def reconciled(db: Database) -> None:
    day, clock = date(2026, 2, 2), FixedClock(datetime(2026, 2, 3, 8, tzinfo=BUSINESS_TZ))
    with db.session() as s:
        for acct, fen in (("C00", 8000), ("C01", 5000)):
            ledger.post_entry(s, clock=clock, account_id=acct, customer_id=acct, kind="bill",
                              amount=fen, reference=f"{acct}-202601-1", due_on=date(2026, 2, 18))
        order = payments.create_order(s, account_id="C00", amount=8000, channel="alipay",
                                      clock=clock).order_no
        paid = datetime(2026, 2, 2, 9, tzinfo=BUSINESS_TZ)
        payments.post_channel_payment(s, ChannelPayment("alipay", "A1", 8000, paid,
                                                        order_no=order), clock=clock,
                                      source="callback")
        payments.post_channel_payment(s, ChannelPayment("alipay", "A9", 1000, paid,
                                                        account_id="C01"), clock=clock,
                                      source="callback")
    at = datetime(2026, 2, 2, 10, 0)
    statement = parse_statement("alipay", alipay_csv(
        [Line("A1", 8000, at, order), Line("A3", 700, at, "DFNOSUCH")]), name="ali.csv")
    with db.session() as s:
        rs.reconcile_statement(s, statement, day=day, clock=clock)


def test_the_reconciliation_worklist_and_resolving_a_break(
        client: TestClient, world: Database) -> None:
    reconciled(world)
    sign_in(client, "aud")
    runs = client.get("/reconcile").text
    assert "alipay" in runs and "2026-02-02" in runs and "共 1 条" in runs
    breaks = client.get("/reconcile/breaks")
    assert "共 2 条" in breaks.text and "我方无记录（长款）" in breaks.text
    assert "渠道无记录（短款）" in breaks.text
    assert 'href="/reconcile/breaks/' not in breaks.text  # an auditor reads, does not resolve
    first = scalar(world.engine, "SELECT min(id) FROM reconciliation_discrepancies")
    assert client.get(f"/reconcile/breaks/{first}").status_code == 403
    token = sign_in(client, "sup")
    assert f'href="/reconcile/breaks/{first}"' in client.get("/reconcile/breaks").text
    assert "共 1 条" in client.get("/reconcile/breaks?kind=missing_in_statement").text
    empty = client.post(f"/reconcile/breaks/{first}/resolve",
                        data={"note": "  ", "csrf_token": token})
    assert empty.status_code == 422 and 'id="note-error"' in empty.text
    assert scalar(world.engine, "SELECT count(*) FROM reconciliation_discrepancies "
                  "WHERE resolved_at IS NULL") == 2
    done = client.post(f"/reconcile/breaks/{first}/resolve",
                       data={"note": "refunded by Alipay", "csrf_token": token},
                       follow_redirects=False)
    assert done.status_code == 303
    assert "共 1 条" in client.get(done.headers["location"]).text
    assert scalar(world.engine, "SELECT resolution FROM reconciliation_discrepancies "
                  f"WHERE id = {first}") == "refunded by Alipay"
    assert scalar(world.engine, "SELECT count(*) FROM audit_records WHERE action = "
                  "'reconcile.resolved'") == 1
    twice = client.post(f"/reconcile/breaks/{first}/resolve",
                        data={"note": "again", "csrf_token": token})
    assert twice.status_code == 422 and "already resolved" in twice.text
    assert client.get("/reconcile/breaks/999999").status_code == 404


def test_every_page_has_its_words_in_both_languages(client: TestClient, world: Database) -> None:
    reconciled(world)
    for path, user in PAGES.items():
        token = sign_in(client, user)
        if path == "/counter":
            client.post("/counter/open", data={"float": "0", "csrf_token": token})
        for lang in ("zh-CN", "en"):
            text_ = client.get(f"{path}?lang={lang}").text
            assert not re.search(r">\s*(ops|nav|col)\.[a-z_.]+", text_), (path, lang)
    sign_in(client, "sup")
    first = scalar(world.engine, "SELECT min(id) FROM reconciliation_discrepancies")
    en = client.get(f"/reconcile/breaks/{first}?lang=en").text
    assert "Missing on our side" in en and "How it was cleared" in en
