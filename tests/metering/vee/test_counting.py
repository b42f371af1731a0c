"""The counting definitions of interfaces.md ("VEE figures"), with hand-computed expectations.

Given hand-made interval series (15-minute slots from 2026-03-02 00:00 Shanghai unless said),
when the pure pipeline runs, then each figure is exactly what counting by hand gives.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.metering.vee import pipeline
from dianfei.metering.vee.config import VeeConfig
from tests.metering.vee.helpers import T0, frame, series, slot

TZ = "Asia/Shanghai"


def counts(lf: pl.LazyFrame, dups: pl.LazyFrame | None = None, **cfg: object) -> dict[str, int]:
    return pipeline.run(lf, VeeConfig(**cfg), TZ, duplicates=dups).counts  # type: ignore[arg-type]


def test_a_meter_with_one_reading_has_one_expected_slot_and_nothing_missing() -> None:
    c = counts(frame(series("M1", [7])))
    assert (c["intervals"], c["missing_intervals"], c["gap_events"]) == (1, 0, 0)


def test_missing_slots_and_gap_events_between_first_and_last_reading() -> None:
    # slots: 1 _ _ 1 _ 1  → 3 missing in 2 gap events
    c = counts(frame(series("M1", [1, None, None, 1, None, 1])))
    assert (c["intervals"], c["missing_intervals"], c["gap_events"]) == (3, 3, 2)


def test_no_gap_before_the_first_or_after_the_last_reading() -> None:
    # leading and trailing empty slots are outside the expected range by definition
    c = counts(frame(series("M1", [None, None, None, 5, 5, None, 5, None, None])))
    assert (c["missing_intervals"], c["gap_events"]) == (1, 1)


def test_meters_are_counted_independently() -> None:
    # M1: 1 _ 1 (1 missing); M2 starts later and is complete; the change of meter is no gap
    c = counts(frame(series("M1", [1, None, 1]), series("M2", [None, None, 1, 1])))
    assert (c["intervals"], c["missing_intervals"], c["gap_events"]) == (4, 1, 1)


def test_half_hour_meter_counts_half_hour_slots() -> None:
    c = counts(frame(series("M1", [1, None, None, 1], minutes=30)))
    assert (c["missing_intervals"], c["gap_events"]) == (2, 1)


def test_off_grid_reading_is_an_interval_but_fills_no_slot() -> None:
    off = [("M1", T0 + timedelta(minutes=22), 15, 9)]
    res = pipeline.run(frame(series("M1", [1, None, 1]), off), VeeConfig(), TZ)
    assert (res.counts["intervals"], res.counts["missing_intervals"]) == (3, 1)
    assert res.findings.filter(pl.col("rule") == "off_grid")["ts"].to_list() == [off[0][1]]


def test_zero_run_of_exactly_one_day_counts_and_one_slot_short_does_not() -> None:
    assert counts(frame(series("M1", [5] + [0] * 96 + [5])))["zero_runs"] == 1
    assert counts(frame(series("M1", [5] + [0] * 95 + [5])))["zero_runs"] == 0
    assert counts(frame(series("M1", [0] * 48, minutes=30)))["zero_runs"] == 1
    assert counts(frame(series("M1", [0] * 47, minutes=30)))["zero_runs"] == 0


def test_a_missing_slot_ends_a_zero_run() -> None:
    # 97 zero slots with the 51st missing: runs of 50 and 46, neither a whole day
    values: list[int | None] = [0] * 97
    values[50] = None
    c = counts(frame(series("M1", values)))
    assert (c["zero_runs"], c["missing_intervals"]) == (0, 1)


def test_zero_runs_are_maximal_and_a_non_zero_value_splits_them() -> None:
    assert counts(frame(series("M1", [0] * 300)))["zero_runs"] == 1
    assert counts(frame(series("M1", [0] * 96 + [1] + [0] * 96)))["zero_runs"] == 2
    assert counts(frame(series("M1", [0] * 96 + [-1] + [0] * 95)))["zero_runs"] == 1


def test_negative_values_are_counted_and_reported_as_reverse_energy() -> None:
    res = pipeline.run(frame(series("M1", [-1, 0, 5, -3])), VeeConfig(), TZ)
    assert res.counts["negative"] == 2
    rev = res.findings.filter(pl.col("rule") == "reverse_energy")
    assert rev.select("meter_id", "value_wh").rows() == [("M1", 4)]
    assert rev["ts"].to_list() == [T0]  # the start of the business day


def test_duplicates_identical_and_conflicting() -> None:
    dups = pl.LazyFrame({
        "batch_id": ["B1", "B1", "B1"], "meter_id": ["M1", "M1", "M1"],
        "ts": [slot(0), slot(0), slot(1)], "wh": [5, 5, 9], "first_wh": [5, 5, 8],
    }, schema=pipeline.DUPLICATE_SCHEMA)
    res = pipeline.run(frame(series("M1", [5, 8])), VeeConfig(), TZ, duplicates=dups)
    assert (res.counts["duplicates"], res.counts["conflicting_duplicates"]) == (3, 1)
    found = res.findings.filter(pl.col("rule").str.contains("duplicate")).sort("rule", "ref")
    assert found.select("rule", "ts", "ref").rows() == [
        ("conflicting_duplicate", slot(1), "B1#0"),
        ("duplicate", slot(0), "B1#0"), ("duplicate", slot(0), "B1#1")]


def test_spike_is_judged_against_the_meters_usual_high_after_enough_history() -> None:
    # one cell per season (a 24-hour band): 200 × 100 Wh → usual high (99th percentile) 100 Wh,
    # threshold max(4 × 100, 1 kW × 0.25 h = 250) = 400 Wh
    day = {"spike_band_hours": 24}
    base = [100] * 200
    assert counts(frame(series("M1", [*base, 400])), **day)["spikes"] == 0
    assert counts(frame(series("M1", [*base, 401])), **day)["spikes"] == 1
    assert counts(frame(series("M1", [*base, 401])), spike_factor=5.0, **day)["spikes"] == 0
    # a small meter: 4 × 10 Wh is under the smallest spike (1 kW over a quarter-hour = 250 Wh)
    small = [10] * 200
    assert counts(frame(series("M2", [*small, 250])), **day)["spikes"] == 0
    assert counts(frame(series("M2", [*small, 251])), **day)["spikes"] == 1
    # too little history (99 positive intervals, 100 needed): not judged
    assert counts(frame(series("M3", [100] * 98 + [10_000])), **day)["spikes"] == 0


def test_the_safety_floor_flags_any_demand_no_household_draws() -> None:
    # 50 kW over a quarter-hour is 12.5 kWh: above it a spike, whatever the history
    assert counts(frame(series("M1", [100] * 5 + [12_500])))["spikes"] == 0
    assert counts(frame(series("M1", [100] * 5 + [12_501])))["spikes"] == 1
    assert counts(frame(series("M1", [100] * 5 + [12_501])), spike_floor_kw=60.0)["spikes"] == 0


def test_class_and_meter_settings_override_the_defaults() -> None:
    lf = frame(series("SHOP", [100] * 5 + [20_000]), series("HOME", [100] * 5 + [20_000]))
    meters = pl.LazyFrame({"meter_id": ["SHOP", "HOME"], "digits": [6, 6],
                           "meter_class": ["commercial", "residential"]})
    res = pipeline.run(lf, VeeConfig(), TZ, meters=meters)
    # 80 kW: far above a household, ordinary for a shop (commercial floor 500 kW)
    assert res.findings.filter(pl.col("rule") == "spike")["meter_id"].to_list() == ["HOME"]
    cfg = VeeConfig.from_raw({"vee": {"meter": {"HOME": {"spike_floor_kw": 100}},
                                      "class": {"commercial": {"spike_floor_kw": 60}}}})
    res = pipeline.run(lf, cfg, TZ, meters=meters)
    assert res.findings.filter(pl.col("rule") == "spike")["meter_id"].to_list() == ["SHOP"]


@settings(max_examples=40, deadline=None)
@given(usual=st.integers(1, 3000), over=st.integers(-50, 50))
def test_threshold_is_the_larger_of_factor_times_usual_high_and_the_smallest_spike(
        usual: int, over: int) -> None:
    threshold = max(4 * usual, 250)
    value = threshold + over
    if value <= 0 or value > 12_500:
        return
    got = counts(frame(series("M1", [usual] * 200 + [value])), spike_band_hours=24)["spikes"]
    assert got == (1 if value > threshold else 0)


def test_figures_do_not_depend_on_estimation() -> None:
    lf = frame(series("M1", [100] * 200 + [None] * 30 + [100] * 10))
    with_est = pipeline.run(lf, VeeConfig(), TZ)
    without = pipeline.run(lf, VeeConfig(), TZ, with_estimates=False)
    assert with_est.counts == without.counts
    assert with_est.estimates.height == 30 and with_est.counts["missing_intervals"] == 30


def test_rows_out_of_order_give_the_same_figures_and_findings() -> None:
    # the store's files are sorted and the sort is then skipped; any other order is sorted first
    lf = frame(series("M2", [5, None, 0, 0, -1, 13_000] + [100] * 20),
               series("M1", [1, None, None, 1] + [0] * 96))
    ordered = pipeline.run(lf, VeeConfig(), TZ)
    shuffled = pipeline.run(lf.collect().sample(fraction=1.0, shuffle=True, seed=3).lazy(),
                            VeeConfig(), TZ)
    assert shuffled.counts == ordered.counts
    assert shuffled.findings.equals(ordered.findings)
    assert shuffled.estimates.equals(ordered.estimates)
    assert ordered.counts["spikes"] == 1 and ordered.counts["zero_runs"] == 1


def test_tou_split_is_the_same_from_sorted_parts_or_one_mixed_frame() -> None:
    from dianfei.metering.vee import rules, tou

    res = pipeline.run(frame(series("M1", [10] * 40 + [None] * 3 + [10] * 53),
                             series("M2", [20] * 96)), VeeConfig(), TZ)
    metered = res.prepared.select("meter_id", "ts", "wh", pl.lit("metered").alias("source"),
                                  "day", "tod", "meter_day")
    est = res.estimates.select("meter_id", "ts", "wh", pl.lit("estimated").alias("source"))
    cal = tou.calendar("cn-zj-general")
    fast = tou.daily_tou_frame(metered, est, cal=cal, tz=TZ)
    mixed = pl.concat([metered.select("meter_id", "ts", "wh", "source"), est]).sample(
        fraction=1.0, shuffle=True, seed=1)
    assert fast.equals(tou.daily_tou_frame(mixed, cal=cal, tz=TZ))
    assert fast.select("meter_id", "total_wh", "peak_wh", "estimated_intervals").rows() == [
        ("M1", 960, 400, 3), ("M2", 1920, 800, 0)]
    assert rules.MINUTES_PER_DAY == 1440
