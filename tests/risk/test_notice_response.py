"""The response to notices (a risk feature): the share of notices followed by a payment within
RESPONSE_DAYS, with no look-ahead; and models trained before the feature existed keep scoring."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest
from bench.riskdata import sim_history
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.risk import features as feats_mod
from dianfei.risk import model as model_mod
from dianfei.risk.engine import model_scores, truncate
from dianfei.risk.features import RESPONSE_DAYS, History, features
from dianfei.risk.model import ArrearsModel, TrainConfig, train

D = date(2025, 7, 3)


def _history(notices: list[tuple[str, date]], payments: list[tuple[str, date]]) -> History:
    accounts = ["A", "B", "C"]
    bills = pl.DataFrame({"bill_id": [f"{a}-1" for a in accounts], "account_id": accounts,
                          "issued_on": [date(2025, 1, 5)] * 3, "due_on": [date(2025, 1, 20)] * 3,
                          "amount": [10_000] * 3, "kwh": [20_000] * 3})
    clearings = pl.DataFrame({"bill_id": [f"{a}-1" for a, _ in payments],
                              "account_id": [a for a, _ in payments],
                              "paid_on": [d for _, d in payments], "amount": [100] * len(payments),
                              "channel": ["counter"] * len(payments)},
                             schema={"bill_id": pl.String, "account_id": pl.String,
                                     "paid_on": pl.Date, "amount": pl.Int64, "channel": pl.String})
    return History(bills=bills, clearings=clearings,
                   accounts=pl.DataFrame({"account_id": accounts,
                                          "customer_class": ["residential"] * 3}),
                   notices=pl.DataFrame({"account_id": [a for a, _ in notices],
                                         "sent_on": [d for _, d in notices]},
                                        schema={"account_id": pl.String, "sent_on": pl.Date})
                   ).checked()


def test_the_share_of_notices_answered_by_a_payment_within_the_window() -> None:
    h = _history(
        notices=[("A", D - timedelta(days=40)),   # paid 2 days later: answered
                 ("A", D - timedelta(days=20)),   # paid 7 days later: too late
                 ("A", D - timedelta(days=3)),    # window still open at D: not counted
                 ("C", D - timedelta(days=400))],  # more than a year before D: not counted
        payments=[("A", D - timedelta(days=38)), ("A", D - timedelta(days=20 - RESPONSE_DAYS)),
                  ("A", D - timedelta(days=2)), ("C", D - timedelta(days=399))])
    got = dict(features(h, D).select("account_id", "notice_response").iter_rows())
    assert got == {"A": 0.5, "B": None, "C": None}


def test_a_payment_on_the_day_of_the_notice_answers_it() -> None:
    h = _history(notices=[("B", D - timedelta(days=10))], payments=[("B", D - timedelta(days=10))])
    assert features(h, D).filter(pl.col("account_id") == "B")["notice_response"].item() == 1.0


def test_no_look_ahead_for_the_response() -> None:
    # a payment on or after D never answers a notice as of D, nor does a notice sent on or after D
    h = _history(notices=[("A", D - timedelta(days=9))], payments=[])
    later = _history(notices=[("A", D - timedelta(days=9)), ("B", D)],
                     payments=[("A", D), ("A", D + timedelta(days=1))])
    assert features(h, D).equals(features(later, D))
    assert features(h, D).filter(pl.col("account_id") == "A")["notice_response"].item() == 0.0


@pytest.fixture(scope="module")
def history() -> History:
    h, _ = sim_history(600, 8, seed=7)
    # every account was sent a notice each month, some answered by their payments
    notices = (h.bills.select("account_id", (pl.col("issued_on") + timedelta(days=2))
                              .alias("sent_on")))
    return replace(h, notices=notices).checked()


def test_a_model_trained_before_the_feature_existed_keeps_scoring(
        history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(trees=20, min_data_in_leaf=20)
    old_numeric = tuple(c for c in feats_mod.NUMERIC if c != "notice_response")
    old = old_numeric + feats_mod.CATEGORICAL
    with monkeypatch.context() as m:
        m.setattr(model_mod, "NUMERIC", old_numeric)
        m.setattr(model_mod, "FEATURES", old)
        before = train(truncate(history, D), D, cfg)
    assert isinstance(before, ArrearsModel) and "notice_response" not in before.features
    now = train(truncate(history, D), D, cfg)
    assert isinstance(now, ArrearsModel) and "notice_response" in now.features
    f = features(history, D)
    for m_ in (before, now):
        scores = model_scores(f, m_, None, reasons="all")
        assert scores.height == f.height and scores["probability"].is_between(0, 1).all()
        assert m_.contributions(f.head(5)).shape == (5, len(m_.features))
    # the old model's reasons name only the features it knows
    words = model_scores(f, before, None, reasons="all")["reasons_en"].drop_nulls().to_list()
    assert words and not any("notices answered" in w for w in words)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(0, 420)), max_size=25),
       st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 420)), max_size=25))
def test_the_merge_equals_the_definition(sent: list[tuple[str, int]],
                                         paid: list[tuple[str, int]]) -> None:
    # the integer-key merge against the definition, for random notices and payments (the same
    # day, repeats, accounts without the other kind, dates on both sides of the windows)
    from dianfei.risk.features import _notice_response

    day0 = D - timedelta(days=410)
    notices = pl.DataFrame({"account_id": [a for a, _ in sent],
                            "sent_on": [day0 + timedelta(days=n) for _, n in sent]},
                           schema={"account_id": pl.String, "sent_on": pl.Date})
    pays = pl.DataFrame({"account_id": [a for a, _ in paid],
                         "paid_on": [day0 + timedelta(days=n) for _, n in paid]},
                        schema={"account_id": pl.String, "paid_on": pl.Date}
                        ).filter(pl.col("paid_on") < D)
    got = dict(_notice_response(notices, pays, D).iter_rows())
    want: dict[str, list[bool]] = {}
    for a, n in sent:
        s = day0 + timedelta(days=n)
        if D - timedelta(days=365) <= s < D - timedelta(days=RESPONSE_DAYS):
            want.setdefault(a, []).append(any(
                b == a and s <= p < s + timedelta(days=RESPONSE_DAYS) and p < D
                for b, p in ((b, day0 + timedelta(days=m)) for b, m in paid)))
    assert got == {a: sum(v) / len(v) for a, v in want.items()}
