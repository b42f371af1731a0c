"""Smart prepayment in the synthetic county: daily frozen reads and top-up behaviour."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from dianfei.core.clock import Period
from dianfei.sim import (
    Utility,
    build_utility,
    daily_reads,
    daily_usage,
    monthly_reads,
    opening_reads,
    prepaid_opening_credit,
    prepaid_topups,
    prepay_profile,
    read_faults,
)

from ._util import START


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def test_prepaid_customers_have_smart_meters(county: Utility) -> None:
    prepaid = county.customers.filter(pl.col("payment_mode") == "prepaid")
    meters = county.meters.join(prepaid.select("customer_id"), on="customer_id", how="semi")
    assert meters.height == prepaid.height > 3000
    assert (meters["digits"] == 6).all()  # no old 5-digit meter can be switched remotely
    jan = monthly_reads(county, START).join(meters.select("meter_id"), on="meter_id", how="semi")
    assert "manual" not in jan["source"].to_list()


def test_one_daily_read_per_prepaid_meter_and_register(county: Utility) -> None:
    day = date(2025, 3, 14)
    reads = daily_reads(county, day)
    assert reads.columns == ["meter_id", "read_at", "register", "value", "source"]
    assert reads.schema["read_at"] == pl.Datetime("us", "UTC")
    assert (reads["read_at"] == datetime(2025, 3, 13, 16, tzinfo=UTC)).all()  # 00:00 +08:00
    assert (reads["source"] == "ami").all()
    prepaid = (county.customers.filter(pl.col("payment_mode") == "prepaid")
               .join(county.meters, on="customer_id").select("meter_id", "registers"))
    totals = reads.filter(pl.col("register") == "total")
    assert sorted(totals["meter_id"].to_list()) == sorted(prepaid["meter_id"].to_list())
    assert reads.select("meter_id", "register").is_unique().all()
    # TOU meters report peak and valley too, and they add up to the total exactly
    tou = prepaid.filter(pl.col("registers") == "total,peak,valley")["meter_id"]
    assert tou.len() > 300
    wide = reads.filter(pl.col("meter_id").is_in(tou.implode())).pivot(
        on="register", index="meter_id", values="value")
    assert wide.height == tou.len()
    assert (wide["peak"] + wide["valley"] == wide["total"]).all()


def test_daily_reads_are_monotone_and_follow_daily_usage(county: Utility) -> None:
    period = Period(2025, 4)
    days = _days(period.first_day + timedelta(days=1), period.end_date - timedelta(days=1))
    frames = [daily_reads(county, d) for d in days]
    close = monthly_reads(county, period)
    prev = None
    for d, frame in zip(days, frames, strict=True):
        if prev is not None:
            j = prev.join(frame, on=["meter_id", "register"], suffix="_n")
            assert j.height == frame.height
            assert (j["value_n"] >= j["value"]).all(), d  # 6-digit meters, no rollover here
            # one day's total increment is daily_usage of the day before (multiplier 1)
            use = daily_usage(county, d - timedelta(days=1))
            inc = j.filter(pl.col("register") == "total").join(use, on="meter_id")
            plain = inc.join(frame.filter(pl.col("register") == "peak").select("meter_id"),
                             on="meter_id", how="anti")
            assert ((plain["value_n"] - plain["value"]) == plain["kwh"]).all(), d
            tou = inc.join(plain.select("meter_id"), on="meter_id", how="anti")
            assert ((tou["value_n"] - tou["value"] - tou["kwh"]).abs() <= 1).all(), d
        prev = frame
    # the last daily read of the month is at most the month's frozen read (where true)
    last = frames[-1].join(close, on=["meter_id", "register"], suffix="_m").join(
        read_faults(county, period), on="meter_id", how="anti")
    assert (last["value_m"] >= last["value"]).all()
    # the 1st: the daily read is the monthly (opening) frozen read, planted faults included
    first = daily_reads(county, date(2025, 5, 1))
    assert first.equals(close.join(first.select("meter_id", "register"),
                                   on=["meter_id", "register"], how="semi"))
    assert first["meter_id"].n_unique() < frames[-1]["meter_id"].n_unique()  # missing reads
    opening = daily_reads(county, START.first_day)
    assert opening.height == frames[-1].height and opening.equals(
        opening_reads(county).join(opening.select("meter_id", "register"),
                                   on=["meter_id", "register"], how="semi"))
    with pytest.raises(ValueError):
        daily_reads(county, date(2024, 12, 20))


def test_daily_reads_are_deterministic_whatever_was_asked_before() -> None:
    a = build_utility(3000, seed=4, start=START)
    b = build_utility(3000, seed=4, start=START)
    day = date(2025, 6, 17)
    cold = daily_reads(a, day)
    for d in _days(date(2025, 6, 2), date(2025, 6, 20)):
        warm = daily_reads(b, d)
    assert daily_reads(b, day).equals(cold)
    assert warm.height == cold.height
    assert not daily_reads(build_utility(3000, seed=5, start=START), day).equals(cold)


def test_prepay_profile_habits(county: Utility) -> None:
    prof = prepay_profile(county)
    n = (county.customers["payment_mode"] == "prepaid").sum()
    assert prof.height == n
    share = prof["habit"].value_counts(normalize=True)
    shares = dict(zip(share["habit"], share["proportion"], strict=True))
    assert shares["planner"] > 0.6  # most top up before they run low
    assert 0.1 < shares["on_warning"] < 0.3
    assert 0.03 < shares["lapser"] < 0.12
    assert (prof["trigger"] > 5000).all()
    credit = prepaid_opening_credit(county)
    assert (credit["amount"] > 0).all() and (credit["amount"] % 5000 == 0).all()
    assert set(credit["channel"]) <= {"counter", "alipay", "wechatpay", "post_office"}


def test_topups_follow_the_balance(county: Utility) -> None:
    prof = prepay_profile(county)
    day = date(2025, 3, 10)
    billed_to = date(2025, 3, 1)

    def topups(balance: int) -> pl.DataFrame:
        bal = prof.select("customer_id", pl.lit(balance, pl.Int64).alias("balance"))
        return prepaid_topups(county, day, bal, billed_to).select("customer_id", "amount").join(
            prof, on="customer_id")

    def share(frame: pl.DataFrame, habit: str) -> float:
        return (frame["habit"] == habit).sum() / (prof["habit"] == habit).sum()

    # plenty of credit: nobody tops up
    assert topups(-10_000_000).height == 0
    # 40 yuan of credit left before this month's usage: most planners top up (those who wait
    # for the warning too), hardly any lapser
    low = topups(-4000)
    assert share(low, "planner") > 0.6 and share(low, "on_warning") > 0.3
    assert share(low, "lapser") < 0.25
    assert (low["amount"] > 0).all() and (low["amount"] % 1000 == 0).all()
    # 300 yuan in debt: every lapser tops up now, paying off the debt and more
    deep = topups(30_000).filter(pl.col("habit") == "lapser")
    assert share(deep, "lapser") > 0.95
    assert (deep["amount"] > 30_000).all()
    # deterministic for (seed, day, balances); another day draws again
    zero = prof.select("customer_id", pl.lit(0, pl.Int64).alias("balance"))
    again = prepaid_topups(county, day, zero, billed_to)
    assert again.equals(prepaid_topups(county, day, zero, billed_to))
    assert not prepaid_topups(county, day + timedelta(days=1), zero, billed_to).equals(again)
    with pytest.raises(ValueError):
        prepaid_topups(county, day, zero, date(2025, 3, 2))
