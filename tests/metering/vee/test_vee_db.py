"""VEE over the real interval store and database: run, report, idempotency, estimates stored
apart, manual edits with their audit record, TOU totals and the read success rate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.db.engine import Database
from dianfei.metering.vee import service
from tests.metering.vee.conftest import NOW, Store
from tests.metering.vee.helpers import T0, slot

DAY = date(2026, 3, 2)


def table_count(db: Database, table: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_report_on_an_empty_database_is_all_zero(db: Database) -> None:
    assert service.report(db) == {k: 0 for k in (
        "intervals", "missing_intervals", "gap_events", "duplicates", "conflicting_duplicates",
        "spikes", "zero_runs", "negative", "estimated")}


def test_run_stores_findings_and_estimates_and_a_rerun_adds_nothing(
        people_db: Database, store_intervals: Store) -> None:
    # given MC1 with a 3-slot gap (short: interpolated) and MC2 with a zero day and a negative
    store_intervals("MC1", [100, None, None, None, 200, 100])
    store_intervals("MC2", [5] + [0] * 96 + [-2, 5])
    # when VEE runs twice
    first = service.run_vee(people_db, NOW)
    second = service.run_vee(people_db, NOW)
    # then the figures are the hand counts, estimates fill exactly the gap, the re-run adds nothing
    expected = {"intervals": 3 + 99, "missing_intervals": 3, "gap_events": 1, "duplicates": 0,
                "conflicting_duplicates": 0, "spikes": 0, "zero_runs": 1, "negative": 1,
                "estimated": 3}
    assert first.counts == expected and second.counts == expected
    assert (second.findings_added, second.estimates_added) == (0, 0)
    assert first.estimates_added == 3 and first.findings_added == first.findings
    est = service.stored_estimates(people_db).sort("ts")
    assert est.select("meter_id", "ts", "wh", "method").rows() == [
        ("MC1", slot(1), 125, "linear"), ("MC1", slot(2), 150, "linear"),
        ("MC1", slot(3), 175, "linear")]
    assert est["run_id"].unique().to_list() == [first.run_id]
    assert service.report(people_db) == expected
    rules = sorted(service.findings(people_db)["rule"].to_list())
    assert rules == ["gap", "negative", "reverse_energy", "zero_run"]
    assert table_count(people_db, "vee_findings") == 4


def test_estimates_never_touch_the_metered_store(people_db: Database, store_intervals: Store) -> None:
    from dianfei.metering import intervals

    store_intervals("MC1", [100, None, 300])
    before = intervals.scan(people_db).collect().sort("meter_id", "ts")
    service.run_vee(people_db, NOW)
    after = intervals.scan(people_db).collect().sort("meter_id", "ts")
    assert after.equals(before)
    assert service.report(people_db)["missing_intervals"] == 1  # estimates do not reduce it
    eff = service.effective_intervals(people_db)
    assert eff.select("ts", "wh", "source").rows() == [
        (slot(0), 100, "metered"), (slot(1), 200, "estimated"), (slot(2), 300, "metered")]


def test_reimporting_the_same_file_changes_no_figure(people_db: Database, store_intervals: Store) -> None:
    values = [100, None, 100, 100]
    store_intervals("MC1", values)
    service.run_vee(people_db, NOW)
    before = service.report(people_db)
    again = store_intervals("MC1", values)
    assert again.duplicates == 3 and again.accepted == 0  # type: ignore[attr-defined]
    assert service.report(people_db) == before
    assert service.run_vee(people_db, NOW).findings_added == 0


def test_duplicates_within_one_import(people_db: Database, store_intervals: Store) -> None:
    # the same slot three times in one import: once identical, once conflicting
    store_intervals("MC1", [100, 100], extra=[("MC1", slot(0), 100), ("MC1", slot(1), 150)])
    rep = service.report(people_db)
    assert (rep["duplicates"], rep["conflicting_duplicates"], rep["intervals"]) == (2, 1, 2)
    found = service.findings(people_db, rule="conflicting_duplicate")
    assert found.select("meter_id", "ts", "value_wh").rows() == [("MC1", slot(1), 150)]


def test_manual_edit_is_kept_apart_with_an_audit_row(people_db: Database, store_intervals: Store) -> None:
    store_intervals("MC1", [100, 999, 100])
    with people_db.session() as s:
        rec = service.edit_interval(people_db, s, NOW, meter_id="MC1", ts=slot(1),
                                    kwh=Decimal("0.1"), reason="meter fault confirmed", user="zhang")
    assert (rec["old_wh"], rec["old_source"], rec["new_wh"]) == (999, "metered", 100)
    with people_db.session() as s:
        rec2 = service.edit_interval(people_db, s, NOW, meter_id="MC1", ts=slot(1),
                                     kwh="0.105", reason="second look", user="li")
    assert (rec2["old_wh"], rec2["old_source"]) == (100, "edited")
    eff = service.effective_intervals(people_db)
    assert eff.filter(pl.col("ts") == slot(1)).select("wh", "source").rows() == [(105, "edited")]
    # the metered value is still there and the figures use it
    from dianfei.metering import intervals

    assert intervals.scan(people_db).filter(pl.col("ts") == slot(1)).collect()["wh"].to_list() == [999]
    audit = service.edits(people_db)
    assert audit.select("old_wh", "new_wh", "edited_by", "reason").rows() == [
        (999, 100, "zhang", "meter fault confirmed"), (100, 105, "li", "second look")]
    # the audit record is append-only
    with pytest.raises(Exception, match="append-only"), people_db.engine.begin() as conn:
        conn.execute(text("UPDATE vee_edits SET new_wh = 1"))


def test_edit_refuses_without_reason_off_grid_or_unknown_meter(
        people_db: Database, store_intervals: Store) -> None:
    store_intervals("MC1", [100, 100])
    with people_db.session() as s:
        with pytest.raises(ValidationError, match="reason"):
            service.edit_interval(people_db, s, NOW, meter_id="MC1", ts=slot(1), kwh="1",
                                  reason="  ", user="u")
        with pytest.raises(ValidationError, match="grid"):
            service.edit_interval(people_db, s, NOW, meter_id="MC1",
                                  ts=slot(1) + timedelta(minutes=7), kwh="1", reason="r", user="u")
        with pytest.raises(ValidationError, match="decimal places"):
            service.edit_interval(people_db, s, NOW, meter_id="MC1", ts=slot(1), kwh="0.0001",
                                  reason="r", user="u")
        with pytest.raises(NotFoundError):
            service.edit_interval(people_db, s, NOW, meter_id="MC9", ts=slot(1), kwh="1",
                                  reason="r", user="u")
    assert table_count(people_db, "vee_edits") == 0


def test_daily_tou_splits_a_day_by_period_and_flags_estimates(
        people_db: Database, store_intervals: Store) -> None:
    # a full day of 10 Wh quarter-hours, slot 40 (10:00, peak) missing and estimated
    values: list[int | None] = [10] * 96
    values[40] = None
    store_intervals("MC1", values)
    service.run_vee(people_db, NOW)
    day = service.daily_tou(people_db, DAY, DAY)
    # default calendar: sharp 19–21 (8 slots), peak 08–11, 13–19, 21–22 (40), flat 11–13, 22–23
    # (12), valley 23–08 (36)
    assert day.select("meter_id", "day", "total_wh", "sharp_wh", "peak_wh", "flat_wh", "valley_wh",
                      "estimated_wh", "estimated_intervals", "estimated").rows() == [
        ("MC1", DAY, 960, 80, 400, 120, 360, 10, 1, True)]
    est = service.estimated_consumption(people_db, DAY, DAY)
    assert est.select("meter_id", "estimated_wh", "estimated_intervals").rows() == [("MC1", 10, 1)]


def test_read_rate_per_day_and_failures(people_db: Database, store_intervals: Store) -> None:
    # MC1 delivers all 96 quarter-hours of 2026-03-02; MC2 only 90 and no frozen read
    store_intervals("MC1", [10] * 96)
    store_intervals("MC2", [10] * 90)
    rate = service.read_rate(people_db, DAY)
    assert rate.select("meters", "succeeded", "failed", "rate").rows() == [(2, 1, 1, 0.5)]
    by_station = service.read_rate(people_db, DAY, by="station")
    assert by_station.select("station_id", "meters", "succeeded").rows() == [("S1", 2, 1)]
    failed = service.read_outcomes(people_db, DAY).filter(~pl.col("succeeded"))
    assert failed.select("meter_id", "reason", "detail").rows() == [
        ("MC2", "incomplete_intervals", "90 of 96 intervals and no daily frozen read")]
    # the next day nobody delivered
    nxt = service.read_outcomes(people_db, DAY + timedelta(days=1))
    assert nxt["reason"].to_list() == ["no_data", "no_data"]


def test_a_daily_frozen_read_counts_as_a_delivered_day(people_db: Database) -> None:
    from tests.factories import Reads

    end_of_day = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 00:00 on 3 March, Shanghai
    Reads().add("C1", end_of_day + timedelta(minutes=5), 12345).store(people_db)
    out = service.read_outcomes(people_db, DAY)
    assert out.select("meter_id", "succeeded").rows() == [("MC1", True)]
    assert end_of_day > T0


def test_groupwise_processing_gives_the_same_results(
        people_db: Database, store_intervals: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # a big deployment runs VEE one meter group at a time; the answer must not change
    store_intervals("MC1", [100, None, None, 200] + [0] * 96)
    store_intervals("MC2", [5, None, 7, -1, 13_000] + [50] * 20)
    whole = service.report(people_db), service.findings(people_db)
    monkeypatch.setattr(service, "GROUPWISE_METERS", 0)
    grouped = service.report(people_db), service.findings(people_db)
    assert grouped[0] == whole[0] and grouped[1].equals(whole[1])
    assert whole[0]["missing_intervals"] == 3 and whole[0]["spikes"] == 1
