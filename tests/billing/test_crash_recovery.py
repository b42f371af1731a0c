"""A bill run killed with SIGKILL half-way and run again equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from tests.conftest import fresh_database_env
from tests.factories import Person, Reads, load_people, month_end

from dianfei.core.clock import Period
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database

JAN = Period(2026, 1)
NOW = "2026-02-03T09:00:00+08:00"


def _populate(db: Database) -> None:
    people = [Person(f"C{i:02d}") for i in range(1, 12)]
    people.append(Person("C99", tariff_id="no-such-tariff"))
    load_people(db, people)
    r = Reads()
    for i, p in enumerate(people):
        r.add(p.customer_id, month_end(Period(2025, 12)), 1000_00)
        if p.customer_id != "C05":  # C05 has no read: an exception, in the first chunk
            r.add(p.customer_id, month_end(JAN), 1000_00 + 37_31 * (i + 1))
    r.store(db)


def _bill_run(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dianfei", "bill", "run", "--period", "2026-01",
         "--chunk-size", "3"],
        env={**os.environ, **env, "DIANFEI_NOW": NOW, **extra},
        capture_output=True, text=True, timeout=120)


def _state(db: Database) -> dict[str, list[tuple[object, ...]]]:
    queries = {
        "bills": "SELECT * FROM bills ORDER BY bill_id",
        "lines": "SELECT * FROM bill_lines ORDER BY bill_id, line_no",
        "ledger": "SELECT account_id, customer_id, kind, amount, posted_at, business_date, due_on, "
                  "reference FROM ledger_entries ORDER BY reference",
        "exceptions": "SELECT run_id, period, account_id, reason, detail FROM bill_exceptions "
                      "ORDER BY account_id",
        "runs": "SELECT run_id, period, issued_on, due_on, status, candidates, billed, "
                "exceptions, amount FROM bill_runs",
    }
    with db.engine.connect() as conn:
        return {k: [tuple(r) for r in conn.execute(text(q))] for k, q in queries.items()}


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(db: Database, db_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    _populate(db)
    killed = _bill_run(db_env, DIANFEI_FAULT_KILL_AT="bill_run.chunk_written:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with db.engine.connect() as conn:
        partial = conn.execute(text("SELECT count(*) FROM bills")).scalar()
        status = conn.execute(text("SELECT status FROM bill_runs")).scalar()
    assert partial == 5 and status == "running"  # two chunks of 3 accounts, one an exception

    resumed = _bill_run(db_env)
    assert resumed.returncode == 0, resumed.stderr
    interrupted_state = _state(db)

    # the same population billed in one go, in a second database, gives the same rows
    with fresh_database_env(tmp_path) as other_env:
        other = open_database(load_settings(other_env))
        try:
            _populate(other)
            assert _bill_run(other_env).returncode == 0
            assert _state(other) == interrupted_state
        finally:
            other.engine.dispose()
    assert interrupted_state["runs"][0][4:] == ("completed", 12, 10, 2,
                                                sum(b[8] for b in interrupted_state["bills"]))
