from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from dianfei.core.clock import Period
from dianfei.sim import Utility, payment_day_offsets, payment_profile, period_consumption

from ._util import START


def _bills(u: Utility, p: Period) -> pl.DataFrame:
    """Rough bills: 0.55 yuan/kWh, due 20 days after the period ends."""
    return period_consumption(u, p).select(
        pl.col("meter_id").str.replace("M", "C").alias("customer_id"),
        (pl.col("kwh") * 55 // 100).alias("amount"),
        pl.lit(p.end_date + timedelta(days=20)).alias("due_on"),
    )


def test_payment_profile(county: Utility) -> None:
    prof = payment_profile(county)
    assert prof.columns == ["customer_id", "behaviour", "preferred_channel",
                            "pay_delay_mean_days", "pay_prob", "partial_prob"]
    assert prof.height == county.customers.height
    by = prof.group_by("behaviour").agg(pl.col("pay_prob").mean(),
                                        pl.col("pay_delay_mean_days").mean())
    d = {r[0]: r[1:] for r in by.iter_rows()}
    assert d["on_time"][1] < 0 < d["late"][1] < d["chronic_arrears"][1]
    assert d["chronic_arrears"][0] < 0.5 < d["on_time"][0]


def test_payments_follow_behaviour(county: Utility) -> None:
    p = Period(2025, 6)
    bills = _bills(county, p)
    out = payment_day_offsets(county, p, bills)
    assert out.columns == [*bills.columns, "paid_on", "delay_days", "paid_amount", "channel"]
    assert out.height == bills.height
    assert out.schema["paid_on"] == pl.Date and out.schema["paid_amount"] == pl.Int64
    out = out.join(county.customers.select("customer_id", "behaviour", "shock_month",
                                           "payment_mode"), on="customer_id")
    # prepaid customers never pay a bill: it is settled from the credit they top up
    prepaid = out.filter(pl.col("payment_mode") == "prepaid")
    assert prepaid.height > 1000
    assert prepaid["paid_on"].null_count() == prepaid.height
    assert (prepaid["paid_amount"] == 0).all()
    out = out.filter(pl.col("payment_mode") == "postpaid")
    paid = out.filter(pl.col("paid_on").is_not_null())
    assert ((paid["paid_on"] - paid["due_on"]).dt.total_days() == paid["delay_days"]).all()
    assert (out["paid_amount"] <= out["amount"]).all() and (out["paid_amount"] >= 0).all()
    assert (out.filter(pl.col("paid_on").is_null())["paid_amount"] == 0).all()

    def of(b: str) -> pl.DataFrame:
        return out.filter((pl.col("behaviour") == b) & (pl.col("amount") > 0))

    on_time = of("on_time")
    assert (on_time.filter(pl.col("paid_on").is_not_null())["delay_days"] <= 0).all()
    assert on_time["paid_on"].is_not_null().mean() > 0.98  # type: ignore[operator]
    late = of("late").filter(pl.col("paid_on").is_not_null())
    assert late["delay_days"].is_between(1, 40).all()
    chronic = of("chronic_arrears")
    assert chronic["paid_on"].is_not_null().mean() < 0.6  # type: ignore[operator]
    vacant = of("vacant").filter(pl.col("amount") <= 5000)
    assert (vacant["delay_days"] <= 0).all()
    rel = p.index() - START.index()
    shocked = of("hardship_shock").filter(pl.col("shock_month") <= rel)
    calm = of("hardship_shock").filter(pl.col("shock_month") > rel)
    assert shocked.height > 20 and calm.height > 20
    assert shocked["paid_on"].is_not_null().mean() < 0.3  # type: ignore[operator]
    assert calm["paid_on"].is_not_null().mean() > 0.9  # type: ignore[operator]
    partial = out.filter(pl.col("paid_on").is_not_null()
                         & (pl.col("paid_amount") < pl.col("amount")))
    assert partial.height > 0


def test_payments_deterministic_per_customer(county: Utility) -> None:
    p = Period(2025, 3)
    bills = _bills(county, p)
    full = payment_day_offsets(county, p, bills)
    sub = bills.sample(fraction=0.3, seed=1, shuffle=True)
    part = payment_day_offsets(county, p, sub)
    expected = full.join(sub.select("customer_id"), on="customer_id", how="semi")
    assert part.sort("customer_id").equals(expected.sort("customer_id"))
    other = payment_day_offsets(county, p.next(), bills)
    assert not other["paid_on"].equals(full["paid_on"])


def test_payments_edge_cases(county: Utility) -> None:
    empty = _bills(county, START).head(0)
    assert payment_day_offsets(county, START, empty).height == 0
    bad = pl.DataFrame({"customer_id": ["X1"], "amount": [100], "due_on": [START.end_date]})
    with pytest.raises(ValueError):
        payment_day_offsets(county, START, bad)
    zero = pl.DataFrame({"customer_id": ["C00000001"], "amount": [0], "due_on": [START.end_date]})
    out = payment_day_offsets(county, START, zero)
    assert out["paid_on"].null_count() == 1 and out["paid_amount"].item() == 0


def test_pay_after_suspension(county: Utility) -> None:
    from datetime import date

    from dianfei.sim import pay_after_suspension

    postpaid = county.customers.filter(pl.col("payment_mode") == "postpaid")
    cases = postpaid.head(4000).select(
        pl.int_range(1, 4001, dtype=pl.Int64).alias("case_id"), "customer_id",
        pl.lit(date(2025, 6, 10)).alias("suspended_on"))
    out = pay_after_suspension(county, cases)
    assert out.columns == [*cases.columns, "paid_on", "channel"]
    paid = out.filter(pl.col("paid_on").is_not_null())
    # most customers pay to be reconnected, within days; the rest stay cut off
    assert 0.75 < paid.height / out.height < 0.99
    days = (paid["paid_on"] - paid["suspended_on"]).dt.total_days()
    assert days.min() >= 1 and days.max() <= 30 and 1.5 < days.mean() < 4  # type: ignore[operator]
    assert paid["channel"].null_count() == 0
    assert out.filter(pl.col("paid_on").is_null())["channel"].null_count() == out.height - paid.height
    # deterministic per case, whatever the order or subset
    again = pay_after_suspension(county, cases.reverse().head(1000)).sort("case_id")
    assert again.equals(out.filter(pl.col("case_id") > 3000).sort("case_id"))
    by = out.join(county.customers.select("customer_id", "behaviour"), on="customer_id") \
        .group_by("behaviour").agg(pl.col("paid_on").is_not_null().mean().alias("share"))
    share = dict(by.iter_rows())
    assert share["on_time"] > share["chronic_arrears"]
    with pytest.raises(ValueError, match="case_id"):
        pay_after_suspension(county, cases.drop("case_id"))
