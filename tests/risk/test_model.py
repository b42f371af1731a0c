"""The arrears model on the synthetic county's history (no database): backtest, honesty (no
look-ahead), the rules fallback, awkward histories, and that low-income or protected status
never moves a score."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from bench.riskdata import sim_history

from dianfei.core.errors import ValidationError
from dianfei.risk.engine import backtest, model_scores, score_frame, truncate
from dianfei.risk.features import History, features
from dianfei.risk.model import ArrearsModel, TooShort, TrainConfig, train

CFG = TrainConfig(trees=30, min_data_in_leaf=20)
#: the issue date of the 2025-06 bills in the simulated history
D = date(2025, 7, 3)
KEYS = {"n", "positives", "auc", "pr_auc", "top_decile_lift"}


@pytest.fixture(scope="module")
def history() -> History:
    h, _ = sim_history(600, 8, seed=7)
    return h


def _json(out: dict[str, object]) -> dict[str, object]:
    """What the CLI prints: must be strict JSON (no NaN)."""
    return json.loads(json.dumps(out, allow_nan=False))


def test_backtest_learns_from_the_past_only(history: History) -> None:
    out = _json(backtest(history, D, config=CFG))
    assert set(out) >= KEYS and out["scorer"] == "lightgbm"
    assert out["n"] == history.bills.filter((pl.col("issued_on") == D) & (pl.col("amount") > 0)).height
    assert 0 < out["positives"] < out["n"]
    assert out["auc"] > 0.8 and out["pr_auc"] > 0.6 and out["top_decile_lift"] > 1.5
    assert out["train_window"][1] == str(D - timedelta(days=1))


def test_no_look_ahead_change_everything_after_d(history: History) -> None:
    """Features and scores as of D are identical when everything dated D or later is changed:
    later bills get other amounts and kWh, later payments vanish, new ones appear, bills are
    cancelled after D, notices arrive."""
    rng = np.random.default_rng(3)
    b = history.bills
    later = pl.col("issued_on") >= D
    bills = b.with_columns(
        pl.when(later).then(pl.Series(rng.integers(1, 10**6, b.height))).otherwise(pl.col("amount"))
        .alias("amount"),
        pl.when(later).then(pl.lit(0)).otherwise(pl.col("kwh")).alias("kwh"),
        pl.when(pl.col("bill_id").str.ends_with("3")).then(pl.lit(D + timedelta(days=3)))
        .otherwise(pl.col("cancelled_on")).alias("cancelled_on"))
    c = history.clearings
    extra = b.filter(pl.col("issued_on") < D).select(
        "bill_id", "account_id", pl.lit(D).alias("paid_on"), pl.col("amount"),
        pl.lit("counter").alias("channel"))
    clearings = pl.concat([c.filter(pl.col("paid_on") < D), extra])
    notices = pl.DataFrame({"account_id": b["account_id"].unique().sort(),
                            "sent_on": [D + timedelta(days=1)] * b["account_id"].n_unique()})
    changed = replace(history, bills=bills, clearings=clearings, notices=notices).checked()

    assert features(changed, D).equals(features(history, D))
    m1, m2 = train(truncate(history, D), D, CFG), train(truncate(changed, D), D, CFG)
    assert isinstance(m1, ArrearsModel) and isinstance(m2, ArrearsModel)
    f = features(history, D)
    p1 = model_scores(f, m1, None, reasons="all")
    p2 = model_scores(features(changed, D), m2, None, reasons="all")
    assert p1.equals(p2)


def test_low_income_and_protected_never_move_a_score(history: History) -> None:
    model = train(truncate(history, D), D, CFG)
    assert isinstance(model, ArrearsModel)
    flipped = replace(history, accounts=history.accounts.with_columns(
        ~pl.col("low_income").fill_null(False), ~pl.col("protected").fill_null(False))).checked()
    a = score_frame(history, D, ({"version": "t"}, model), reasons="all")
    b = score_frame(flipped, D, ({"version": "t"}, model), reasons="all")
    cols = ["account_id", "probability", "probability_30", "band", "reasons_zh", "reasons_en"]
    assert a.select(cols).equals(b.select(cols))
    assert (a["low_income"] != b["low_income"]).all()
    text = " ".join(a["reasons_en"].to_list() + a["reasons_zh"].to_list())
    assert "income" not in text.lower() and "低保" not in text and "protected" not in text


def test_a_short_history_is_scored_by_the_rules_and_says_so(history: History) -> None:
    first = date(2025, 2, 3)
    out = _json(backtest(history, first + timedelta(days=28), config=CFG))
    assert out["scorer"] == "rules" and "at least 2" in str(out["scorer_reason"])
    assert set(out) >= KEYS
    assert isinstance(train(truncate(history, first), first, CFG), TooShort)


def test_a_single_month_of_history(history: History) -> None:
    one = replace(history, bills=history.bills.filter(pl.col("issued_on") == date(2025, 2, 3))).checked()
    out = _json(backtest(one, date(2025, 2, 3), config=CFG))
    assert out["scorer"] == "rules" and out["n"] > 0


def test_all_paid_on_time_gives_no_auc_and_says_why(history: History) -> None:
    on_time = history.bills.select("bill_id", "account_id", pl.col("issued_on").alias("paid_on"),
                                   "amount", pl.lit("bank").alias("channel"))
    h = replace(history, clearings=on_time).checked()
    out = _json(backtest(h, D, config=CFG))
    assert out["positives"] == 0 and out["auc"] is None and out["pr_auc"] is None
    assert out["top_decile_lift"] is None and "undefined" in str(out["note"])
    assert out["scorer"] == "rules"  # nothing to learn from one outcome


def test_bills_but_no_payments(history: History) -> None:
    h = replace(history, clearings=history.clearings.clear()).checked()
    out = _json(backtest(h, D, config=CFG))
    assert out["positives"] == out["n"] and out["auc"] is None and "undefined" in str(out["note"])


def test_payments_larger_than_the_bill_and_customers_without_bills(history: History) -> None:
    more = history.clearings.with_columns(pl.col("amount") * 3)
    accounts = pl.concat([history.accounts, history.accounts.head(5).with_columns(
        ("X" + pl.col("account_id")).alias("account_id"))])
    h = replace(history, clearings=more, accounts=accounts).checked()
    out = _json(backtest(h, D, config=CFG))
    assert out["n"] > 0
    f = features(h, D)
    assert f.filter(pl.col("account_id").str.starts_with("X"))["n_bills"].to_list() == [0.0] * 5


def test_a_date_without_bills_is_a_clear_error(history: History) -> None:
    with pytest.raises(ValidationError, match="no bill of a positive amount was issued on 2025-07-04"):
        backtest(history, D + timedelta(days=1), config=CFG)
    out = backtest(history, D - timedelta(days=2), config=CFG, window_days=5)
    assert out["n"] > 0


def test_model_round_trips_through_its_files(history: History, tmp_path: object) -> None:
    from pathlib import Path

    model = train(truncate(history, D), D, CFG)
    assert isinstance(model, ArrearsModel)
    where = Path(str(tmp_path)) / "m"
    model.save(where)
    again = ArrearsModel.load(where)
    f = features(history, D)
    assert model.predict(f).equals(again.predict(f))
    m = model.meta["metrics"]["late"]
    assert m["auc"] is not None and set(model.meta["valid_snapshots"]) and model.meta["n_valid"] > 0
