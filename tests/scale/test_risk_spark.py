"""Risk scoring on Spark (``local[2,3]``) gives every account the score, band and reasons of the
local path: the points score and a trained model, through ``daily_scores`` and ``risk score
--backend spark``; Spark that cannot start or a job that fails writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from bench.riskdata import sim_history
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.risk.engine import daily_scores, early_warnings, score_frame, train_model, truncate
from dianfei.risk.features import History
from dianfei.risk.model import ArrearsModel, TrainConfig, train
from dianfei.risk.partitions import account_part, routed, split_parts
from dianfei.scale.risk import spark_score_frame, spark_scorer
from dianfei.scale.session import SparkJobFailed

CFG = TrainConfig(trees=30, min_data_in_leaf=20)
#: the issue date of the 2025-06 bills in the simulated history
D = date(2025, 7, 3)
#: after those bills' due date (07-18): the unpaid ones rise, some into the early warnings
LATER = date(2025, 7, 25)
PARTS = 5


@pytest.fixture(scope="module")
def history() -> History:
    """The synthetic county's eight months, with what the simulator leaves out: every 17th
    payment made by another account than the bill's, notices (to a third of the accounts, three
    days after each due date) and broken plans."""
    h, _ = sim_history(600, 8, seed=7)
    c = h.clearings.with_row_index("i")
    payer = pl.when(pl.col("i") % 17 == 0).then(pl.col("account_id").shift(1, fill_value="C-X"))
    clearings = c.with_columns(payer.otherwise(pl.col("account_id")).alias("account_id")).drop("i")
    every_third = pl.col("account_id").hash(seed=1) % 3 == 0
    notices = h.bills.filter(every_third).select(
        "account_id", (pl.col("due_on") + timedelta(days=3)).alias("sent_on"))
    plans = h.bills.filter((pl.col("account_id").hash(seed=2) % 11 == 0)
                           & (pl.col("issued_on").dt.month() == 4)).select(
        "account_id", (pl.col("due_on") + timedelta(days=20)).alias("broken_on"))
    return History(bills=h.bills, clearings=clearings, accounts=h.accounts, notices=notices,
                   plans=plans).checked()


@pytest.fixture(scope="module")
def found(history: History) -> tuple[dict[str, str], ArrearsModel]:
    model = train(truncate(history, D), D, CFG)
    assert isinstance(model, ArrearsModel)
    return {"version": "arrears-test-0001"}, model


def test_the_points_score_on_spark_is_the_local_one(spark_ready: None, history: History,
                                                    db: Database) -> None:
    # the payments of another account's bill travel to both accounts' partitions
    past = truncate(history, D)
    parts = split_parts(routed(past, lambda a: account_part(a, PARTS)))
    assert [p for p, _ in parts] == list(range(PARTS))
    assert sum(f["clearings"].height for _, f in parts) - past.clearings.height > 100
    assert sum(f["bills"].height for _, f in parts) == past.bills.height

    local = score_frame(history, D, None)
    spark = spark_score_frame(db.settings, history, D, None, partitions=PARTS)
    assert local.height == history.accounts.height
    assert spark.equals(local)
    assert set(local["band"]) == {"low", "medium", "high"}
    assert local["reasons_en"].str.contains("broken plans").any()


def test_a_trained_model_scores_identically_on_spark(spark_ready: None, history: History,
                                                     found: tuple[dict[str, str], ArrearsModel],
                                                     db: Database) -> None:
    """Bit-identical probabilities (``==``, not a tolerance): each row's prediction reads that
    row alone, and the tasks rebuild the boosters from their exact text. Reasons for the 20
    riskiest of the high band: ranked per partition on Spark, then over everyone."""
    for reasons, n in (("high", 20), ("all", 5000)):
        local = score_frame(history, D, found, reasons=reasons, reasons_for=n)
        spark = spark_score_frame(db.settings, history, D, found, reasons=reasons, reasons_for=n,
                                  partitions=PARTS)
        assert spark.equals(local), reasons
        assert (spark["probability"] == local["probability"]).all()
        assert (spark["probability_30"] == local["probability_30"]).all()
        given = spark.filter(pl.col("reasons_en") != "")
        if reasons == "high":
            assert given.height == 20 and set(given["band"]) == {"high"}
            # the 20 come from more than one partition: the global ranking decided
            assert given.select(account_part(pl.col("account_id"), PARTS)).n_unique() > 1
        else:
            assert given.height > local.height // 2
    assert {"low", "high"} <= set(spark["band"])


@pytest.fixture
def trained(db: Database, history: History) -> Iterator[Database]:
    """The model registered, and the day D scored (the early warnings' baseline)."""
    train_model(db, D, clock=FixedClock(datetime(2025, 7, 3, 2, tzinfo=BUSINESS_TZ)),
                config=CFG, history=history)
    daily_scores(db, D, history=history, refresh=True)
    yield db


def test_daily_scores_on_spark_store_what_local_stores_and_nothing_on_a_failed_job(
        spark_ready: None, trained: Database, history: History,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = trained
    path = Path(db.settings.data_dir) / "risk" / "scores" / f"{LATER}.parquet"
    local = daily_scores(db, LATER, history=history, refresh=True)
    local_warned = early_warnings(db, LATER)
    stored = path.read_bytes()
    assert local_warned.height > 0 and (local_warned["reasons_en"] != "").all()

    on_spark = spark_scorer(db.settings)
    timings: list[dict[str, object]] = []
    spark = daily_scores(db, LATER, history=history, refresh=True,
                         backend=lambda h, d, f: spark_score_frame(db.settings, h, d, f,
                                                                   timings=timings))
    assert spark.equals(local)
    assert pl.read_parquet(path).equals(local)
    assert early_warnings(db, LATER).equals(local_warned)

    # one task per partition, every account in one of them
    assert len(timings) == 4 and sum(int(str(t["accounts"])) for t in timings) == local.height

    # the task dies (SIGKILL) after scoring its partition, on each of its three tries (one
    # partition: each try starts a Python worker afresh, which takes seconds)
    monkeypatch.setenv("DIANFEI_SPARK_PARTITIONS", "1")
    monkeypatch.setenv("DIANFEI_FAULT_KILL_AT", "spark.partition_scored")
    path.write_bytes(stored)
    before = path.stat().st_mtime_ns
    with pytest.raises(SparkJobFailed, match=r"a Python worker died.*rerun"):
        daily_scores(db, LATER, history=history, refresh=True, backend=on_spark)
    assert path.read_bytes() == stored and path.stat().st_mtime_ns == before
    assert early_warnings(db, LATER).equals(local_warned)
    assert list((Path(db.settings.data_dir) / "spark-staging").iterdir()) == []


def test_risk_score_backend_spark_prints_what_local_prints(spark_ready: None, db: Database
                                                           ) -> None:
    """Through the database (bills of the real bill run, a payment of the money core)."""
    from tests.jobs.test_kill_risk import _populate

    _populate(db)
    out = {}
    for backend in ("local", "spark"):
        res = CliRunner().invoke(app, ["risk", "score", "--as-of", "2026-03-20", "--json",
                                       "--backend", backend])
        assert res.exit_code == 0, (res.stdout, res.stderr)
        out[backend] = json.loads(res.stdout)
    assert out["spark"] == out["local"] and out["local"]["accounts"] >= 11
    res = CliRunner().invoke(app, ["risk", "score", "--backend", "dask"])
    assert res.exit_code == 2 and "--backend must be local or spark" in res.stderr


#: run in a fresh process: the local backend must not load PySpark; the Spark one must refuse
#: an unreachable master before reading or writing anything
_SCRIPT = """
import sys
from typer.testing import CliRunner
from dianfei.cli.main import app
local = CliRunner().invoke(app, ["risk", "score", "--as-of", "2026-03-20", "--json"])
print(local.exit_code, "pyspark" in sys.modules)
spark = CliRunner().invoke(app, ["risk", "score", "--as-of", "2026-03-21", "--backend", "spark"])
print(spark.exit_code, spark.stderr.strip())
"""


def test_local_needs_no_spark_and_an_unreachable_master_writes_nothing(
        spark_ready: None, db: Database, db_env: dict[str, str]) -> None:
    env = {**os.environ, **db_env, "DIANFEI_SPARK_MASTER": "spark://127.0.0.1:1"}
    res = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    local, spark = res.stdout.strip().splitlines()
    assert local == "0 False"
    code, message = spark.split(" ", 1)
    assert code == "2"
    assert "spark master spark://127.0.0.1:1 cannot be reached" in message
    assert "nothing was read or written" in message
    scores = Path(db_env["DIANFEI_DATA_DIR"]) / "risk" / "scores"
    assert sorted(p.name for p in scores.iterdir()) == ["2026-03-20.parquet"]
