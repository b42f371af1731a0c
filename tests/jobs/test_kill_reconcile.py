"""A worker killed (SIGKILL) in the daily reconciliation after some statement lines were
auto-posted: the file is reconciled in one transaction, so the crash leaves nothing of it (no
payment, no stored file, no worklist row, no report); the next worker reconciles it again and
ends with the rows of an uninterrupted run — each lost callback posted once, each discrepancy
once."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import text

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from tests.billing.test_crash_recovery import _populate as populate
from tests.jobs.faults import calendar, copy_of, intact, killed, rows, worker
from tests.payments.statements.builders import Line, alipay_csv

JAN = Period(2026, 1)
SCHEDULE = """
[[job]]
name = "reconcile-alipay"
kind = "reconcile"
every = "day"
at = "11:00"
args = { channel = "alipay" }
"""

DAY = date(2026, 2, 5)  # the statement's day, reconciled the next morning
BEFORE = FixedClock(datetime(2026, 2, 5, 8, 0, tzinfo=BUSINESS_TZ))
PAID = datetime(2026, 2, 5, 10, 0)

#: the end state, without the instants at which it was written (the rerun is later)
STATE = {
    "payments": "SELECT payment_id, channel, transaction_id, order_no, account_id, amount, "
                "business_date, source, status FROM payments ORDER BY payment_id",
    "ledger": "SELECT account_id, kind, amount, reference, business_date FROM ledger_entries "
              "ORDER BY reference, kind",
    "allocations": "SELECT payment_id, account_id, allocated_to, bill_id, item_reference, amount "
                   "FROM payment_allocations ORDER BY payment_id, item_reference",
    "events": "SELECT type, key, account_id, amount, balance_after FROM events ORDER BY key",
    "files": "SELECT kind, channel, sha256, status FROM statement_files",
    "worklist": "SELECT channel, day, kind, transaction_id, ref, statement_amount, ledger_amount, "
                "line, payment_id, order_no, detail, owner, resolved_at FROM "
                "reconciliation_discrepancies ORDER BY kind, ref",
    "reports": "SELECT channel, day, settlement_ok, figures FROM reconciliation_reports",
}


def _populate(db: Database) -> None:
    """January's bills (tests/billing/test_crash_recovery.py's population) and an Alipay order
    for C01–C04 and C06: C01's callback arrived, C02–C04's were lost (the statement posts
    them), C06 did not pay; a callback of C01 for another payment is missing from the statement,
    and a statement line names no order of ours."""
    populate(db)
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, tzinfo=BUSINESS_TZ)))
    with db.session() as s:
        owed = dict(s.execute(text("SELECT account_id, amount FROM bills")).all())
        orders = {a: payments.create_order(s, account_id=a, amount=owed[a], channel="alipay",
                                           clock=BEFORE).order_no
                  for a in ("C01", "C02", "C03", "C04", "C06")}
        paid = PAID.replace(tzinfo=BUSINESS_TZ)
        payments.post_channel_payment(s, ChannelPayment("alipay", "A1", owed["C01"], paid,
                                                        order_no=orders["C01"]),
                                      clock=BEFORE, source="callback")
        payments.post_channel_payment(s, ChannelPayment("alipay", "A9", 300, paid,
                                                        account_id="C01"),
                                      clock=BEFORE, source="callback")
    statement = alipay_csv([Line(f"A{i}", owed[f"C0{i}"], PAID, orders[f"C0{i}"])
                            for i in range(1, 5)] + [Line("A7", 700, PAID, "DFNOSUCH")])
    folder = Path(db.settings.data_dir) / "statements" / "alipay"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{DAY}.csv").write_bytes(statement)


def _state(db: Database) -> dict[str, list[tuple[object, ...]]]:
    out = rows(db, STATE)
    # the report's figures name the statement file's path, which is per database here
    out["reports"] = [(*r[:3], {k: v for k, v in json.loads(str(r[3])).items() if k != "file"})
                      for r in out["reports"]]
    return out


def test_a_killed_reconciliation_posts_nothing_twice_and_the_rerun_finishes_it(
        db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    _populate(db)
    config = calendar(tmp_path, SCHEDULE)
    with copy_of(db, db_env, tmp_path) as clean_env:
        env = {**db_env, "DIANFEI_CONFIG": config}
        # two lost callbacks posted from the statement, then the worker died
        killed(worker(env, "2026-02-06T11:00:00+08:00",
                      DIANFEI_FAULT_KILL_AT="reconcile.line_posted:2"))
        partial = _state(db)
        assert [p[2] for p in partial["payments"]] == ["A1", "A9"]  # the two callbacks only
        assert partial["files"] == partial["worklist"] == partial["reports"] == []

        later = json.loads(worker(env, "2026-02-06T11:10:00+08:00").stdout)
        assert later["requeued_stale"] == 1
        assert [(r["job"], r["status"], r["attempt"]) for r in later["ran"]] == [
            ("reconcile-alipay", "done", 2)]
        resumed = _state(db)

        clean = worker({**clean_env, "DIANFEI_CONFIG": config}, "2026-02-06T11:00:00+08:00")
        assert clean.returncode == 0, clean.stderr
        other = open_database(load_settings(clean_env))
        try:
            assert _state(other) == resumed
        finally:
            other.engine.dispose()
    # each lost callback posted once, from the statement; the unknown order and the payment
    # missing from the statement are on the worklist once each
    assert sorted((p[2], p[7]) for p in resumed["payments"]) == [
        ("A1", "callback"), ("A2", "statement"), ("A3", "statement"), ("A4", "statement"),
        ("A9", "callback")]
    assert sorted((w[2], w[3]) for w in resumed["worklist"]) == [
        ("missing_in_ledger", "A7"), ("missing_in_statement", "A9")]
    assert len(resumed["files"]) == 1 and resumed["files"][0][3] == "processed"
    intact(db_env)
