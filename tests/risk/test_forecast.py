"""Next-bill forecast: accuracy on held-out months of the synthetic county, tier position and
rating by the real tariff engine, no look-ahead."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.core.clock import Period
from dianfei.risk import forecast
from dianfei.tariffs.models import Usage
from dianfei.tariffs.service import load_catalogue, quote
from tests.risk.sim_history import county

TARGET = Period(2026, 8)


def test_held_out_months_mape_and_interval_coverage() -> None:
    history, facts = county()
    m = forecast.accuracy(history, facts, load_catalogue(), [Period(2026, 7), TARGET])
    # measured 0.164 / 0.797 (docs/risk-insight.md): lognormal month noise of 0.18 (residential)
    # is the floor no forecast beats
    assert m["n"] == 8000
    assert m["mape_kwh"] <= 0.20
    assert m["mape_amount"] <= 0.21
    assert 0.72 <= m["coverage"] <= 0.88


def test_amount_is_the_tariff_engine_on_the_forecast_energy_with_the_years_tiers() -> None:
    history, facts = county()
    out = forecast.forecast_bills(history, facts, TARGET, load_catalogue())
    # a plain residential account far enough into the year to be on the second annual tier
    row = (out.join(facts, on="account_id").filter(
        (pl.col("tariff_id") == "cn-zj-residential") & ~pl.col("low_income")
        & (pl.col("ytd_kwh") > 300_000)).sort("account_id").row(0, named=True))
    q = quote(load_catalogue(), "cn-zj-residential", TARGET,
              Usage(kwh=Decimal(row["kwh"]) / 100, ytd_kwh=Decimal(row["ytd_kwh"]) / 100))
    assert Decimal(q["total"]) * 100 == row["amount"]
    assert any(line["code"] == "energy_tier2" for line in q["lines"])
    assert row["amount_low"] <= row["amount"] <= row["amount_high"]
    assert row["ytd_kwh"] == history.filter(
        (pl.col("account_id") == row["account_id"]) & (pl.col("period") >= "2026-01")
        & (pl.col("period") < str(TARGET)))["kwh"].sum()


def test_every_sim_tariff_is_rated_or_says_why() -> None:
    history, facts = county()
    out = forecast.forecast_bills(history, facts, TARGET, load_catalogue())
    assert out.height == facts.height
    unrated = out.filter(pl.col("amount").is_null())
    # two-part tariffs need the contracted capacity, which bills do not carry
    assert set(unrated["reason"].to_list()) <= {"capacity_missing"}
    tou = out.join(facts, on="account_id").filter(pl.col("tariff_id") == "cn-zj-residential-tou")
    assert tou.height and tou["amount"].null_count() == 0


def test_summer_bills_get_the_advance_notice_and_spring_homes_do_not() -> None:
    history, facts = county()
    catalogue = load_catalogue()
    summer = forecast.forecast_bills(history, facts, TARGET, catalogue)
    spring = forecast.forecast_bills(history, facts, Period(2026, 4), catalogue).join(
        facts, on="account_id")
    assert summer["high"].sum() > 0.1 * summer.height
    homes = spring.filter(pl.col("customer_class") == "residential")
    assert homes["high"].sum() < 0.01 * homes.height
    # April is when irrigation pumping starts: those bills do rise (docs/sim.md seasons)
    assert spring.filter(pl.col("high"))["customer_class"].unique().to_list() == ["agricultural"]
    flagged = summer.filter(pl.col("high"))
    assert (flagged["amount"] * 100 >= flagged["usual_amount"] * forecast.HIGH_PERCENT).all()


def test_no_look_ahead_the_target_month_and_after_change_nothing() -> None:
    history, facts = county(n=600)
    later = pl.col("period") >= str(TARGET)
    scrambled = history.with_columns(pl.when(later).then(pl.col("kwh") * 3 + 7)
                                     .otherwise(pl.col("kwh")).alias("kwh"))
    catalogue = load_catalogue()
    a = forecast.forecast_bills(history, facts, TARGET, catalogue)
    b = forecast.forecast_bills(scrambled, facts, TARGET, catalogue)
    assert a.equals(b)


def test_a_short_history_still_forecasts_without_season() -> None:
    history, facts = county(n=600)
    first_two = history.filter(pl.col("period") <= "2025-02")
    out = forecast.forecast_bills(first_two, facts, Period(2025, 3), load_catalogue())
    assert out.height == facts.height
    assert set(out["basis"].to_list()) == {"no_season"}
    assert (out["kwh_low"] <= out["kwh"]).all() and (out["kwh"] <= out["kwh_high"]).all()


@settings(max_examples=50, deadline=None)
@given(kwh=st.lists(st.integers(0, 10**9), min_size=1, max_size=20))
def test_tou_split_adds_up_exactly(kwh: list[int]) -> None:
    usage = pl.DataFrame({"account_id": [f"A{i}" for i in range(len(kwh))],
                          "tariff_id": ["t2" if i % 2 else "t4" for i in range(len(kwh))],
                          "kwh": kwh}, schema_overrides={"kwh": pl.Int64})
    out = forecast.tou_split(usage, {"t2": ("peak", "valley"),
                                     "t4": ("sharp", "peak", "flat", "valley")})
    parts = pl.sum_horizontal(pl.col(f"{p}_kwh").fill_null(0)
                              for p in ("sharp", "peak", "flat", "valley"))
    assert (out.select(parts)["sharp_kwh"] == out["kwh"]).all()
    assert (out.select(pl.min_horizontal(pl.col(f"{p}_kwh").fill_null(0) for p in
                                         ("sharp", "peak", "flat", "valley"))).to_series() >= 0).all()
