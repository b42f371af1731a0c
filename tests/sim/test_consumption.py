from __future__ import annotations

import calendar
from datetime import UTC, date, datetime

import polars as pl
import pytest

from dianfei.core.clock import Period
from dianfei.sim import (
    Utility,
    build_utility,
    daily_usage,
    monthly_reads,
    opening_reads,
    period_consumption,
    read_faults,
)

from ._util import START, periods

CUMULATIVE = ["total", "sharp", "peak", "flat", "valley", "kvarh"]


def test_reads_schema(county: Utility) -> None:
    r = monthly_reads(county, START)
    assert r.columns == ["meter_id", "read_at", "register", "value", "source"]
    assert r.schema["read_at"] == pl.Datetime("us", "UTC")
    assert r.schema["value"] == pl.Int64 and r.schema["register"] == pl.String
    # 00:00 Asia/Shanghai on 2025-02-01 is 16:00 UTC the day before
    assert r["read_at"].unique().to_list() == [datetime(2025, 1, 31, 16, tzinfo=UTC)]
    assert set(r["source"].unique()) == {"ami", "manual", "estimated"}
    assert set(r["register"].unique()) == {*CUMULATIVE, "demand_kw"}
    o = opening_reads(county)
    assert o.columns == r.columns
    assert o["read_at"].unique().to_list() == [datetime(2024, 12, 31, 16, tzinfo=UTC)]
    assert "demand_kw" not in o["register"].unique().to_list()
    assert o["meter_id"].n_unique() == county.meters.height
    # every meter reports exactly its registers
    regs = o.group_by("meter_id").agg(pl.col("register").str.join(",")).join(
        county.meters.select("meter_id", "registers"), on="meter_id"
    )
    expected = regs["registers"].str.replace(",demand_kw", "")
    assert (regs["register"] == expected).all()
    with pytest.raises(ValueError):
        monthly_reads(county, Period(2024, 12))


def test_reads_deterministic_and_order_independent() -> None:
    a = build_utility(2000, seed=9)
    target = Period(2025, 7)
    direct = monthly_reads(a, target)
    b = build_utility(2000, seed=9)
    for p in periods(9):
        monthly_reads(b, p)
    assert monthly_reads(b, target).equals(direct)
    assert monthly_reads(b, Period(2025, 3)).equals(monthly_reads(build_utility(2000, seed=9),
                                                                  Period(2025, 3)))
    assert opening_reads(a).equals(opening_reads(b))
    assert daily_usage(a, date(2025, 7, 9)).equals(daily_usage(b, date(2025, 7, 9)))
    c = build_utility(2000, seed=10)
    assert not monthly_reads(c, target).equals(direct)


def _wide(reads: pl.DataFrame) -> pl.DataFrame:
    return reads.pivot(on="register", index="meter_id", values="value")


def test_tou_registers_sum_to_total_increment(county: Utility) -> None:
    meters = county.meters.select("meter_id", "digits", "registers")
    prev = _wide(opening_reads(county))
    prev_faulty = pl.Series([], dtype=pl.String)
    for p in periods(4):
        cur = _wide(monthly_reads(county, p))
        # a regression (this month or last) scales each register: sums only hold for the truth
        faulty = read_faults(county, p).filter(pl.col("fault") == "regression")["meter_id"]
        j = cur.join(prev, on="meter_id", suffix="_o").join(meters, on="meter_id")
        j = j.filter(~pl.col("meter_id").is_in(pl.concat([faulty, prev_faulty]).implode()))
        mod = pl.lit(10).pow(pl.col("digits")).cast(pl.Int64) * 100

        def inc(reg: str, mod: pl.Expr = mod) -> pl.Expr:
            return (pl.col(reg) - pl.col(f"{reg}_o")) % mod

        two = j.filter(pl.col("registers") == "total,peak,valley")
        assert two.height > 1000
        assert two.select((inc("peak") + inc("valley") == inc("total")).all()).item()
        full = j.filter(pl.col("registers").str.contains("kvarh"))
        assert full.height > 50
        tou_sum = inc("sharp") + inc("peak") + inc("flat") + inc("valley")
        assert full.select((tou_sum == inc("total")).all()).item()
        prev = cur
        prev_faulty = faulty


def test_monotone_except_planted_faults_and_rollovers(county: Utility) -> None:
    meters = county.meters.select("meter_id", "digits", "multiplier")
    prev = opening_reads(county)
    prev_faults = pl.DataFrame(schema={"meter_id": pl.String, "fault": pl.String})
    counts = {"missing": 0, "regression": 0, "estimated": 0, "rollover": 0}
    months = 24
    for p in periods(months):
        cur = monthly_reads(county, p)
        faults = read_faults(county, p)
        for f, k in faults["fault"].value_counts().iter_rows():
            counts[f] += k
        missing = faults.filter(pl.col("fault") == "missing")["meter_id"]
        assert not cur["meter_id"].is_in(missing.implode()).any()
        truth = period_consumption(county, p)
        j = (
            cur.filter(pl.col("register") != "demand_kw")
            .join(prev, on=["meter_id", "register"], suffix="_o")
            .join(meters, on="meter_id")
            .join(faults.rename({"fault": "f_now"}), on="meter_id", how="left")
            .join(prev_faults.rename({"fault": "f_prev"}), on="meter_id", how="left")
            .join(truth, on="meter_id")
            .with_columns(mod=pl.lit(10).pow(pl.col("digits")).cast(pl.Int64) * 100)
        )
        assert (j["value"] < j["mod"]).all() and (j["value"] >= 0).all()
        down = j.filter(pl.col("value") < pl.col("value_o"))
        planted = down.filter(pl.col("f_now") == "regression")
        rest = down.filter(pl.col("f_now").is_null() | (pl.col("f_now") != "regression"))
        # a regression reads lower on every cumulative register that had something to lose
        assert planted["meter_id"].n_unique() == faults.filter(
            pl.col("fault") == "regression"
        )["meter_id"].is_in(j["meter_id"].implode()).sum()
        # everything else that went down is a genuine rollover at 10**digits kWh
        wrapped = rest["value_o"] + (rest["value"] - rest["value_o"]) % rest["mod"]
        assert (wrapped >= rest["mod"]).all()
        clean = rest.filter(
            (pl.col("register") == "total") & pl.col("f_now").is_null() & pl.col("f_prev").is_null()
        )
        assert (
            (clean["value"] - clean["value_o"]) % clean["mod"] * clean["multiplier"] == clean["kwh"]
        ).all()
        counts["rollover"] += rest.filter(pl.col("register") == "total").height
        # reads of meters without any planted fault are exactly the true increment
        ok = j.filter(pl.col("f_now").is_null() & pl.col("f_prev").is_null()
                      & (pl.col("register") == "total"))
        assert ((ok["value"] - ok["value_o"]) % ok["mod"] * ok["multiplier"] == ok["kwh"]).all()
        prev = pl.concat([prev.join(cur, on=["meter_id", "register"], how="anti"), cur])
        prev = prev.filter(pl.col("register") != "demand_kw")
        prev_faults = faults
    meter_months = county.meters.height * months
    assert counts["missing"] / meter_months == pytest.approx(0.001, rel=0.3)
    assert counts["regression"] / meter_months == pytest.approx(0.0002, rel=0.5)
    assert counts["estimated"] / meter_months == pytest.approx(0.005, rel=0.2)
    assert 1 <= counts["rollover"] < meter_months * 0.001


def test_estimated_reads_are_marked(county: Utility) -> None:
    p = Period(2025, 5)
    est = read_faults(county, p).filter(pl.col("fault") == "estimated")["meter_id"]
    r = monthly_reads(county, p)
    marked = r.filter(pl.col("source") == "estimated")["meter_id"].unique()
    assert set(marked) == set(est)


def _monthly_kwh(u: Utility, months: int) -> pl.DataFrame:
    frames = [
        period_consumption(u, p).with_columns(month=pl.lit(i), cal=pl.lit(p.month))
        for i, p in enumerate(periods(months))
    ]
    return pl.concat(frames).join(
        u.customers.select(
            pl.col("customer_id").str.replace("C", "M").alias("meter_id"),
            "customer_class", "behaviour", "tamper_month",
        ),
        on="meter_id",
    )


def test_seasonality_and_scale(county: Utility) -> None:
    kwh = _monthly_kwh(county, 12)
    by = kwh.group_by("customer_class", "cal").agg(pl.col("kwh").sum())

    def total(cls: str, month: int) -> int:
        return int(by.filter((pl.col("customer_class") == cls) & (pl.col("cal") == month))
                   ["kwh"].item())

    assert total("agricultural", 7) > 20 * total("agricultural", 1)
    assert total("residential", 8) > 1.4 * total("residential", 4)
    assert total("residential", 1) > 1.2 * total("residential", 4)
    year = kwh.group_by("meter_id", "customer_class", "behaviour").agg(pl.col("kwh").sum() / 100)
    res = year.filter((pl.col("customer_class") == "residential")
                      & (pl.col("behaviour") != "vacant"))
    monthly = res["kwh"] / 12
    assert 100 < monthly.median() < 220  # type: ignore[operator]
    assert 0.10 < (res["kwh"] > 2760).mean() < 0.40  # type: ignore[operator]
    assert 0.01 < (res["kwh"] > 4800).mean() < 0.10  # type: ignore[operator]
    large = year.filter(pl.col("customer_class") == "large_industry")["kwh"] / 12
    assert large.min() > 50_000 and large.max() < 3_000_000  # type: ignore[operator]
    vacant = year.filter(pl.col("behaviour") == "vacant")["kwh"] / 12
    assert vacant.max() <= 3.0  # type: ignore[operator]


def test_tamper_drop(county: Utility) -> None:
    kwh = _monthly_kwh(county, 24)
    # remove seasonality: each month divided by the class's median use of on-time customers
    norm = kwh.join(
        kwh.filter(pl.col("behaviour") == "on_time")
        .group_by("customer_class", "month").agg(pl.col("kwh").median().alias("ref")),
        on=["customer_class", "month"],
    ).with_columns(x=pl.col("kwh") / pl.col("ref"))
    tamper = norm.filter(pl.col("behaviour") == "tamper")
    before = tamper.filter(pl.col("month") < pl.col("tamper_month")).group_by("meter_id").agg(
        b=pl.col("x").mean())
    after = tamper.filter(pl.col("month") >= pl.col("tamper_month")).group_by("meter_id").agg(
        a=pl.col("x").mean())
    ratio = before.join(after, on="meter_id").select(r=pl.col("a") / pl.col("b"))["r"]
    assert ratio.len() > 100
    assert 0.35 < ratio.median() < 0.65  # type: ignore[operator]


def test_power_factor_and_demand(county: Utility) -> None:
    p = Period(2025, 7)
    prev = _wide(monthly_reads(county, p.prev()))
    cur = _wide(monthly_reads(county, p))
    bad = pl.concat([read_faults(county, p), read_faults(county, p.prev())])["meter_id"]
    vacant = county.customers.filter(pl.col("behaviour") == "vacant").select(
        pl.col("customer_id").str.replace("C", "M").alias("meter_id")
    )["meter_id"]
    j = cur.join(prev, on="meter_id", suffix="_o").filter(
        pl.col("kvarh").is_not_null()
        & ~pl.col("meter_id").is_in(pl.concat([bad, vacant]).implode())
    )
    kwh = (pl.col("total") - pl.col("total_o")).cast(pl.Float64)
    kvarh = (pl.col("kvarh") - pl.col("kvarh_o")).cast(pl.Float64)
    pf = j.select((kwh / (kwh**2 + kvarh**2).sqrt()).round(2).alias("pf"))["pf"]
    assert pf.is_between(0.85, 0.98).mean() > 0.7  # type: ignore[operator]
    assert 0.02 < (pf < 0.80).mean() < 0.2  # type: ignore[operator]
    assert (j["demand_kw"] > 0).all()


def test_daily_usage_sums_to_the_month() -> None:
    u = build_utility(3000, seed=4)
    p = Period(2025, 2)
    days = calendar.monthrange(p.year, p.month)[1]
    frames = [daily_usage(u, date(p.year, p.month, d)) for d in range(1, days + 1)]
    assert frames[0].columns == ["meter_id", "kwh"] and frames[0].schema["kwh"] == pl.Int64
    total = pl.concat(frames).group_by("meter_id").agg(pl.col("kwh").sum())
    truth = period_consumption(u, p)
    j = truth.join(total, on="meter_id", suffix="_d")
    assert j.height == u.meters.height and (j["kwh"] == j["kwh_d"]).all()
    assert all((f["kwh"] >= 0).all() for f in frames)
    # out of order gives the same day
    again = daily_usage(u, date(2025, 2, 3))
    assert again.equals(frames[2])
    # and it matches the reads of meters without faults
    r0, r1 = monthly_reads(u, p.prev()), monthly_reads(u, p)
    bad = pl.concat([read_faults(u, p), read_faults(u, p.prev())])["meter_id"].implode()
    reads = (
        r1.filter(pl.col("register") == "total")
        .join(r0.filter(pl.col("register") == "total"), on="meter_id", suffix="_o")
        .join(u.meters, on="meter_id").join(total, on="meter_id")
        .filter(~pl.col("meter_id").is_in(bad))
        .with_columns(mod=pl.lit(10).pow(pl.col("digits")).cast(pl.Int64) * 100)
    )
    inc = (reads["value"] - reads["value_o"]) % reads["mod"] * reads["multiplier"]
    assert (inc == reads["kwh"]).all()


def test_night_bypass_takes_the_valley_energy_and_leaves_the_rest(county: Utility) -> None:
    from dianfei.sim import period_tou, station_supply, tamper_modes

    modes = tamper_modes(county)
    assert set(modes["mode"]) == {"scale", "night"}
    night = modes.filter(pl.col("mode") == "night").with_columns(
        pl.col("customer_id").str.replace("C", "M").alias("meter_id"))
    assert night.height >= 10
    rows = []
    for i, p in enumerate(periods(24)):
        t = period_tou(county, p)
        # the time-of-use registers add up to the total, bypass or not
        total = period_consumption(county, p).join(t.select("meter_id"), on="meter_id")
        assert t.select("meter_id", "kwh").equals(total.select("meter_id", "kwh"))
        rows.append(t.join(night, on="meter_id").with_columns(month=pl.lit(i)))
    tou = pl.concat(rows).with_columns(share=pl.col("valley") / pl.col("kwh"),
                                       after=pl.col("month") >= pl.col("tamper_month"))
    by = tou.group_by("meter_id", "after").agg(pl.col("share").median(), pl.col("kwh").median())
    wide = by.filter(pl.col("after")).join(by.filter(~pl.col("after")), on="meter_id",
                                           suffix="_b")
    assert wide.height >= 5
    # the valley register keeps 5–35 % of the night energy, so its share falls to well under
    # 60 % of what it was; the total by far less than a scaled meter's 40–70 %
    assert (wide["share"] < wide["share_b"] * 0.6).all()
    assert (wide["kwh"] > wide["kwh_b"] * 0.45).all()  # type: ignore[operator]
    # the station meter sees what was used: supply ≥ what the meters recorded, by 2–9 %
    p = periods(24)[-1]
    metered = (period_consumption(county, p)
               .join(county.meters.select("meter_id", "customer_id"), on="meter_id")
               .join(county.customers.select("customer_id", "station_id"), on="customer_id")
               .group_by("station_id").agg(pl.col("kwh").sum().alias("metered")))
    s = station_supply(county, p).join(metered, on="station_id")
    loss = (s["kwh"] - s["metered"]) / s["kwh"]
    assert loss.min() > 0.02 and loss.max() < 0.2  # type: ignore[operator]
    assert station_supply(county, p).equals(station_supply(county, p))
