"""A worker killed (SIGKILL) in the middle of a bill run: its run waits out the lease, another
worker takes it over, and the bill run it resumes ends as if nothing had happened — every bill
once, the run recorded with two attempts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from tests.billing.test_crash_recovery import _populate, _state
from tests.conftest import fresh_database_env

pytestmark = pytest.mark.db

SCHEDULE = """
[[job]]
name = "bill-run"
kind = "bill_run"
every = "month"
day_of_month = 3
at = "06:00"
args = { chunk_size = 3 }
"""


def _same(state: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    return {**state, "ledger": [r[:4] + r[5:] for r in state["ledger"]]}


def _worker(env: dict[str, str], now: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", "worker", "--once", "--json"],
                          env={**os.environ, **env, "DIANFEI_NOW": now, **extra},
                          capture_output=True, text=True, timeout=180)


def test_a_killed_workers_bill_run_is_finished_by_the_next_worker(
        db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    _populate(db)
    (tmp_path / "schedule.toml").write_text(SCHEDULE)
    (tmp_path / "dianfei.toml").write_text(f'[jobs]\nschedule = "{tmp_path / "schedule.toml"}"\n')
    env = {**db_env, "DIANFEI_CONFIG": str(tmp_path / "dianfei.toml")}

    killed = _worker(env, "2026-02-03T09:00:00+08:00", DIANFEI_FAULT_KILL_AT="bill_run.chunk_written:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with db.engine.connect() as conn:
        run = conn.execute(text("SELECT status, attempts FROM job_runs")).one()
        assert tuple(run) == ("running", 1)
        assert conn.execute(text("SELECT count(*) FROM bills")).scalar() == 5

    # while the dead worker's lease holds, another worker leaves the run alone
    early = json.loads(_worker(env, "2026-02-03T09:02:00+08:00").stdout)
    assert early["ran"] == [] and early["requeued_stale"] == 0
    # once it has run out, the run is taken over and the bill run resumed to its end
    later = json.loads(_worker(env, "2026-02-03T09:10:00+08:00").stdout)
    assert later["requeued_stale"] == 1
    assert [(r["job"], r["status"], r["attempt"]) for r in later["ran"]] == [("bill-run", "done", 2)]
    resumed = _state(db)

    # the same population billed in one uninterrupted run gives the same rows
    with fresh_database_env(tmp_path) as other_env:
        other = open_database(load_settings(other_env))
        try:
            _populate(other)
            clean = _worker({**other_env, "DIANFEI_CONFIG": str(tmp_path / "dianfei.toml")},
                            "2026-02-03T09:00:00+08:00")
            assert clean.returncode == 0, clean.stderr
            # the same rows; only the resumed chunks' ledger postings carry the later time
            # at which the second worker posted them (posted_at, column 4)
            assert _same(_state(other)) == _same(resumed)
        finally:
            other.engine.dispose()
