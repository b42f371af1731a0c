"""A worker killed (SIGKILL) in the daily risk scoring after the day's scores were written and
before its early-warning list was stored: the next worker scores the day again and ends with
the scores file and the warning list of an uninterrupted run — one file per day (written to a
temporary name and renamed, never half a file), each warning once."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from dianfei.risk.engine import daily_scores
from tests.billing.test_crash_recovery import _populate as populate
from tests.jobs.faults import calendar, copy_of, intact, killed, rows, worker

SCHEDULE = """
[[job]]
name = "risk-scores"
kind = "risk_score"
every = "day"
at = "03:00"
"""

DAY = date(2026, 3, 20)
WARNINGS = {"warnings": "SELECT day, account_id, kind, probability, previous, band, scorer, "
                        "model_version, reasons_zh, reasons_en FROM risk_warnings "
                        "ORDER BY day, account_id"}


def _populate(db: Database) -> None:
    """January's bills, one of them paid; the day after they were issued already scored (the
    baseline the early warnings compare with)."""
    populate(db)
    run_bill_run(db, Period(2026, 1), FixedClock(datetime(2026, 2, 3, 9, tzinfo=BUSINESS_TZ)))
    with db.session() as s:
        payments.post_channel_payment(
            s, ChannelPayment("alipay", "T-C02", 10_000, datetime(2026, 2, 10, 10,
                                                                  tzinfo=BUSINESS_TZ),
                              account_id="C02"),
            clock=FixedClock(datetime(2026, 2, 10, 10, tzinfo=BUSINESS_TZ)), source="callback")
    daily_scores(db, date(2026, 2, 4), refresh=True)


def _scores(env: dict[str, str]) -> tuple[list[str], pl.DataFrame]:
    folder = Path(env["DIANFEI_DATA_DIR"]) / "risk" / "scores"
    return sorted(p.name for p in folder.iterdir()), pl.read_parquet(folder / f"{DAY}.parquet")


def test_a_killed_risk_scoring_is_scored_again_once(
        db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    _populate(db)
    config = calendar(tmp_path, SCHEDULE)
    with copy_of(db, db_env, tmp_path) as clean_env:
        env = {**db_env, "DIANFEI_CONFIG": config}
        killed(worker(env, f"{DAY}T03:00:00+08:00", DIANFEI_FAULT_KILL_AT="risk.scores_written"))
        # the day's scores are on disk, whole; its warnings are not stored yet
        files, _ = _scores(db_env)
        assert files == ["2026-02-04.parquet", "2026-03-20.parquet"]
        assert [r[0] for r in rows(db, WARNINGS)["warnings"]] == []

        later = json.loads(worker(env, f"{DAY}T03:10:00+08:00").stdout)
        assert later["requeued_stale"] == 1
        assert [(r["job"], r["status"], r["attempt"]) for r in later["ran"]] == [
            ("risk-scores", "done", 2)]
        resumed_files, resumed_scores = _scores(db_env)
        resumed = rows(db, WARNINGS)

        clean = worker({**clean_env, "DIANFEI_CONFIG": config}, f"{DAY}T03:00:00+08:00")
        assert clean.returncode == 0, clean.stderr
        clean_files, clean_scores = _scores(clean_env)
        other = open_database(load_settings(clean_env))
        try:
            assert rows(other, WARNINGS) == resumed
        finally:
            other.engine.dispose()
    assert resumed_files == clean_files == ["2026-02-04.parquet", "2026-03-20.parquet"]
    assert_frame_equal(resumed_scores, clean_scores)
    assert resumed_scores["account_id"].n_unique() == resumed_scores.height
    # the unpaid accounts crossed into the warning list, each once; C02 paid and is not on it
    warned = [r[1] for r in resumed["warnings"]]
    assert len(warned) == len(set(warned)) > 0 and "C02" not in warned
    intact(db_env)
