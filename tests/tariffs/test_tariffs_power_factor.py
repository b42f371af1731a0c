"""Power factor: exact integer computation and the three standard tables at every band edge."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, getcontext

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dianfei.core.clock import Period
from dianfei.tariffs.models import FlatEnergy, TariffVersion, Usage
from dianfei.tariffs.power_factor import power_factor_hundredths, standard_tables
from dianfei.tariffs.rating_columnar import power_factor_expr
from dianfei.tariffs.rating_scalar import rate

# (standard, PF, percent): the edges of every band of (83)水电财字第215号.
EDGES = [
    ("0.90", "1.00", "-0.75"), ("0.90", "0.95", "-0.75"), ("0.90", "0.94", "-0.60"),
    ("0.90", "0.91", "-0.15"), ("0.90", "0.90", "0.00"), ("0.90", "0.89", "0.50"),
    ("0.90", "0.70", "10.00"), ("0.90", "0.69", "11.00"), ("0.90", "0.65", "15.00"),
    ("0.90", "0.64", "17.00"), ("0.90", "0.60", "25.00"),
    ("0.85", "1.00", "-1.10"), ("0.85", "0.94", "-1.10"), ("0.85", "0.93", "-0.95"),
    ("0.85", "0.92", "-0.80"), ("0.85", "0.91", "-0.65"), ("0.85", "0.90", "-0.50"),
    ("0.85", "0.86", "-0.10"), ("0.85", "0.85", "0.00"), ("0.85", "0.84", "0.50"),
    ("0.85", "0.65", "10.00"), ("0.85", "0.64", "11.00"), ("0.85", "0.60", "15.00"),
    ("0.85", "0.59", "17.00"),
    ("0.80", "1.00", "-1.30"), ("0.80", "0.92", "-1.30"), ("0.80", "0.91", "-1.15"),
    ("0.80", "0.90", "-1.00"), ("0.80", "0.81", "-0.10"), ("0.80", "0.80", "0.00"),
    ("0.80", "0.79", "0.50"), ("0.80", "0.60", "10.00"), ("0.80", "0.59", "11.00"),
    ("0.80", "0.55", "15.00"), ("0.80", "0.54", "17.00"),
]


@pytest.mark.parametrize(("standard", "pf", "percent"), EDGES)
def test_table_edges(standard: str, pf: str, percent: str) -> None:
    table = standard_tables()[standard]
    assert table.percent(int(Decimal(pf) * 100)) == int(Decimal(percent) * 100)


def _reference(p: int, q: int) -> int:
    """PF in hundredths with 60-digit decimals: the spec's formula, done slowly."""
    if p == 0 and q == 0:
        return 100
    getcontext().prec = 60
    x = Decimal(p) / (Decimal(p * p + q * q)).sqrt()
    return int((x * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_exact_pf_matches_high_precision_reference(p: int, q: int) -> None:
    assert power_factor_hundredths(p, q) == _reference(p, q)


def test_pf_known_values_and_columnar_agrees() -> None:
    pairs = [(3, 4), (4, 3), (0, 0), (0, 5), (5, 0), (10_000_00, 3_000_00), (1, 1),
             (10**12, 10**12 + 7), (999_999, 1)]
    expected = [60, 80, 100, 0, 100, 96, 71, 71, 100]
    assert [power_factor_hundredths(p, q) for p, q in pairs] == expected
    frame = pl.DataFrame({"p": [p for p, _ in pairs], "q": [q for _, q in pairs]})
    got = frame.select(power_factor_expr(pl.col("p"), pl.col("q")).alias("pf"))["pf"]
    assert got.to_list() == expected


def _version(standard: str) -> TariffVersion:
    return TariffVersion("t", "t", "industrial", date(2000, 1, 1), None, "test",
                         FlatEnergy(10_000), pf_standard=standard)


def test_pf_adjustment_rounds_ties_away_from_zero() -> None:
    period = Period(2026, 3)
    # kWh 10 at 1.0000 = 10.00 yuan; kvarh 3 → PF 0.96 → −0.75 %: 10.00 × −0.0075 = −0.075
    # → −0.08 (the tie goes away from zero).
    lines = rate(_version("0.90"), period, Usage(kwh=Decimal(10), kvarh=Decimal(3)))
    pf = lines[-1]
    assert (pf.code, pf.quantity, pf.unit_price, pf.amount) == ("pf_adjustment", 1000, -75, -8)
    # kWh 1 = 1.00 yuan; PF 0.89 needs kvarh/kWh ≈ 0.5123: 1.00 × +0.5 % = 0.005 → 0.01.
    lines = rate(_version("0.90"), period, Usage(kwh=Decimal(1), kvarh=Decimal("0.51")))
    assert (lines[-1].power_factor, lines[-1].percent, lines[-1].amount) == (89, 50, 1)
