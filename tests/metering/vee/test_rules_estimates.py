"""Register rules, usage deviation and estimation, with hand-computed expectations, plus
hypothesis properties of estimation."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.metering.vee import estimate, pipeline, rules
from dianfei.metering.vee.config import VeeConfig
from tests.metering.vee.helpers import T0, frame, series, slot

TZ = "Asia/Shanghai"


def reads(*rows: tuple[str, object, str, int], source: str = "ami") -> pl.LazyFrame:
    return pl.LazyFrame([(m, t, r, v, source) for m, t, r, v in rows],
                        schema=pipeline.READ_SCHEMA, orient="row")


def meters(**digits: int) -> pl.LazyFrame:
    return pl.LazyFrame({"meter_id": list(digits), "digits": list(digits.values())},
                        schema=pipeline.METER_SCHEMA)


def run(lf: pl.LazyFrame, **kw: object) -> pipeline.VeeResult:
    cfg = kw.pop("cfg", VeeConfig())
    return pipeline.run(lf, cfg, TZ, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ registers


def test_register_going_back_is_rollover_near_the_wrap_else_a_fault() -> None:
    # 4-digit register: wraps at 10**4 kWh = 1,000,000 in 0.01 units
    r = reads(("M1", slot(0), "total", 999_900), ("M1", slot(4), "total", 100),
              ("M2", slot(0), "total", 5000), ("M2", slot(4), "total", 4000))
    res = run(frame(series("M1", [1]), series("M2", [1])), reads=r, meters=meters(M1=4, M2=4))
    found = res.findings.filter(pl.col("rule").is_in(["rollover", "read_backwards"]))
    assert found.select("rule", "meter_id", "ts", "ref").rows() == [
        ("read_backwards", "M2", slot(4), "total"), ("rollover", "M1", slot(4), "total")]


def test_interval_sum_against_register_difference() -> None:
    # total register moves 2.40 kWh over the day; 96 intervals of 25 Wh add up to 2400 Wh
    r = reads(("M1", slot(0), "total", 10_000), ("M1", slot(96), "total", 10_240))
    ok = run(frame(series("M1", [25] * 96)), reads=r, meters=meters(M1=6))
    assert ok.findings.filter(pl.col("rule") == "register_mismatch").height == 0
    # 30 Wh each: 2880 vs 2400, off by 480 > max(100, 2% of 2400 = 48)
    bad = run(frame(series("M1", [30] * 96)), reads=r, meters=meters(M1=6))
    found = bad.findings.filter(pl.col("rule") == "register_mismatch")
    assert found.select("meter_id", "ts", "value_wh").rows() == [("M1", slot(96), 2880)]
    # a span with a missing interval is not judged (the sum would be short by design)
    gap = run(frame(series("M1", [30] * 50 + [None] + [30] * 45)), reads=r, meters=meters(M1=6))
    assert gap.findings.filter(pl.col("rule") == "register_mismatch").height == 0
    # an estimated read is never compared
    est = run(frame(series("M1", [30] * 96)),
              reads=reads(("M1", slot(0), "total", 10_000), ("M1", slot(96), "total", 10_240),
                          source="estimated"), meters=meters(M1=6))
    assert est.findings.filter(pl.col("rule") == "register_mismatch").height == 0


# ------------------------------------------------------------------ usage


def test_high_and_low_usage_against_the_meters_usual_range_in_the_season() -> None:
    # 30 spring days of 96 × 20 Wh = 1.92 kWh: usual range 1.92–1.92 kWh. A day above
    # 2.5 × 1.92 = 4.8 kWh is high, one below 0.05 × 1.92 = 0.096 kWh is low
    usual = [20] * 96 * 30
    res = run(frame(series("M1", usual + [100] * 96 + [1] * 96 + [0, 1] * 48)))
    found = res.findings.filter(pl.col("rule").is_in(["high_usage", "low_usage"]))
    assert found.select("rule", "ts", "value_wh").rows() == [
        ("high_usage", T0 + timedelta(days=30), 9600), ("low_usage", T0 + timedelta(days=32), 48)]
    assert "usual high of 1.920 kWh a day in spring" in found["detail"][0]
    # 27 complete days are not enough to judge (28 needed)
    short = run(frame(series("M1", [20] * 96 * 26 + [100] * 96)))
    assert short.findings.filter(pl.col("rule") == "high_usage").height == 0


# ------------------------------------------------------------------ estimation


def test_linear_interpolation_rounds_half_up_in_integers() -> None:
    res = run(frame(series("M1", [100, None, None, None, 200]), series("M2", [100, None, None, 101]),
                    series("M3", [0, None, None, -3])))
    got = {(r["meter_id"], r["ts"]): r["wh"] for r in res.estimates.iter_rows(named=True)}
    assert got == {("M1", slot(1)): 125, ("M1", slot(2)): 150, ("M1", slot(3)): 175,
                   ("M2", slot(1)): 100, ("M2", slot(2)): 101,
                   ("M3", slot(1)): -1, ("M3", slot(2)): -2}
    assert set(res.estimates["method"]) == {"linear"}


def test_short_gap_limit_is_two_hours_by_default() -> None:
    eight = run(frame(series("M1", [10] + [None] * 8 + [10])))
    nine = run(frame(series("M1", [10] + [None] * 9 + [10])))
    assert set(eight.estimates["method"]) == {"linear"}
    assert "linear" not in set(nine.estimates["method"])
    longer = run(frame(series("M1", [10] + [None] * 9 + [10])), cfg=VeeConfig(short_gap_minutes=135))
    assert set(longer.estimates["method"]) == {"linear"}


def test_long_gap_uses_the_same_slot_on_the_same_weekday_of_previous_weeks() -> None:
    # two weeks of a daily pattern (slot k of the day = k Wh) with week 1 at double; then
    # day 14 has a 4-hour gap from 10:00 (slots 40..55)
    week = [k % 96 for k in range(96 * 7)]
    values: list[int | None] = [2 * v for v in week] + week + [k % 96 for k in range(96)]
    for k in range(40, 56):
        values[96 * 14 + k] = None
    res = run(frame(series("M1", values)))
    est = res.estimates.sort("ts")
    assert est.height == 16 and set(est["method"]) == {"profile_weekday"}
    # mean of week 1 (2k) and week 2 (k), rounded half up: (3k)/2
    assert est["wh"].to_list() == [(3 * k + 1) // 2 for k in range(40, 56)]
    assert est["inputs"][0] == "mean of 2 values on 2026-03-02,2026-03-09"


def test_without_weekday_history_the_time_of_day_mean_then_the_meter_mean() -> None:
    # one day only: 00:00-12:00 present with 10..57, a 6-hour gap, then 18:00 onwards
    values: list[int | None] = [10 + k for k in range(48)] + [None] * 24 + [7] * 24
    res = run(frame(series("M1", values)))
    assert set(res.estimates["method"]) == {"meter_average"}
    total = sum(v for v in values if v is not None)
    assert res.estimates["wh"].unique().to_list() == [(2 * total + 72) // 144]


def test_gaps_longer_than_the_limit_are_not_estimated() -> None:
    values: list[int | None] = [10] + [None] * 96 * 2 + [10]
    assert run(frame(series("M1", values)), cfg=VeeConfig(max_estimate_days=1)).estimates.height == 0
    assert run(frame(series("M1", values))).estimates.height == 96 * 2


# ------------------------------------------------------------------ properties

slot_values = st.lists(st.one_of(st.none(), st.integers(-50, 5000)), min_size=1, max_size=400)


@settings(max_examples=60, deadline=None)
@given(slot_values)
def test_estimates_fill_exactly_missing_slots_and_never_touch_metered_ones(values: list[int | None]) -> None:
    res = run(frame(series("M1", values)))
    present = {slot(k) for k, v in enumerate(values) if v is not None}
    est_ts = set(res.estimates["ts"].to_list())
    assert not (est_ts & present)
    if present:
        first, last = min(present), max(present)
        missing = {slot(k) for k, v in enumerate(values) if v is None and first <= slot(k) <= last}
        assert res.counts["missing_intervals"] == len(missing)
        assert est_ts == missing  # every gap here is shorter than max_estimate_days
    assert res.estimates["ts"].n_unique() == res.estimates.height


@settings(max_examples=60, deadline=None)
@given(st.integers(-10_000, 10_000), st.integers(-10_000, 10_000), st.integers(1, 8))
def test_interpolation_lies_between_its_endpoints_and_is_monotone(a: int, b: int, n: int) -> None:
    res = run(frame(series("M1", [a] + [None] * n + [b])))
    vals = res.estimates.sort("ts")["wh"].to_list()
    assert len(vals) == n
    seq = [a, *vals, b]
    assert all(min(a, b) <= v <= max(a, b) for v in vals)
    assert seq == sorted(seq) or seq == sorted(seq, reverse=True)
    # exact: a + (b − a)·i/(n+1), half up
    for i, v in enumerate(vals, start=1):
        exact = a + (b - a) * i / (n + 1)
        assert abs(v - exact) <= 0.5


@settings(max_examples=40, deadline=None)
@given(slot_values)
def test_missing_count_is_the_same_whatever_the_estimates(values: list[int | None]) -> None:
    lf = frame(series("M1", values))
    base = run(lf)
    # storing the estimates beside the data does not fill a slot: the figures ignore them
    again = run(lf, cfg=VeeConfig(short_gap_minutes=0, profile_weeks=1))
    assert base.counts == again.counts


def test_estimate_schema_is_stable_when_there_is_nothing_to_do() -> None:
    slots = rules.slotted(rules.prepare(frame(series("M1", [1])), TZ)).lazy()
    out = estimate.estimate(rules.gaps(slots), slots, VeeConfig(), TZ).collect()
    assert out.schema == estimate.ESTIMATE_SCHEMA and out.height == 0


def test_found_case_gap_details_with_many_gaps() -> None:
    # found by hypothesis: Polars' pl.format panicked on datetime text in the streaming engine
    values = [2550, None, None, 3072, 3407, 4272, None, 4011, 2781, None, None, 2323, 3359, 4508,
              769, None, 2378, None, 4052, 3407, 1505, 4763, 4040, 4089, 232, 3261, 1367, 3019,
              None, 834, 4217, 2985, 192, 2477, 4986, 3174, 1331, 50]
    res = run(frame(series("M1", values)))
    gaps = res.findings.filter(pl.col("rule") == "gap").sort("ts")
    assert gaps.height == 6 and res.counts["missing_intervals"] == 8
    assert gaps["detail"][0] == ("2 missing intervals of 15 minutes, 2026-03-01T16:15:00Z to "
                                 "2026-03-01T16:30:00Z (last before 2026-03-01T16:00:00Z, "
                                 "next 2026-03-01T16:45:00Z)")
