"""Kept meter profiles (issue 16): a run over one day judges spikes and usage by each meter's
months before it, as a run over the whole history judges them — not by the safety floor alone.
Profiles are rebuilt whole, count in the stored results' fingerprint, and change nothing for a
run whose own window holds more history than they do."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dianfei.db.engine import Database
from dianfei.metering.vee import pipeline, profiles, repository, results, service
from tests.metering.vee.conftest import NOW, Store

START = datetime(2025, 11, 30, 16, tzinfo=UTC)  # 1 December 2025, 00:00 in Beijing
DAY = date(2026, 2, 28)  # the 90th day: the day judged
SPIKE_AT = START + timedelta(days=89, hours=3)  # 03:00 on DAY


def usual(k: int) -> int:
    """Half-hourly Wh of an ordinary household: 200 at night, 800 in the evening peak."""
    hour = (k % 48) // 2
    return 200 + (600 if 18 <= hour < 22 else 0) + (k % 7) * 10


@pytest.fixture
def history(people_db: Database, store_intervals: Store) -> Database:
    """MC1: 89 ordinary days, then a day with one 5 kWh half hour at 03:00 (10 kW: far above
    this home's nights, far below the 50 kW household safety floor). MC2: 89 ordinary days,
    then a day using four times as much."""
    days = 90 * 48
    mc1 = [usual(k) for k in range(days)]
    mc1[89 * 48 + 6] = 5000
    mc2 = [usual(k) * (4 if k >= 89 * 48 else 1) for k in range(days)]
    store_intervals("MC1", mc1, minutes=30, start=START)
    store_intervals("MC2", mc2, minutes=30, start=START)
    return people_db


def judged(db: Database, **window: date) -> set[tuple[str, str, datetime]]:
    found = service.findings(db, **window).filter(
        pl.col("rule").is_in(["spike", "high_usage", "low_usage"]))
    return {(r["rule"], r["meter_id"], r["ts"]) for r in found.iter_rows(named=True)}


def test_a_day_is_judged_by_the_meters_months_once_profiles_are_kept(history: Database) -> None:
    db = history
    one_day = {"day_from": DAY, "day_to": DAY}
    expected = {("spike", "MC1", SPIKE_AT),
                ("high_usage", "MC2", datetime(2026, 2, 27, 16, tzinfo=UTC))}
    # the whole history: both found by the meters' own statistics
    assert judged(db) == expected
    # one day alone: too little history, nothing judged (the floor is far above 10 kW)
    assert judged(db, **one_day) == set()

    out = service.build_profiles(db, NOW, as_of=DAY, months=3)
    assert out == {"as_of": "2026-02-28", "data_from": "2025-11-01", "data_to": "2026-02-27",
                   "meters": 2, "rows": out["rows"]}
    kept = profiles.kept(db)
    assert set(kept["kind"].unique()) == set(profiles.rules.PROFILE_KINDS)
    night = kept.filter((pl.col("meter_id") == "MC1") & (pl.col("kind") == "spike_cell")
                        & (pl.col("band") == 0))
    assert night.height == 1 and 200 <= night["hi"][0] <= 260  # the usual high at night, Wh
    assert judged(db, **one_day) == expected
    spike = service.findings(db, rule="spike", **one_day)["detail"][0]
    assert "usual high" in spike and "in winter" in spike


def test_profiles_change_nothing_where_the_window_holds_more(history: Database) -> None:
    """A run over the whole history with the profiles given finds exactly what it finds
    without them: per cell the statistics that count more win, and those are the run's own."""
    db = history
    service.build_profiles(db, NOW, as_of=DAY, months=3)
    cfg, tz = service.config(db), repository.tz_name(db)
    meters = repository.meters(db).select("meter_id", "digits", "meter_class").lazy()
    plain = pipeline.run(repository.intervals(db), cfg, tz, meters=meters)
    with_kept = pipeline.run(repository.intervals(db), cfg, tz, meters=meters,
                             profile=profiles.kept(db).lazy())
    assert_frame_equal(plain.findings, with_kept.findings)
    assert plain.counts == with_kept.counts


def test_profiles_are_replaced_whole_and_answers_follow_them(history: Database) -> None:
    db = history
    one_day = {"day_from": DAY, "day_to": DAY}
    service.run_vee(db, NOW, **one_day)
    assert results.stored_figures(db, DAY, DAY) is not None  # the run's answer is kept
    service.build_profiles(db, NOW, as_of=DAY, months=3)
    # the profiles changed what a run over that day finds: the kept answer is not used
    assert results.stored_figures(db, DAY, DAY) is None
    assert service.report(db, **one_day)["spikes"] == 1
    first = profiles.built(db)
    assert first["meters"] == 2 and first["data_to"] == "2026-02-27"
    # built again over a window with no data: every meter's old profile goes
    out = service.build_profiles(db, NOW, as_of=date(2027, 6, 1), months=1)
    assert out["meters"] == 0 and profiles.kept(db).height == 0
    with pytest.raises(Exception, match=r"--months must be 1\.\.60"):
        service.build_profiles(db, NOW, as_of=DAY, months=0)
