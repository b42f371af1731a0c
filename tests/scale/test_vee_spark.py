"""VEE and TOU on Spark (issue 13): one task per meter group of the store, the same columnar
functions as the local path, so the same figures, findings rows and estimates rows; a refused
or failed job writes nothing.

The data: six meters over three business days in four meter groups' own files and in mixed
(``group=all``) files, with short and long gaps, a spike, a day of zeros, a negative value,
within-import duplicates (one conflicting) and register reads that go backwards and disagree
with the intervals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.metering import intervals as store
from dianfei.metering.vee import repository, service
from tests.conftest import fresh_database_env
from tests.factories import Person, Reads, load_people
from tests.metering.vee.conftest import NOW, kwh_text

T0 = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2026-03-02 00:00 in Beijing
DAYS = (date(2026, 3, 2), date(2026, 3, 4))
SLOTS = 96 * 3


def usual(k: int) -> int:
    return 150 + (400 if 72 <= k % 96 < 88 else 0) + (k % 5) * 10


def series(meter_id: str) -> list[tuple[str, datetime, int]]:
    values: list[int | None] = [usual(k) for k in range(SLOTS)]
    if meter_id == "MC1":
        values[10:13] = [None] * 3  # a short gap: interpolated
        values[150] = -20  # a negative value (reverse energy)
    elif meter_id == "MC2":
        values[100:196] = [0] * 96  # a day of zeros, across midnight
        values[230] = 13_000  # a spike: 52 kW for a quarter-hour
    elif meter_id == "MC3":
        values[40:70] = [None] * 30  # a long gap, across nothing: a profile estimate
    elif meter_id == "MC6":
        values[90:110] = [None] * 20  # a gap across the first midnight
    return [(meter_id, T0 + timedelta(minutes=15 * k), v)
            for k, v in enumerate(values) if v is not None]


def ingest(db: Database, rows: list[tuple[str, datetime, int]]) -> None:
    from dianfei.metering import ingest as imports

    frame = pl.DataFrame([(m, t, kwh_text(v)) for m, t, v in rows], orient="row", schema={
        "meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "kwh": pl.String})
    imports.ingest_intervals(db, frame, interval_minutes=15, origin="test", clock=NOW)


def load(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from dianfei.metering import ingest as imports

    load_people(db, [Person(f"C{i}") for i in range(1, 7)])
    # the same batch ids in both databases: a duplicate's finding names its batch
    batches = iter(range(1, 10))
    monkeypatch.setattr(imports, "new_batch_id", lambda clock: f"{clock.now():%Y%m%dT%H%M%S}-"
                        f"{next(batches):08x}")
    # MC1..MC3 in their groups' own files (13, 7, 1), MC4..MC6 in a mixed file
    with monkeypatch.context() as m:
        m.setattr(store, "MIXED_MAX_ROWS", 0)
        ingest(db, [r for mid in ("MC1", "MC2", "MC3") for r in series(mid)])
    ingest(db, [r for mid in ("MC4", "MC5", "MC6") for r in series(mid)]
           # within one import: MC4's first slot again (same value) and again (another value)
           + [series("MC4")[0], (*series("MC4")[1][:2], 999)])
    day = timedelta(days=1)
    (Reads().add("C4", T0, 100_000).add("C4", T0 + day, 99_000)  # backwards
     .add("C5", T0, 50_000).add("C5", T0 + day, 50_010)  # 0.1 kWh for a day of ~17 kWh
     .store(db))


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A second database with its own store, for the Spark run beside the local one."""
    with fresh_database_env(tmp_path, migrated=True) as env:
        other = open_database(load_settings(env))
        try:
            yield other
        finally:
            other.engine.dispose()


def stored(db: Database, table: str, keys: str) -> pl.DataFrame:
    with db.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY {keys}")).mappings().all()
    return pl.DataFrame([dict(r) for r in rows], infer_schema_length=None).drop(
        "id", "run_id", strict=False)


def test_spark_stores_what_the_local_run_stores_row_for_row(
        db: Database, twin: Database, monkeypatch: pytest.MonkeyPatch, spark_ready: None) -> None:
    from dianfei.scale import vee as spark_vee
    from dianfei.scale.session import spark_session

    load(db, monkeypatch)
    load(twin, monkeypatch)
    assert {f.split("/")[1] for f in store.window_files(twin)["path"].to_list()} == {
        "group=13", "group=07", "group=01", "group=all"}
    local = service.run_vee(db, NOW)
    spark = spark_vee.run_vee(twin, NOW)
    # the figures, and every kind of finding is there (the comparison below is not of nothing)
    assert spark.counts == local.counts
    assert {k for k, v in local.counts.items() if v == 0} == set()
    assert (spark.findings, spark.estimates) == (local.findings, local.estimates)
    assert service.report(twin) == service.report(db)
    findings = stored(db, "vee_findings", "rule, meter_id, ts, ref")
    assert set(findings["rule"]) >= {"gap", "negative", "spike", "zero_run", "reverse_energy",
                                     "duplicate", "conflicting_duplicate", "read_backwards",
                                     "register_mismatch"}
    assert stored(twin, "vee_findings", "rule, meter_id, ts, ref").equals(findings)
    estimates = stored(db, "vee_estimates", "meter_id, ts")
    assert set(estimates["meter_id"]) == {"MC1", "MC3", "MC6"}
    assert stored(twin, "vee_estimates", "meter_id, ts").equals(estimates)
    # a window (the day after the first): its edges' context is shipped with the tasks; and
    # more partitions than groups: each group cut into three parts (48 tasks)
    monkeypatch.setenv("DIANFEI_SPARK_PARTITIONS", "40")
    window = {"day_from": DAYS[0] + timedelta(days=1), "day_to": DAYS[1]}
    runner = spark_vee.SparkRunner(spark_session(twin.settings))
    w_local = service.run_vee(db, NOW, **window)
    w_spark = spark_vee.run_vee(twin, NOW, **window, runner=runner)
    assert len(runner.stats) == 48 and sum(s.intervals for s in runner.stats) > 0
    assert (w_spark.counts, w_spark.findings) == (w_local.counts, w_local.findings)
    assert stored(twin, "vee_findings", "rule, meter_id, ts, ref").equals(
        stored(db, "vee_findings", "rule, meter_id, ts, ref"))
    # time of use, with the estimates and an edit
    for one in (db, twin):
        with one.session() as s:
            service.edit_interval(one, s, NOW, meter_id="MC2", ts=T0 + timedelta(minutes=15 * 230),
                                  kwh="0.4", reason="spike confirmed false", user="wang")
    tou_local = service.daily_tou(db, *DAYS)
    tou_spark = spark_vee.daily_tou(twin, *DAYS)
    assert tou_local.height == 6 * 3 and tou_local["estimated"].sum() == 4
    assert tou_spark.equals(tou_local)


def test_a_failed_task_writes_nothing(db: Database, monkeypatch: pytest.MonkeyPatch,
                                      spark_ready: None) -> None:
    from dianfei.scale import vee as spark_vee
    from dianfei.scale.session import SparkJobFailed

    load(db, monkeypatch)
    service.run_vee(db, NOW)
    before = [stored(db, t, k) for t, k in (("vee_findings", "rule, meter_id, ts, ref"),
                                            ("vee_estimates", "meter_id, ts"),
                                            ("vee_runs", "started_at"))]
    # one group's file is damaged: its task fails on every try
    damaged = next(p for p in store.window_files(db)["path"].to_list() if "group=07" in p)
    (store.store_root(db) / damaged).write_bytes(b"not parquet")
    with pytest.raises(SparkJobFailed, match=r"VEE failed on Spark: .*VEE of meter group 07: "
                       r"ComputeError: parquet: .*rerun the same command"):
        spark_vee.run_vee(db, NOW)
    after = [stored(db, t, k) for t, k in (("vee_findings", "rule, meter_id, ts, ref"),
                                           ("vee_estimates", "meter_id, ts"),
                                           ("vee_runs", "started_at"))]
    assert all(a.equals(b) for a, b in zip(after, before, strict=True))
    assert repository.stored_findings(db).height == before[0].height > 0


def dianfei(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_an_unreachable_master_is_refused_and_nothing_is_written(
        db_env: dict[str, str], spark_ready: None) -> None:
    db = open_database(load_settings(db_env))
    try:
        load_people(db, [Person("C1")])
        ingest(db, series("MC1"))
        refused = dianfei({**db_env, "DIANFEI_SPARK_MASTER": "spark://127.0.0.1:1"},
                          "vee", "run", "--backend", "spark", "--json")
        assert refused.returncode == 2 and refused.stdout == ""
        assert "spark master spark://127.0.0.1:1 cannot be reached" in refused.stderr
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM vee_runs")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM vee_findings")).scalar_one() == 0
        bad = dianfei(db_env, "vee", "run", "--backend", "hadoop")
        assert bad.returncode == 2 and "--backend must be local or spark" in bad.stderr
        # the local backend (the default) never loads PySpark, and its answer keeps its keys
        code = ("import json, sys, runpy\nsys.argv = ['dianfei', 'vee', 'run', '--json']\n"
                "try:\n    runpy.run_module('dianfei', run_name='__main__')\n"
                "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                "sys.stderr.write('\\nPYSPARK ' + json.dumps('pyspark' in sys.modules))\n")
        proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **db_env},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.rsplit("\nPYSPARK ", 1)[1] == "false"
        assert list(json.loads(proc.stdout)) == [
            "run_id", "intervals", "missing_intervals", "gap_events", "duplicates",
            "conflicting_duplicates", "spikes", "zero_runs", "negative", "estimated",
            "findings", "findings_added", "estimates", "estimates_added"]
    finally:
        db.engine.dispose()
