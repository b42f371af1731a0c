"""The payment plan policy (plans.toml) and the schedule arithmetic: instalments add up to the
total to the fen, a suggested schedule always keeps to its policy row, and each refusal names
the rule and the limit."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.collections.plan_policy import (
    PlanRules,
    check_plan,
    parse_policy,
    plan_policy,
    spread,
    suggest,
)
from dianfei.core.errors import ValidationError

TODAY = date(2026, 2, 2)


def rules(**over: object) -> PlanRules:
    base = plan_policy().rules_for("residential", "standard")
    return PlanRules(**{**base.__dict__, **over})  # type: ignore[arg-type]


def monthly(n: int, start: int = 30) -> list[date]:
    return [TODAY + timedelta(days=start * i) for i in range(1, n + 1)]


def test_packaged_policy_rows() -> None:
    pol = plan_policy()
    std = pol.rules_for("residential", "standard")
    low = pol.rules_for("residential", "low_income")
    assert (std.row, std.instalments_max, std.min_instalment, std.grace_days) == (
        "residential.standard", 6, 5000, 5)
    assert low.approval_always and low.needs_approval(1)
    assert not std.needs_approval(200_000) and std.needs_approval(200_001)
    # a class without its own row takes the "*" row of its segment
    assert pol.rules_for("commercial", "standard").row == "*.standard"
    with pytest.raises(ValidationError, match="no payment plan policy for class 'commercial' "
                                              "segment 'students'"):
        pol.rules_for("commercial", "students")


def test_policy_file_errors_are_named() -> None:
    row = {"down_payment_min": "0.2", "instalments_min": 4, "instalments_max": 2,
           "max_span_days": 90, "min_instalment": "10.00", "approval_above": "0",
           "grace_days": 0, "interval_days": 30, "down_payment_days": 7}
    with pytest.raises(ValidationError, match=r"\[residential.standard\]: instalments_min 4 > "
                                              "instalments_max 2"):
        parse_policy({"defaults": {"unbilled_due_days": 20}, "residential": {"standard": row}}, "p")
    with pytest.raises(ValidationError, match="unknown rule"):
        parse_policy({"defaults": {"unbilled_due_days": 20},
                      "residential": {"standard": {**row, "instalments_min": 1, "typo": 1}}}, "p")


@given(amount=st.integers(0, 10**12), n=st.integers(1, 60))
def test_spread_adds_up_exactly_and_differs_by_at_most_a_fen(amount: int, n: int) -> None:
    parts = spread(amount, n)
    assert len(parts) == n and sum(parts) == amount
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, reverse=True)  # the extra fen come first


@settings(max_examples=300)
@given(total=st.integers(1, 10**9), share=st.sampled_from(["0.00", "0.10", "0.20", "0.33", "0.5"]),
       n_min=st.integers(1, 4), extra=st.integers(0, 10), min_inst=st.integers(0, 100_000),
       span=st.integers(30, 400), interval=st.integers(7, 45))
def test_a_suggested_schedule_keeps_to_its_policy(total: int, share: str, n_min: int, extra: int,
                                                  min_inst: int, span: int, interval: int) -> None:
    from decimal import Decimal

    r = rules(down_payment_min=Decimal(share), instalments_min=n_min,
              instalments_max=n_min + extra, min_instalment=min_inst, max_span_days=span,
              interval_days=interval)
    dates = monthly(r.instalments_max, interval)
    try:
        down, inst = suggest(r, total, TODAY, dates)
    except ValidationError as exc:
        # refused only when the policy cannot be met, naming the rule that cannot
        assert "min_instalment" in str(exc) or "max_span_days" in str(exc)
        rest = total - r.min_down_payment(total)
        fit = len([d for d in dates if d <= TODAY + timedelta(days=span)])
        assert min(fit, rest // min_inst if min_inst else fit) < n_min
        return
    assert down + sum(a for _, a in inst) == total
    assert down == r.min_down_payment(total) and down * 1 >= Decimal(share) * total
    check_plan(r, total=total, down_payment=down, instalments=inst, today=TODAY)


@pytest.mark.parametrize(("down", "inst", "rule"), [
    (1_000, [(d, 4_500) for d in monthly(2)], "down_payment_min — the down payment 10.00 is "
                                              "below 20.00"),
    (2_000, [(monthly(1)[0], 8_000)], "instalments_min — 1 instalments, at least 2"),
    (2_000, [(d, 1_000) for d in monthly(8)], "instalments_max — 8 instalments, at most 6"),
    (2_000, [(TODAY + timedelta(days=30), 4_000), (TODAY + timedelta(days=200), 4_000)],
     "max_span_days — the last instalment falls due 2026-08-21, after 2026-08-11"),
    (2_000, [(monthly(2)[0], 7_000), (monthly(2)[1], 1_000)],
     "min_instalment — instalment 2 is 10.00 yuan, the smallest allowed is 50.00"),
])
def test_refusals_name_the_rule_and_the_limit(down: int, inst: list[tuple[date, int]],
                                              rule: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check_plan(rules(), total=10_000, down_payment=down, instalments=inst, today=TODAY)
    assert str(exc.value).startswith(f"plan refused by policy residential.standard: {rule}")


def test_instalments_must_add_up_to_the_total() -> None:
    with pytest.raises(ValidationError, match=r"add up to 199\.99 yuan, the plan's total is 200\.00"):
        check_plan(rules(), total=20_000, down_payment=4_000,
                   instalments=[(d, a) for d, a in zip(monthly(2), [8_000, 7_999], strict=True)],
                   today=TODAY)
