"""Strategy experiments: seeded random assignment with exact arm sizes, KPIs with clustered
95 % intervals, and the built-in uniform-vs-risk-driven dunning experiment on the sim."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei import insight_demo
from dianfei.core.errors import ValidationError
from dianfei.risk import experiments

ACCOUNTS = pl.Series("account_id", [f"C{i:05d}" for i in range(1000)])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), seed=st.integers(0, 2**32 - 1),
       shares=st.sampled_from([[0.1, 0.45, 0.45], [0.5, 0.5], [0.2, 0.3, 0.5], [1 / 3] * 3]))
def test_assignment_is_exact_and_reproducible(n: int, seed: int, shares: list[float]) -> None:
    arms = [(f"a{i}", s) for i, s in enumerate(shares)]
    if abs(sum(shares) - 1) > 1e-9:
        return
    ids = ACCOUNTS.head(n)
    got = experiments.assign(ids.reverse(), arms, seed)  # input order does not matter
    assert got.equals(experiments.assign(ids, arms, seed))
    assert sorted(got["account_id"].to_list()) == ids.to_list()
    counts = dict(got.group_by("arm").len().iter_rows())
    for arm, share in arms:
        assert abs(counts.get(arm, 0) - share * n) < 1


def test_a_different_seed_gives_a_different_assignment() -> None:
    arms = experiments.parse_arms("holdout:0.1,uniform:0.45,risk_driven:0.45")
    a = experiments.assign(ACCOUNTS, arms, 1)
    b = experiments.assign(ACCOUNTS, arms, 2)
    assert (a["arm"] != b["arm"]).sum() > 300
    assert dict(a.group_by("arm").len().iter_rows()) == {"holdout": 100, "uniform": 450,
                                                         "risk_driven": 450}


@pytest.mark.parametrize(("text", "message"), [
    ("a:0.5", "at least two arms"),
    ("a:0.5,a:0.5", "at least two arms"),
    ("a:0.5,b:0.4", "add up to 0.9"),
    ("A:0.5,b:0.5", "arm name 'A'"),
    ("a:x,b:0.5", "not a number"),
    ("a:1.5,b:-0.5", "between 0 and 1"),
])
def test_bad_arms_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        experiments.parse_arms(text)


def test_kpis_with_intervals_on_known_figures() -> None:
    # two arms of 200 accounts, one 100-yuan bill each; arm b collects 90 % of its bills
    rows = []
    for i in range(400):
        arm = "a" if i < 200 else "b"
        paid = arm == "a" or i % 10 != 0
        rows.append({"account_id": f"C{i}", "arm": arm, "amount": 10_000,
                     "issued_on": date(2026, 1, 3), "due_on": date(2026, 1, 18),
                     "collected": 10_000 if paid else 0,
                     "paid_in_full_on": date(2026, 1, 13) if paid else None})
    bills = pl.DataFrame(rows)
    contacts = pl.DataFrame({"account_id": ["C200", "C210"], "arm": ["b", "b"], "cost": [5, 200]})
    out = experiments.arm_kpis(bills, contacts, date(2026, 3, 1))
    a, b = out["arms"]["a"], out["arms"]["b"]
    assert a["collection_rate"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert b["collection_rate"]["value"] == 0.9
    # binomial: √(0.9·0.1/200) = 0.0212 → ± 0.0416
    assert b["collection_rate"]["low"] == pytest.approx(0.9 - 0.0416, abs=2e-4)
    assert b["avg_payment_days"]["value"] == 10.0
    assert (a["billed"], b["collected"], b["contacts"]) == ("20000.00", "18000.00", 2)
    assert b["contact_cost_per_account"]["value"] == "0.01"  # 2.05 yuan over 200 accounts
    assert out["champion"] == "a"
    d = out["differences"]["b"]["collection_rate"]
    assert d["value"] == -0.1 and d["low"] < -0.1 < d["high"] < 0


def test_builtin_experiment_uniform_vs_risk_driven_dunning() -> None:
    report = insight_demo.run(customers=1500, seed=7, months=4)
    arms = report["arms"]
    assert set(arms) == {"holdout", "uniform", "risk_driven"}
    assert report["champion"] == "uniform"
    assert arms["holdout"]["contacts"] == 0 and arms["uniform"]["contacts"] > 0
    for k in arms.values():
        rate = k["collection_rate"]
        assert rate["low"] <= rate["value"] <= rate["high"]
        assert 0.8 <= rate["value"] <= 1.0
    # no dunning at all: nobody is ever stopped, so the chronic non-payers never pay
    assert arms["holdout"]["overdue_rate"]["value"] > arms["uniform"]["overdue_rate"]["value"]
    assert set(report["differences"]) == {"holdout", "risk_driven"}
    assert report["setup"]["bands"].keys() <= {"low", "medium", "high"}
