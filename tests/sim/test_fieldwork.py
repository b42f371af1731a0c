"""The simulated outcomes of collectors' visits and calls follow the hidden behaviour."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from dianfei import sim
from dianfei.sim.fieldwork import OUTCOMES, PROMISE_HORIZON_DAYS, visit_outcomes

DAY = date(2025, 3, 3)


@pytest.fixture(scope="module")
def utility() -> sim.Utility:
    return sim.build_utility(3000, seed=11)


def _worked(u: sim.Utility, n: int | None = None) -> pl.DataFrame:
    c = u.customers if n is None else u.customers.head(n)
    return c.select("customer_id", pl.col("customer_id").alias("account_id"),
                    pl.lit(20_000, pl.Int64).alias("overdue"))


def _none() -> pl.DataFrame:
    return pl.DataFrame(schema={"account_id": pl.String, "paid_on": pl.Date, "amount": pl.Int64})


def test_same_outcome_whatever_the_subset_or_order(utility: sim.Utility) -> None:
    worked = _worked(utility, 600)
    whole = visit_outcomes(utility, DAY, worked, _none())
    part = visit_outcomes(utility, DAY, worked.reverse().head(100), _none())
    assert part.equals(whole.reverse().head(100))
    assert set(whole["outcome"].unique()) <= set(OUTCOMES)


def test_a_payment_coming_soon_is_promised_for_its_day_and_kept(utility: sim.Utility) -> None:
    worked = _worked(utility, 50)
    coming = DAY + timedelta(days=5)
    scheduled = worked.select("account_id", pl.lit(coming).alias("paid_on"),
                              pl.lit(7_000, pl.Int64).alias("amount"))
    out = visit_outcomes(utility, DAY, worked, scheduled)
    assert out["outcome"].to_list() == ["promise"] * 50
    assert out["promise_on"].to_list() == [coming] * 50
    assert out["promise_fen"].to_list() == [7_000] * 50  # what is coming, not the whole arrears
    assert out["promise_kept"].all()


def test_a_payment_beyond_the_horizon_is_not_a_kept_promise(utility: sim.Utility) -> None:
    worked = _worked(utility, 400)
    later = worked.select("account_id",
                          pl.lit(DAY + timedelta(days=PROMISE_HORIZON_DAYS + 1)).alias("paid_on"),
                          pl.lit(None, pl.Int64).alias("amount"))
    out = visit_outcomes(utility, DAY, worked, later)
    promises = out.filter(pl.col("outcome") == "promise")
    assert promises.height > 0
    assert not promises["promise_kept"].any()
    assert promises["promise_on"].to_list() == [DAY + timedelta(days=7)] * promises.height


def test_paying_today_is_paid_and_behaviour_shapes_the_rest(utility: sim.Utility) -> None:
    worked = _worked(utility)
    today = worked.head(10).select("account_id", pl.lit(DAY).alias("paid_on"),
                                   pl.lit(None, pl.Int64).alias("amount"))
    out = visit_outcomes(utility, DAY, worked, today)
    assert out.head(10)["outcome"].to_list() == ["paid"] * 10
    beh = utility.customers.select("customer_id", "behaviour")
    rest = out.tail(out.height - 10).join(beh, on="customer_id")
    vacant = rest.filter(pl.col("behaviour") == "vacant")
    if vacant.height:
        assert set(vacant["outcome"].unique()) <= {"vacant", "wrong_contact", "promise"}
    hardship = rest.filter(pl.col("outcome") == "hardship")
    assert hardship["plan_kept"].null_count() == 0
    disputes = rest.filter(pl.col("outcome") == "dispute")
    assert disputes["decide_after"].is_between(1, 4).all()
    scores = out["survey"].drop_nulls()
    assert scores.len() > 0 and scores.is_between(1, 5).all()


def test_nothing_worked_is_an_empty_frame(utility: sim.Utility) -> None:
    out = visit_outcomes(utility, DAY, _worked(utility, 0), _none())
    assert out.height == 0 and "outcome" in out.columns
