"""The bill run on Spark (`--backend spark`): the same bills as the local backend to the fen,
every partition written exactly once when Spark kills and retries tasks, nothing half-written
when a partition fails for good, and clear refusals when Spark cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.billing.service import BillRunResult, run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period, start_of_day
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.scale.session import SparkJobFailed
from tests.conftest import fresh_database_env

#: the demo bills 2025-01 and 02; the tests bill 03 themselves
THIRD = Period(2025, 3)
#: accounts given a second meter before March (一户多表): one bill over both meters for the
#: two households; the commercial account's time-of-use tariff cannot price a meter with a
#: total register only, so it is an exception on both backends
SECOND_METERS = {"C00000004": "M00000004B", "C00000005": "M00000005B",
                 "C00000017": "M00000017B"}


def _prepare(db: Database, backend: str) -> None:
    """Two demo months on ``backend`` (bills, payments, credit, the reads' exceptions), then a
    second meter on two accounts, read at the end of February and of March."""
    from dianfei.demo import run_demo
    from dianfei.metering.service import store_reads

    run_demo(db, customers=300, months=2, seed=3, collections=False, backend=backend)
    opened, closed = start_of_day(Period(2025, 2).end_date), start_of_day(THIRD.end_date)
    extra = []
    with db.engine.begin() as conn:
        for n, (account, meter) in enumerate(sorted(SECOND_METERS.items())):
            sp = conn.execute(text("SELECT service_point_id FROM meters WHERE account_id = :a"),
                              {"a": account}).scalar()
            assert sp is not None, account
            conn.execute(text(
                "INSERT INTO meters (meter_id, service_point_id, account_id, multiplier, digits, "
                "registers, installed_on) VALUES (:m, :sp, :a, 1, 6, 'total', :on)"),
                {"m": meter, "sp": sp, "a": account, "on": date(2020, 1, 1)})
            extra += [(meter, opened, 5000_00 * (n + 1)), (meter, closed, 5000_00 * (n + 1)
                                                           + 123_45 * (n + 2))]
        # the demo stored March's closing reads already (its payments run into April)
        store_reads(conn, pl.DataFrame(
            [{"meter_id": m, "read_at": at, "register": "total", "value": v, "source": "ami"}
             for m, at, v in extra],
            schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                    "register": pl.String, "value": pl.Int64, "source": pl.String}))


def _bill_third(db: Database, backend: str) -> BillRunResult:
    from dianfei.scale.billing import spark_backend

    issue = datetime(2025, 4, 3, 9, 0, tzinfo=BUSINESS_TZ)
    return run_bill_run(db, THIRD, FixedClock(issue),
                        backend=spark_backend(db.settings) if backend == "spark" else None)


_TABLES = {
    "bills": "SELECT bill_id, account_id, customer_id, period, version, run_id, issued_on, "
             "due_on, amount, kwh, tariff_id, tariff_version, estimated, meter_id, multiplier, "
             "read_from_at, read_from, read_to_at, read_to, status FROM bills",
    "bill_lines": "SELECT bill_id, line_no, code, description, quantity, unit, unit_price, "
                  "amount, power_factor, percent, meter_id FROM bill_lines",
    "bill_meters": "SELECT * FROM bill_meters",
    "bill_exceptions": "SELECT run_id, period, account_id, reason, detail FROM bill_exceptions",
    # what each account owes: the ids differ (the order of commits), never the money
    "ledger": "SELECT account_id, kind, amount, business_date, due_on, reference "
              "FROM ledger_entries",
    "bill_runs": "SELECT run_id, period, issued_on, due_on, status, candidates, billed, "
                 "exceptions, amount FROM bill_runs",
}


def _snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        return {name: sorted((tuple(r) for r in conn.execute(text(sql))), key=repr)
                for name, sql in _TABLES.items()}


def _export_bills(db: Database, out: Path) -> bytes:
    from dianfei.reporting import exports

    exports.export(db, "bills", out)
    return out.read_bytes()


def _ledger_holds(db: Database) -> None:
    from dianfei.ledger.service import check

    with db.engine.connect() as conn:
        assert check(conn) == []


def _local_reference(tmp_path: Path) -> tuple[dict[str, list[tuple[Any, ...]]], bytes]:
    with fresh_database_env(tmp_path, migrated=True) as env:
        local = open_database(load_settings(env))
        try:
            _prepare(local, "local")
            _bill_third(local, "local")
            return _snapshot(local), _export_bills(local, tmp_path / "local.csv")
        finally:
            local.engine.dispose()


def test_spark_bills_every_line_as_the_local_backend_does(
        db: Database, tmp_path: Path, spark_ready: None) -> None:
    """Three months of a synthetic county (tiers, time of use, two-part, power factor, funds,
    low-income allowances, credit, a meter without a read, two accounts on two meters), billed
    on each backend into its own database: every bill, line, meter, exception, debit and run
    figure is the same, and so is `export bills`, byte for byte."""
    expected, expected_csv = _local_reference(tmp_path)

    _prepare(db, "spark")
    res = _bill_third(db, "spark")

    got = _snapshot(db)
    for table in _TABLES:
        assert got[table] == expected[table], table
    assert _export_bills(db, tmp_path / "spark.csv") == expected_csv
    assert res.billed + res.exceptions == res.candidates == 300
    assert res.timings["spark_partitions"] >= 2 and res.timings["spark_retried_partitions"] == 0
    # the rows cover what the test set out to cover
    codes = {r[2] for r in got["bill_lines"]}
    assert {"energy_tier1", "energy_peak", "energy_valley", "basic_capacity", "pf_adjustment",
            "low_income_allowance"} <= codes
    assert {r[0].split("-")[0] for r in got["bill_meters"]} == {"C00000005", "C00000017"}
    assert any(r[3] == "no_read" for r in got["bill_exceptions"])
    _ledger_holds(db)


def test_a_killed_task_is_retried_without_billing_anyone_twice(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        spark_ready: None) -> None:
    """First every task dies after pricing and before writing, on every attempt: the job fails
    with a message and not one bill of March exists. Then every task dies right after its
    partition committed: Spark retries each one, the retry finds its partition written and
    writes nothing — and the run, resumed, ends with exactly the local backend's bills."""
    expected, expected_csv = _local_reference(tmp_path)
    _prepare(db, "local")

    monkeypatch.setenv("DIANFEI_FAULT_KILL_AT", "spark.partition_priced")
    with pytest.raises(SparkJobFailed) as failed:
        _bill_third(db, "spark")
    assert "a Python worker died" in str(failed.value) and "rerun" in str(failed.value)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bills WHERE period = '2025-03'")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM bill_run_partitions")).scalar() == 0
        assert conn.execute(text(
            "SELECT status, billed, exceptions FROM bill_runs WHERE period = '2025-03'")).one() \
            == ("running", 0, 0)

    monkeypatch.setenv("DIANFEI_FAULT_KILL_AT", "spark.partition_written")
    res = _bill_third(db, "spark")
    assert res.resumed
    assert res.timings["spark_retried_partitions"] == res.timings["spark_partitions"] >= 2
    assert _snapshot(db) == expected
    assert _export_bills(db, tmp_path / "spark.csv") == expected_csv
    with db.engine.connect() as conn:
        marks = conn.execute(text("SELECT attempt, sum(accounts) FROM bill_run_partitions "
                                  "GROUP BY attempt")).all()
    assert marks == [(0, 300)]  # each partition written once, by its first attempt
    _ledger_holds(db)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_spark_that_cannot_run_is_refused_before_anything_is_written(db_env: dict[str, str]) -> None:
    """No Java, an unreachable master, an unknown backend: a message naming what is wrong and
    what to do, a non-zero exit, and no bill run started."""
    base = {**os.environ, **db_env}
    base.pop("DIANFEI_SPARK_MASTER", None)
    init = _cli(base, "migrate")
    assert init.returncode == 0, init.stderr

    unreachable = _cli({**base, "DIANFEI_SPARK_MASTER": "spark://127.0.0.1:1"},
                       "bill", "run", "--period", "2025-01", "--backend", "spark")
    assert unreachable.returncode != 0
    assert "spark master spark://127.0.0.1:1 cannot be reached" in unreachable.stderr
    assert "nothing was read or written" in unreachable.stderr

    no_java_home = _cli({**base, "JAVA_HOME": "/nonexistent/jdk"},
                        "bill", "run", "--period", "2025-01", "--backend", "spark")
    assert no_java_home.returncode != 0
    assert "JAVA_HOME=/nonexistent/jdk has no bin/java" in no_java_home.stderr

    no_java = _cli({**{k: v for k, v in base.items() if k != "JAVA_HOME"},
                    "PATH": str(Path(sys.executable).parent)},
                   "bill", "run", "--period", "2025-01", "--backend", "spark")
    assert no_java.returncode != 0
    assert "needs Java 17+ and none was found" in no_java.stderr

    unknown = _cli(base, "bill", "run", "--period", "2025-01", "--backend", "hadoop")
    assert unknown.returncode != 0 and "--backend must be local or spark" in unknown.stderr

    db = open_database(load_settings(db_env))
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM bill_runs")).scalar() == 0
    finally:
        db.engine.dispose()


def test_each_partition_of_accounts_is_one_spark_task(spark_ready: None) -> None:
    """The labels partitions are shipped under land one in each Spark partition, by Spark's own
    hash (a collision would put two partitions in one task and leave a core idle)."""
    from dianfei.scale.billing import spark_hash_int, spread_labels
    from dianfei.scale.session import spark_session

    spark = spark_session(load_settings())
    rows = spark.range(-50, 2000).selectExpr("cast(id as int) as v",
                                             "hash(cast(id as int)) as h").collect()
    assert all(spark_hash_int(v) == h for v, h in rows)
    for n in (2, 4, 7, 16):
        labels = spread_labels(n)
        frame = spark.createDataFrame([(label,) for label in labels.values()], "part int")
        placed = frame.repartition(n, "part").selectExpr("part", "spark_partition_id() as p")
        assert sorted(p for _, p in placed.collect()) == list(range(n))


def test_the_scheduled_bill_run_runs_on_spark_when_its_calendar_entry_says_so(
        db: Database, spark_ready: None) -> None:
    """`args.backend = "spark"` on the calendar's bill-run entry (docs/scaling.md): the monthly
    job bills on Spark; any other word is refused before anything is read."""
    from dianfei.cli.jobs import KINDS
    from dianfei.core.errors import ValidationError
    from dianfei.jobs.service import RunContext

    _prepare(db, "local")
    at = datetime(2025, 4, 3, 9, 0, tzinfo=BUSINESS_TZ)

    def ctx(backend: str) -> RunContext:
        return RunContext(run_id=1, job="bill-run", scheduled_for=at,
                          args={"backend": backend, "period_offset": -1},
                          clock=FixedClock(at))

    with pytest.raises(ValidationError, match=r"args\.backend must be local or spark"):
        KINDS["bill_run"](db, ctx("hadoop"))
    out = KINDS["bill_run"](db, ctx("spark"))
    assert out["period"] == "2025-03" and out["billed"] + out["exceptions"] == 300
    with db.engine.connect() as conn:  # the partitions Spark's tasks wrote
        parts = conn.execute(text("SELECT count(*), sum(accounts) FROM bill_run_partitions "
                                  "WHERE run_id = '2025-03-001'")).one()
    assert parts[0] >= 2 and parts[1] == 300
