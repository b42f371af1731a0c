"""``vee report`` and ``vee findings`` answer from the newest run while nothing it depends on
changed, with exactly what recomputing gives; new data, other settings or other days make them
compute again (never a stale answer). Timing belongs to bench/vee_history.py, not here."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.metering.vee import service
from tests.metering.vee.conftest import NOW, Store, kwh_text
from tests.metering.vee.helpers import slot
from tests.metering.vee.test_vee_cli import dianfei

#: a gap, a day of zeros, a spike above the household safety floor, a negative value
VALUES = [100, None, None, 300] + [0] * 96 + [40] * 20 + [13_000, -20] + [50] * 30


def _recompute_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the computing path fail loudly: an answer now can only come from the stored run."""
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("recomputed although nothing changed since the run")

    monkeypatch.setattr(service, "_result", boom)


def _everything(db: Database) -> tuple[dict[str, int], pl.DataFrame, list[dict[str, object]],
                                        pl.DataFrame]:
    return (service.report(db), service.findings(db), service.finding_rows(db),
            service.findings(db, rule="spike", meter_id="MC1"))


def test_stored_answers_equal_recomputed_ones_until_the_data_changes(
        people_db: Database, store_intervals: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    db = people_db
    store_intervals("MC1", VALUES)
    store_intervals("MC2", [200] * 60 + [None] * 3 + [210] * 40, extra=[("MC2", slot(200), 7)])
    computed = _everything(db)  # no run yet: computed
    assert computed[0]["gap_events"] == 3 and computed[0]["spikes"] == 1
    assert computed[0]["estimated"] == 0

    outcome = service.run_vee(db, NOW)
    estimated = outcome.counts["estimated"]
    assert estimated >= 5  # the short gaps at least
    recomputed = _everything(db)  # the estimates changed `estimated` only
    assert recomputed[0] == {**computed[0], "estimated": estimated}
    for a, b in ((computed[1], recomputed[1]), (computed[3], recomputed[3])):
        assert_frame_equal(a, b)

    with monkeypatch.context() as m:
        _recompute_forbidden(m)
        stored = _everything(db)
        # the same figures in the same key order, the same findings in the same order and types
        assert list(stored[0].items()) == list(recomputed[0].items()) == list(
            outcome.counts.items())
        assert_frame_equal(stored[1], recomputed[1])
        assert stored[2] == list(recomputed[1].iter_rows(named=True))
        assert_frame_equal(stored[3], recomputed[3])
        assert service.finding_rows(db, rule="gap", meter_id="MC2") == list(
            recomputed[1].filter((pl.col("rule") == "gap") & (pl.col("meter_id") == "MC2"))
            .iter_rows(named=True))
        with pytest.raises(Exception, match="unknown rule"):
            service.finding_rows(db, rule="nonsense")

    # new data after the run: computed again, and the answers say so
    store_intervals("MC1", [60] * 4, start=slot(len(VALUES) + 10))
    with monkeypatch.context() as m:
        _recompute_forbidden(m)
        with pytest.raises(AssertionError, match="recomputed"):
            service.report(db)
        with pytest.raises(AssertionError, match="recomputed"):
            service.finding_rows(db, rule="spike")
    after = service.report(db)
    assert after["intervals"] == recomputed[0]["intervals"] + 4
    assert after["gap_events"] == recomputed[0]["gap_events"] + 1
    gaps = service.findings(db, rule="gap", meter_id="MC1")
    assert gaps.height == 2

    # the next run keeps its own results; the previous run's are gone
    second = service.run_vee(db, NOW)
    assert {k: v for k, v in second.counts.items() if k != "estimated"} == {
        k: v for k, v in after.items() if k != "estimated"}
    with monkeypatch.context() as m:
        _recompute_forbidden(m)
        assert service.report(db) == second.counts
        assert_frame_equal(service.findings(db, rule="gap", meter_id="MC1"), gaps)
    with people_db.engine.connect() as conn:
        from sqlalchemy import text

        kept = conn.execute(text("SELECT DISTINCT run_id FROM vee_run_findings")).scalars().all()
    assert kept == [second.run_id]


def test_other_days_register_reads_settings_and_meters_each_make_it_recompute(
        people_db: Database, store_intervals: Store, monkeypatch: pytest.MonkeyPatch,
        db_env: dict[str, str], tmp_path: Path) -> None:
    from sqlalchemy import text

    from dianfei.metering import ingest

    db = people_db
    store_intervals("MC1", VALUES)
    service.run_vee(db, NOW)

    def stored_now(database: Database = db) -> bool:
        with monkeypatch.context() as m:
            _recompute_forbidden(m)
            try:
                service.report(database)
            except AssertionError:
                return False
            return True

    assert stored_now()
    # other days than the run examined: computed
    with monkeypatch.context() as m:
        _recompute_forbidden(m)
        with pytest.raises(AssertionError, match="recomputed"):
            service.report(db, day_from=date(2026, 3, 2), day_to=date(2026, 3, 2))
    # a register read (the register rules judge it)
    reads = pl.DataFrame({"meter_id": ["MC1"], "read_at": [slot(3)], "register": ["total"],
                          "value": ["10.00"], "source": ["ami"]},
                         schema_overrides={"read_at": pl.Datetime("us", "UTC")})
    ingest.ingest_reads(db, reads, origin="test", clock=NOW)
    assert not stored_now()
    service.run_vee(db, NOW)
    assert stored_now()
    # other [vee] settings (a threshold of the spike rule)
    config = tmp_path / "dianfei.toml"
    config.write_text("[vee]\nspike_floor_kw = 60.0\n", encoding="utf-8")
    other = open_database(load_settings({**db_env, "DIANFEI_CONFIG": str(config)}))
    try:
        assert not stored_now(other)
        assert service.report(other)["spikes"] == 0  # 13 kWh a quarter hour = 52 kW < 60 kW
    finally:
        other.engine.dispose()
    assert stored_now()
    # a meter's class (its spike settings) changes
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET customer_class = 'commercial' "
                          "WHERE customer_id = 'C1'"))
    assert not stored_now()
    assert service.report(db)["spikes"] == 0  # a shop's safety floor is 500 kW


def test_cli_answers_alike_from_the_run_and_without_polars(people_db: Database,
                                                           store_intervals: Store,
                                                           db_env: dict[str, str]) -> None:
    from tests.cli.test_startup_imports import _modules_after

    store_intervals("MC1", VALUES)
    store_intervals("MC2", [kwh for kwh in (120, 130, 0, -5) for _ in range(30)])
    before = {args: dianfei(db_env, *args).stdout for args in (
        ("vee", "report", "--json"), ("vee", "findings", "--json"),
        ("vee", "findings", "--rule", "negative", "--meter", "MC2", "--json"))}
    dianfei(db_env, "vee", "run", "--json")
    for args, out in before.items():
        now = dianfei(db_env, *args).stdout
        if args[1] == "report":  # the run estimated the gap
            assert json.loads(now) == {**json.loads(out), "estimated": 2}
        else:
            assert now == out
    out, modules = _modules_after(db_env, "vee", "findings", "--rule", "spike", "--json")
    assert [f["value"] for f in json.loads(out)] == [kwh_text(13_000)]
    assert "polars" not in modules
    _, modules = _modules_after(db_env, "vee", "report", "--json")
    assert "polars" not in modules
    if db_env["DIANFEI_DATABASE_URL"].startswith("sqlite"):
        # on SQLite the stored answer is read with sqlite3 alone: no SQLAlchemy start-up
        assert "sqlalchemy" not in modules
        _, modules = _modules_after(db_env, "vee", "findings", "--json")
        assert "sqlalchemy" not in modules


def test_the_plain_sqlite_path_answers_as_the_ordinary_one_or_not_at_all(
        people_db: Database, store_intervals: Store, tmp_path: Path) -> None:
    """``vee report``/``findings`` try the newest run on a plain sqlite3 connection first: the
    same answer as the ordinary stored path, and None (the ordinary path then) wherever it
    cannot answer — not SQLite, no such file, nothing kept, a table missing."""
    from dataclasses import replace

    from dianfei.metering.vee import results

    db = people_db
    store_intervals("MC1", VALUES)
    settings = db.settings
    if not settings.database_url.startswith("sqlite"):
        assert service.stored_report(settings) is None
        assert service.stored_finding_rows(settings) is None
        return
    assert service.stored_report(settings) is None  # no run kept yet
    service.run_vee(db, NOW)
    assert service.stored_report(settings) == results.stored_figures(db) == service.report(db)
    assert (service.stored_finding_rows(settings, rule="spike")
            == results.stored_findings(db, rule="spike")
            == service.finding_rows(db, rule="spike"))
    assert service.stored_finding_rows(settings) == service.finding_rows(db)
    with pytest.raises(Exception, match="unknown rule"):
        service.stored_finding_rows(settings, rule="nonsense")
    elsewhere = replace(settings, database_url=f"sqlite:///{tmp_path / 'none.db'}")
    assert service.stored_report(elsewhere) is None
    assert not (tmp_path / "none.db").exists()  # nothing created
    with db.engine.begin() as conn:  # a schema behind this code: a table it reads is missing
        conn.exec_driver_sql("DROP TABLE vee_meter_profiles")
    assert service.stored_report(settings) is None
