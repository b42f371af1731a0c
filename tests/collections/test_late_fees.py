"""Late fees (电费违约金): the one-shot formula, the CLI, and daily accrual that sums to it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.collections.late_fees import (
    accrue,
    accrue_frame,
    late_fee,
    load_rules,
    rule_for,
)
from dianfei.core.errors import ValidationError


def test_residential_one_per_mille_per_day() -> None:
    fee = late_fee("residential", 10_000, date(2026, 1, 15), date(2026, 2, 14))
    assert fee.to_json() == {"days": 30, "rate_per_day": "0.001", "amount": "3.00"}


def test_minimum_one_yuan_only_when_overdue() -> None:
    assert late_fee("residential", 10_000, date(2026, 1, 15), date(2026, 1, 16)).to_json() == {
        "days": 1, "rate_per_day": "0.001", "amount": "1.00"}
    # paid on or before the due date: no fee and no minimum
    assert late_fee("residential", 10_000, date(2026, 1, 15), date(2026, 1, 15)).amount_fen == 0
    assert late_fee("residential", 10_000, date(2026, 1, 15), date(2026, 1, 1)).days == 0


def test_total_rounded_once_half_up() -> None:
    # 1234.55 yuan × 0.002 × 3 = 7.4073 → 7.41 ; 333.35 × 0.001 × 15 = 5.00025 → 5.00
    assert late_fee("commercial", 123_455, date(2026, 3, 1), date(2026, 3, 4)).amount_fen == 741
    assert late_fee("residential", 33_335, date(2026, 3, 1), date(2026, 3, 16)).amount_fen == 500
    # 0.005 fen per day would round to 0 every day; rounding once gives the true total
    assert late_fee("residential", 250_000, date(2026, 3, 1), date(2026, 3, 3)).amount_fen == 500


def test_cross_year_split_at_three_per_mille() -> None:
    # due 2025-12-20, paid 2026-01-10: 11 days in 2025 at 2‰, 10 days in 2026 at 3‰
    fee = late_fee("industrial", 1_234_567, date(2025, 12, 20), date(2026, 1, 10))
    assert (fee.days, fee.current_days, fee.carried_days) == (21, 11, 10)
    assert fee.to_json() == {"days": 21, "rate_per_day": "0.002476", "amount": "641.97"}
    # residential stays at 1‰ across the year end
    assert late_fee("residential", 100_000, date(2025, 12, 20), date(2026, 1, 10)).to_json() == {
        "days": 21, "rate_per_day": "0.001", "amount": "21.00"}
    # wholly in the following year: 3‰
    fee = late_fee("agricultural", 100_000, date(2024, 12, 31), date(2025, 1, 5))
    assert fee.to_json() == {"days": 5, "rate_per_day": "0.003", "amount": "15.00"}


def test_unknown_class_and_negative_amount_refused() -> None:
    with pytest.raises(ValidationError, match="customer class"):
        late_fee("household", 100, date(2026, 1, 1), date(2026, 1, 5))
    with pytest.raises(ValidationError, match="negative"):
        late_fee("residential", -1, date(2026, 1, 1), date(2026, 1, 5))


def test_rule_versions_cite_sources_and_do_not_overlap(tmp_path) -> None:  # type: ignore[no-untyped-def]
    versions = load_rules()
    assert all(v.source for v in versions)
    assert rule_for(date(2024, 6, 1)).effective_from == date(2024, 6, 1)
    bad = tmp_path / "lf.toml"
    bad.write_text('[[version]]\neffective_from = "2020-01-01"\nsource = "x"\n'
                   '[version.rates.default]\ncurrent_year = "0.002"\ncarried_over = "0.003"\n'
                   '[[version]]\neffective_from = "2021-01-01"\nsource = "y"\n'
                   '[version.rates.default]\ncurrent_year = "0.002"\ncarried_over = "0.003"\n')
    with pytest.raises(ValidationError, match="overlap"):
        load_rules(bad)
    bad.write_text('[[version]]\neffective_from = "2020-01-01"\nsource = "x"\n'
                   '[version.rates.default]\ncurrent_year = "2"\ncarried_over = "0.003"\n')
    with pytest.raises(ValidationError, match="above 1%"):
        load_rules(bad)


def test_grace_period_counts_from_the_due_date(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "lf.toml"
    f.write_text('[[version]]\neffective_from = "2020-01-01"\nsource = "contract"\ngrace_days = 3\n'
                 'minimum = "1.00"\n[version.rates.default]\ncurrent_year = "0.001"\n'
                 'carried_over = "0.001"\n')
    rule = load_rules(f)[0]
    assert late_fee("residential", 500_000, date(2026, 1, 1), date(2026, 1, 4), rule).amount_fen == 0
    assert late_fee("residential", 500_000, date(2026, 1, 1), date(2026, 1, 5), rule).amount_fen == 2000


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], capture_output=True, text=True,
                          check=False)


def test_cli_prints_exactly_the_three_keys() -> None:
    # how fast it answers (the contract: < 0.5 s) is measured by `python -m bench.cli_startup`
    res = _cli("late-fee", "--customer-class", "commercial", "--amount", "1000.00",
               "--due-date", "2026-03-01", "--paid-date", "2026-03-11", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"days": 10, "rate_per_day": "0.002", "amount": "20.00"}
    bad = _cli("late-fee", "--customer-class", "residential", "--amount", "abc",
               "--due-date", "2026-03-01", "--paid-date", "2026-03-11", "--json")
    assert bad.returncode == 2 and "--amount" in bad.stderr and bad.stdout == ""


def test_cli_imports_nothing_heavy() -> None:
    code = ("import sys; from dianfei.cli.main import app; "
            "print(sorted(m for m in ('polars', 'sqlalchemy', 'numpy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


# --- daily accrual sums to the one-shot formula --------------------------------------------------

classes = st.sampled_from(["residential", "commercial", "large_industry"])


@st.composite
def schedules(draw):  # type: ignore[no-untyped-def]
    """A bill, its due date, and payments (day offset from due, fen) that may leave it open."""
    amount = draw(st.integers(min_value=1, max_value=5_000_000))
    due = date(2025, 10, 1) + timedelta(days=draw(st.integers(0, 120)))
    n = draw(st.integers(0, 4))
    offsets = sorted(draw(st.lists(st.integers(-5, 200), min_size=n, max_size=n)))
    payments: list[tuple[date, int]] = []
    left = amount
    for off in offsets:
        if left == 0:
            break
        part = draw(st.integers(1, left))
        payments.append((due + timedelta(days=off), part))
        left -= part
    horizon = due + timedelta(days=draw(st.integers(0, 400)))
    return amount, due, payments, horizon


def one_shot(cls: str, amount: int, due: date, payments: list[tuple[date, int]],
             horizon: date) -> int:
    """Each part bears the fee through its payment date (the unpaid rest through the horizon);
    the total is rounded once, with the minimum when anything is overdue."""
    from dianfei.collections.late_fees import cumulative_fee, raw_fee

    rule = rule_for(due)
    rates = rule.rates_for(cls)
    raw, left = 0, amount
    for day, part in payments:
        if day > horizon:
            break
        raw += raw_fee(rates, part, due, due, day)
        left -= part
    raw += raw_fee(rates, left, due, due, horizon)
    return cumulative_fee(rule, max(0, (horizon - due).days), raw)


def daily(cls: str, amount: int, due: date, payments: list[tuple[date, int]], horizon: date,
          step: int = 1) -> tuple[int, list[int]]:
    rule = rule_for(due)
    raw, posted, through, entries = 0, 0, due, []
    day = due
    while day < horizon:
        day = min(horizon, day + timedelta(days=step))
        # the principal owed at the start of the day: payments dated before it
        open_principal = amount - sum(p for d, p in payments if d < day)
        raw, delta = accrue(rule, cls, due, through, day, open_principal, raw, posted)
        through = day
        if delta:
            entries.append(delta)
            posted += delta
    return posted, entries


@settings(max_examples=300, deadline=None)
@given(classes, schedules())
def test_sum_of_daily_entries_equals_one_shot(cls: str, sched) -> None:  # type: ignore[no-untyped-def]
    amount, due, payments, horizon = sched
    total, entries = daily(cls, amount, due, payments, horizon)
    assert total == one_shot(cls, amount, due, payments, horizon)
    assert all(e > 0 for e in entries)


@settings(max_examples=100, deadline=None)
@given(classes, st.integers(1, 10_000_000), st.integers(0, 90), st.integers(0, 800))
def test_one_payment_matches_cli_formula(cls: str, amount: int, due_off: int, days: int) -> None:
    due = date(2025, 11, 1) + timedelta(days=due_off)
    paid = due + timedelta(days=days)
    total, _ = daily(cls, amount, due, [(paid, amount)], paid)
    assert total == late_fee(cls, amount, due, paid).amount_fen


def test_found_case_minimum_then_growth() -> None:
    # 50.00 yuan residential: 1.00 on day 1 (the minimum), nothing more until 1‰ × days passes
    # 1 yuan on day 21, then 0.05 a day: 45 days → 2.25 in all
    total, entries = daily("residential", 5_000, date(2026, 1, 1), [], date(2026, 2, 15))
    assert entries == [100] + [5] * 25 and total == 225


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(classes, schedules()), min_size=1, max_size=12))
def test_columnar_step_equals_scalar_step(cases) -> None:  # type: ignore[no-untyped-def]
    rows = []
    for cls, (amount, due, payments, horizon) in cases:
        through = due + timedelta(days=(horizon - due).days // 2)
        open_principal = amount - sum(p for d, p in payments if d < horizon)
        raw = amount * 1500 * max(0, (through - due).days)
        rows.append({"customer_class": cls, "due_on": due, "through": through,
                     "open_principal": open_principal, "raw": raw, "posted": 0, "day": horizon})
    for row in rows:
        frame = accrue_frame(pl.DataFrame([{k: v for k, v in row.items() if k != "day"}]),
                             row["day"])  # type: ignore[arg-type]
        rule = rule_for(row["due_on"])  # type: ignore[arg-type]
        new_raw, delta = accrue(rule, row["customer_class"], row["due_on"], row["through"],  # type: ignore[arg-type]
                                row["day"], row["open_principal"], row["raw"], 0)  # type: ignore[arg-type]
        assert frame["new_raw"][0] == new_raw and frame["delta"][0] == delta
