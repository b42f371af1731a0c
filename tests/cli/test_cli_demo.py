"""The CLI end to end: demo, exports, bill show, ledger check — as an operator would run them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from tests.snapshots import built_once


def dianfei(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "dianfei", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"dianfei {' '.join(args)} failed:\n{proc.stderr}")
    return proc


@pytest.fixture
def demo_env(db_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Fourteen months of billing and payments (collections are exercised by the test below):
    the demo runs once per test process; each test gets its own copy of what it made."""
    built_once("demo-300x14", db_env, tmp_path_factory, lambda env: dianfei(
        env, "demo", "--customers", "300", "--months", "14", "--seed", "3", "--no-serve",
        "--no-collections"))
    return db_env


def test_demo_bills_every_month_and_the_ledger_holds(demo_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    summary = json.loads(dianfei(demo_env, "demo", "--customers", "300", "--months", "14",
                                 "--seed", "3", "--no-serve", "--no-collections",
                                 "--json").stdout)
    # running the demo again on the same database resumes: nothing is billed twice
    assert summary["customers"] == 300
    assert summary["periods"] == "2025-01..2026-02"
    assert summary["bills"] + summary["unbilled_exceptions"] >= 300 * 14 - 14
    assert dianfei(demo_env, "ledger", "check").returncode == 0

    out = tmp_path / "bills.csv"
    dianfei(demo_env, "export", "bills", "--out", str(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == summary["bills"]
    assert list(rows[0]) == ["bill_id", "customer_id", "period", "issued_on", "due_on", "amount",
                             "kwh", "paid_amount", "paid_in_full_on", "status"]
    total = sum(int(r["amount"].replace(".", "")) for r in rows)
    assert f"{total // 100}.{total % 100:02d}" == summary["amount_billed"]
    assert all(len(r["amount"].split(".")[1]) == 2 for r in rows)

    ledger = tmp_path / "ledger.csv"
    dianfei(demo_env, "export", "ledger", "--out", str(ledger))
    entries = list(csv.DictReader(ledger.open(encoding="utf-8")))
    assert {"bill", "payment"} <= {e["kind"] for e in entries}
    assert sum(e["kind"] == "bill" for e in entries) == len(rows)
    assert entries[0]["posted_at"].endswith("+08:00")

    # the customers paid: every fen of every payment is allocated, and the bills export agrees
    payments = tmp_path / "payments.csv"
    dianfei(demo_env, "export", "payments", "--out", str(payments))
    allocs = list(csv.DictReader(payments.open(encoding="utf-8")))
    assert list(allocs[0]) == ["payment_id", "customer_id", "paid_at", "amount", "channel",
                               "bill_id", "allocated_to"]
    fen = lambda text: int(text.replace(".", "").replace("-", "")) * (-1 if "-" in text else 1)  # noqa: E731
    posted = {e["reference"]: -fen(e["amount"]) for e in entries if e["kind"] == "payment"}
    per_payment: dict[str, int] = {}
    for a in allocs:
        per_payment[a["payment_id"]] = per_payment.get(a["payment_id"], 0) + fen(a["amount"])
    assert per_payment == posted
    to_bill: dict[str, int] = {}
    for a in allocs:
        if a["allocated_to"] == "bill":
            to_bill[a["bill_id"]] = to_bill.get(a["bill_id"], 0) + fen(a["amount"])
    assert {r["bill_id"]: fen(r["paid_amount"]) for r in rows if fen(r["paid_amount"])} == \
        {b: v for b, v in to_bill.items() if v}
    statuses = {r["status"] for r in rows}
    assert {"paid", "open"} <= statuses

    customers = tmp_path / "customers.csv"
    dianfei(demo_env, "export", "customers", "--out", str(customers))
    people = list(csv.DictReader(customers.open(encoding="utf-8")))
    assert len(people) == 300
    assert all("*" in p["phone"] for p in people if p["phone"])  # masked


def test_bill_show_json_and_html(demo_env: dict[str, str], tmp_path: Path) -> None:
    doc = json.loads(dianfei(demo_env, "bill", "show", "C00000001", "--period", "2025-06",
                             "--format", "json").stdout)
    assert doc["account"] == "C00000001" and doc["period"] == "2025-06"
    cents = sum(int(line["amount"].replace(".", "").replace("-", "")) *
                (-1 if line["amount"].startswith("-") else 1) for line in doc["lines"])
    assert f"{cents / 100:.2f}" == doc["total"]
    assert doc["history"][0]["period"] == "2025-06" and len(doc["history"]) == 6
    html = tmp_path / "bill.html"
    dianfei(demo_env, "bill", "show", "C00000001", "--period", "2025-06", "--format", "html",
            "--out", str(html))
    assert doc["total"] in html.read_text(encoding="utf-8")


def test_errors_are_one_clear_line_and_exit_2(db_env: dict[str, str]) -> None:
    bad = dianfei(db_env, "bill", "run", "--period", "2026-13", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: period month")
    missing = dianfei(db_env, "bill", "show", "NOPE", "--period", "2026-01", check=False)
    assert missing.returncode == 2 and "no bill for account NOPE" in missing.stderr


def test_ledger_check_fails_on_a_tampered_ledger(demo_env: dict[str, str]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(demo_env["DIANFEI_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE bills SET amount = amount + 1 WHERE bill_id = "
                          "(SELECT min(bill_id) FROM bills)"))
    engine.dispose()
    proc = dianfei(demo_env, "ledger", "check", check=False)
    assert proc.returncode == 1
    assert "every bill entry books an existing bill of the same account and amount" in proc.stderr


def test_demo_runs_collections_every_day_lawfully(db_env: dict[str, str]) -> None:
    from datetime import datetime, timedelta

    dianfei(db_env, "demo", "--customers", "150", "--months", "3", "--seed", "5", "--no-serve")
    assert dianfei(db_env, "ledger", "check").returncode == 0
    events = json.loads(dianfei(db_env, "collect", "events", "--json").stdout)
    types = {e["type"] for e in events}
    assert {"payment_received", "late_fee_accrued", "dunning_level", "notice_sent",
            "suspension_ordered", "suspended"} <= types
    ats = [e["at"] for e in events]
    assert ats == sorted(ats, key=datetime.fromisoformat)  # oldest first
    with open(_export(db_env, "customers"), encoding="utf-8") as fh:
        customers = {r["customer_id"]: r for r in csv.DictReader(fh)}
    sent: dict[str, list[datetime]] = {}
    cutoff: dict[str, list[datetime]] = {}
    for e in events:
        at = datetime.fromisoformat(e["at"])
        if e["type"] == "notice_sent" and e.get("notice") == "stop_notice":
            sent.setdefault(e["account"], []).append(at)
        if e["type"] == "notice_sent" and e.get("notice") == "cutoff_notice":
            cutoff.setdefault(e["account"], []).append(at)
        if e["type"] == "suspended":
            cust = customers[e["account"]]
            assert cust["protected"] == "0", e
            assert at.weekday() < 5 and 8 <= at.hour < 18, e
            if e.get("reason") == "prepay":
                # a smart-prepayment cut-off: the cut-off notice and its wait replace the stop
                # notice (docs/collections.md)
                assert cust["payment_mode"] == "prepaid", e
                assert any(at - s >= timedelta(hours=24) for s in cutoff.get(e["account"], [])), e
                continue
            days = 7 if cust["customer_class"] == "residential" else 3
            assert any(at - s >= timedelta(days=days) for s in sent.get(e["account"], [])), e
    # most customers cut off for arrears pay what they owe within days (sim behaviour), and
    # collections reconnects them promptly: a payment that clears the account, then the close
    cut: dict[str, datetime] = {}
    reconnected = 0
    for e in events:
        at = datetime.fromisoformat(e["at"])
        if e["type"] == "suspended" and e.get("reason") != "prepay":
            cut[e["account"]] = at
        elif e["type"] == "reconnected" and e["account"] in cut:
            paid = [p for p in events if p["account"] == e["account"]
                    and p["type"] == "payment_received"
                    and cut[e["account"]] < datetime.fromisoformat(p["at"]) <= at]
            assert paid and Decimal(paid[-1]["balance_after"]) <= 0, e
            assert at - datetime.fromisoformat(paid[-1]["at"]) <= timedelta(days=2), e
            reconnected += 1
            del cut[e["account"]]
    assert reconnected >= 1
    _ratings_carried_forward_equal_a_full_pass(db_env)


def _ratings_carried_forward_equal_a_full_pass(env: dict[str, str]) -> None:
    """The daily rating re-rates only the accounts whose facts may have changed; on three months
    of the demo's collections, what it carried forward equals rating every account afresh."""
    from datetime import date, datetime, time

    import polars as pl
    from polars.testing import assert_frame_equal
    from sqlalchemy import text

    from dianfei.collections import incentives
    from dianfei.collections import ops_repository as repo
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database

    db = open_database(load_settings({**os.environ, **env}))
    with db.engine.connect() as conn:
        passes = [(d if isinstance(d, date) else date.fromisoformat(str(d)), bool(f))
                  for d, f in conn.execute(text("SELECT day, full_pass FROM credit_rating_passes "
                                                "ORDER BY day")).all()]
    assert sum(1 for _d, f in passes if not f) > 40  # most days carried forward
    assert sum(1 for _d, f in passes if f) == 1  # the first day: each month's first carries
    # the last day rated again after its evening payments: carried forward from the morning
    day = passes[-1][0]
    got = incentives.rate_accounts(db, day, clock=FixedClock(
        datetime.combine(day, time(20), tzinfo=BUSINESS_TZ)))
    assert got["full_pass"] == 0
    r = incentives.rules()
    cols = ["account_id", "grade", "points", "on_time", "late", "broken", "suspensions",
            "repeat_defaulter"]
    fresh = incentives.rate_frame(incentives.facts_of(db, day, r), r).select(cols)
    stored = repo.ratings(db.engine).select(cols).filter(
        pl.col("account_id").is_in(fresh["account_id"].implode()))
    assert fresh.height > 100
    assert_frame_equal(stored.sort("account_id"), fresh.sort("account_id"))
    db.engine.dispose()


def test_demo_shows_smart_prepayment(db_env: dict[str, str]) -> None:
    """Prepaid customers' meters report daily frozen reads; most top up in time, some get the
    low-balance warning, some run out: cut-off notice, remote trip after the wait, and the
    automatic reconnection after they top up."""
    from datetime import datetime, timedelta

    dianfei(db_env, "demo", "--customers", "300", "--months", "3", "--seed", "7", "--no-serve")
    assert dianfei(db_env, "ledger", "check").returncode == 0
    events = json.loads(dianfei(db_env, "collect", "events", "--json").stdout)
    with open(_export(db_env, "customers"), encoding="utf-8") as fh:
        prepaid = {r["customer_id"] for r in csv.DictReader(fh) if r["payment_mode"] == "prepaid"}
    assert len(prepaid) > 30
    mine = [e for e in events if e["account"] in prepaid]
    notices = {e.get("notice") for e in mine if e["type"] == "notice_sent"}
    assert {"prepay_warning", "cutoff_notice"} <= notices
    topups = [e for e in mine if e["type"] == "payment_received"]
    assert len({e["account"] for e in topups}) == len(prepaid)  # everyone tops up
    # most prepaid customers top up before they are warned
    warned = {e["account"] for e in mine if e.get("notice") == "prepay_warning"}
    assert len(warned) < len(prepaid) / 2
    # tripped after the wait, then reconnected by itself after a top-up
    cycles = 0
    by_account: dict[str, list[dict[str, object]]] = {}
    for e in mine:
        by_account.setdefault(e["account"], []).append(e)
    for history in by_account.values():
        tripped_at = None
        for e in history:
            at = datetime.fromisoformat(str(e["at"]))
            if e["type"] == "suspended":
                assert e["reason"] == "prepay", e
                tripped_at = at
            elif e["type"] == "reconnected" and tripped_at is not None:
                assert e["reason"] == "prepay", e
                paid = [datetime.fromisoformat(str(p["at"])) for p in history
                        if p["type"] == "payment_received"
                        and tripped_at <= datetime.fromisoformat(str(p["at"])) <= at]
                assert paid and at - max(paid) <= timedelta(hours=24), e
                cycles += 1
                tripped_at = None
    assert cycles >= 1
    types = {e["type"] for e in mine}
    assert {"suspension_ordered", "suspended", "reconnection_ordered", "reconnected"} <= types


def _export(env: dict[str, str], kind: str) -> str:
    out = os.path.join(env["DIANFEI_DATA_DIR"], f"{kind}.csv")
    dianfei(env, "export", kind, "--out", out)
    return out
