"""Hand-computed bills on the presets; the arithmetic is written beside each expectation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dianfei.core.errors import TariffError

from .helpers import amounts, q


def test_annual_tier_crossing_inside_one_bill(catalogue):
    # ytd 2700 + 300 kWh: 60 kWh left in tier 1, 240 kWh in tier 2.
    r = q(catalogue, "cn-zj-residential", "2026-03", "300", ytd_kwh="2700")
    assert amounts(r) == {
        "energy_tier1": "32.28",   # 60 × 0.5380 = 32.28
        "energy_tier2": "141.12",  # 240 × 0.5880 = 141.12
    }
    assert r["total"] == "173.40"
    assert r["version"] == "2012-07-01"
    tier1 = r["lines"][0]
    assert tier1 == {"code": "energy_tier1", "description": "第一档电量 Tier 1 energy",
                     "quantity": "60.00", "unit": "kWh", "unit_price": "0.5380",
                     "amount": "32.28"}


def test_crossing_both_thresholds(catalogue):
    # (2700, 4900]: 60 in tier 1, 2040 in tier 2 (2760..4800), 100 in tier 3.
    r = q(catalogue, "cn-zj-residential", "2026-11", "2200", ytd_kwh="2700")
    assert amounts(r) == {
        "energy_tier1": "32.28",     # 60 × 0.5380
        "energy_tier2": "1199.52",   # 2040 × 0.5880
        "energy_tier3": "83.80",     # 100 × 0.8380
    }
    assert r["total"] == "1315.60"


def test_year_boundary_resets_the_annual_tiers(catalogue):
    # December: ytd 4900 puts everything in tier 3; January: ytd is 0 again → tier 1.
    dec = q(catalogue, "cn-zj-residential", "2025-12", "300", ytd_kwh="4900")
    jan = q(catalogue, "cn-zj-residential", "2026-01", "300", ytd_kwh="0")
    assert amounts(dec) == {"energy_tier1": "0.00", "energy_tier3": "251.40"}  # 300 × 0.8380
    assert amounts(jan) == {"energy_tier1": "161.40"}                          # 300 × 0.5380


def test_exactly_on_the_threshold_stays_in_tier_1(catalogue):
    # "≤ 2760" is tier 1: ytd 2460 + 300 ends exactly on 2760.
    r = q(catalogue, "cn-zj-residential", "2026-09", "300", ytd_kwh="2460")
    assert amounts(r) == {"energy_tier1": "161.40"}


def test_zero_usage(catalogue):
    r = q(catalogue, "cn-zj-residential", "2026-03", "0", low_income=True)
    assert [ln["code"] for ln in r["lines"]] == ["energy_tier1"]
    assert r["total"] == "0.00"


def test_low_income_allowance(catalogue):
    # 100 × 0.5380 = 53.80; 10 free kWh credited at 0.5380 = −5.38.
    r = q(catalogue, "cn-zj-residential", "2026-03", "100", low_income=True)
    assert amounts(r) == {"energy_tier1": "53.80", "low_income_allowance": "-5.38"}
    allowance = r["lines"][-1]
    assert allowance["quantity"] == "10.00" and allowance["unit_price"] == "-0.5380"
    assert allowance["unit"] == "kWh"
    assert r["total"] == "48.42"
    # Not low-income: no allowance line.
    assert "low_income_allowance" not in amounts(q(catalogue, "cn-zj-residential", "2026-03",
                                                  "100"))


def test_low_income_allowance_capped_at_usage_and_tie_rounding(catalogue):
    # 2.50 × 0.5380 = 1.345 → 1.35 (tie, half-up); credit −1.345 → −1.35 (away from zero).
    r = q(catalogue, "cn-zj-residential", "2026-03", "2.50", low_income=True)
    assert amounts(r) == {"energy_tier1": "1.35", "low_income_allowance": "-1.35"}
    assert r["lines"][-1]["quantity"] == "2.50"
    assert r["total"] == "0.00"


def test_exact_tie_rounds_half_up(catalogue):
    # 6.25 × 0.5880 = 3.675 → 3.68.
    r = q(catalogue, "cn-zj-residential", "2026-03", "6.25", ytd_kwh="2760")
    assert amounts(r) == {"energy_tier1": "0.00", "energy_tier2": "3.68"}


def test_tou_with_tier_increments(catalogue):
    # Peak 200 × 0.5680 = 113.60; valley 100 × 0.2880 = 28.80;
    # 240 of the 300 kWh fall in tier 2 (ytd 2700): 240 × 0.05 = 12.00.
    r = q(catalogue, "cn-zj-residential-tou", "2026-03", "300", ytd_kwh="2700",
          peak_kwh="200", valley_kwh="100")
    assert amounts(r) == {"energy_peak": "113.60", "energy_valley": "28.80",
                          "energy_tier2_increment": "12.00"}
    assert r["total"] == "154.40"
    # ytd 4700: 100 kWh in tier 2 (+0.05 → 5.00), 200 kWh in tier 3 (+0.30 → 60.00);
    # the valley register is missing and gets the remainder 300 − 200 = 100.
    r = q(catalogue, "cn-zj-residential-tou", "2026-03", "300", ytd_kwh="4700",
          peak_kwh="200")
    assert amounts(r) == {"energy_peak": "113.60", "energy_valley": "28.80",
                          "energy_tier2_increment": "5.00", "energy_tier3_increment": "60.00"}
    assert r["total"] == "207.40"


def test_tou_register_errors(catalogue):
    with pytest.raises(TariffError, match="sum to"):
        q(catalogue, "cn-zj-residential-tou", "2026-03", "300", peak_kwh="200",
          valley_kwh="50")
    with pytest.raises(TariffError) as err:
        q(catalogue, "cn-large-industry-example", "2026-03", "300", peak_kwh="200",
          capacity_kva="100")
    assert err.value.reason == "tou_registers_missing"  # type: ignore[attr-defined]


def test_two_part_by_capacity(catalogue):
    # basic 400 kVA × 30 = 12000.00; sharp 1000 × 1.21 = 1210.00; peak 4000 × 1.00 = 4000.00;
    # flat 3000 × 0.67 = 2010.00; valley (remainder) 2000 × 0.32 = 640.00;
    # funds 10000 × (0.0190 + 0.0019 + 0.0062) = 190.00 + 19.00 + 62.00.
    r = q(catalogue, "cn-large-industry-example", "2026-03", "10000", sharp_kwh="1000",
          peak_kwh="4000", flat_kwh="3000", capacity_kva="400")
    assert amounts(r) == {
        "basic_capacity": "12000.00", "energy_sharp": "1210.00", "energy_peak": "4000.00",
        "energy_flat": "2010.00", "energy_valley": "640.00",
        "fund_renewable_energy": "190.00", "fund_major_water_projects": "19.00",
        "fund_reservoir_resettlement": "62.00",
    }
    assert r["lines"][0]["unit"] == "kVA"
    assert r["total"] == "20131.00"


def test_two_part_by_demand_and_old_version(catalogue):
    # 2023-05 is still the first version: sharp 1.15, peak 0.95, flat 0.65, valley 0.33.
    # basic 250 kW × 40 = 10000.00; 100 × 1.15 + 400 × 0.95 + 300 × 0.65 + 200 × 0.33
    # = 115.00 + 380.00 + 195.00 + 66.00; funds 1000 × 0.0271 = 19.00 + 1.90 + 6.20.
    r = q(catalogue, "cn-large-industry-example", "2023-05", "1000", sharp_kwh="100",
          peak_kwh="400", flat_kwh="300", valley_kwh="200", max_demand_kw="250")
    assert r["version"] == "2022-01-01"
    assert amounts(r) == {
        "basic_demand": "10000.00", "energy_sharp": "115.00", "energy_peak": "380.00",
        "energy_flat": "195.00", "energy_valley": "66.00",
        "fund_renewable_energy": "19.00", "fund_major_water_projects": "1.90",
        "fund_reservoir_resettlement": "6.20",
    }
    assert r["lines"][0]["unit"] == "kW"
    assert r["total"] == "10783.10"


def test_two_part_needs_exactly_one_basis(catalogue):
    with pytest.raises(TariffError, match="two-part"):
        q(catalogue, "cn-large-industry-example", "2026-03", "10", valley_kwh="10",
          sharp_kwh="0", peak_kwh="0", flat_kwh="0")
    with pytest.raises(TariffError, match="not both"):
        q(catalogue, "cn-large-industry-example", "2026-03", "10", valley_kwh="10",
          sharp_kwh="0", peak_kwh="0", flat_kwh="0", capacity_kva="1", max_demand_kw="1")


def test_pf_adjustment_on_two_part_bill(catalogue):
    # PF = 10000/√(10000² + 3000²) = 0.9578 → 0.96 → −0.75 % (standard 0.90).
    # base = basic + energy = 12000 + 1210 + 4000 + 2010 + 640 = 19860.00 yuan;
    # 19860.00 × −0.0075 = −148.95. Funds are not in the base.
    r = q(catalogue, "cn-large-industry-example", "2026-03", "10000", sharp_kwh="1000",
          peak_kwh="4000", flat_kwh="3000", capacity_kva="400", kvarh="3000")
    pf = next(ln for ln in r["lines"] if ln["code"] == "pf_adjustment")
    assert pf == {"code": "pf_adjustment",
                  "description": "功率因数调整电费（考核标准0.90） Power-factor adjustment "
                                 "(standard 0.90)",
                  "quantity": "19860.00", "unit": "yuan", "unit_price": "-0.0075",
                  "amount": "-148.95", "power_factor": "0.96", "percent": "-0.75"}
    assert r["total"] == "19982.05"   # 20131.00 − 148.95


def test_pf_line_not_applicable_and_zero_energy(catalogue):
    r = q(catalogue, "cn-zj-residential", "2026-03", "100", kvarh="30")
    pf = r["lines"][-1]
    assert pf["code"] == "pf_adjustment" and "not applicable" in pf["description"]
    assert (pf["amount"], pf["percent"], pf["power_factor"]) == ("0.00", "0.00", "0.96")
    assert r["total"] == "53.80"
    # No energy at all: PF 1.00 by convention, the line is still there at the table's rate.
    r = q(catalogue, "cn-agricultural-irrigation", "2026-03", "0", kvarh="0")
    pf = r["lines"][-1]
    assert (pf["power_factor"], pf["percent"], pf["amount"]) == ("1.00", "-1.30", "0.00")
    # kWh 0 with kvarh > 0: PF 0.00 → 0.80 table: 15 + 2 × 55 = 125 %.
    r = q(catalogue, "cn-agricultural-irrigation", "2026-03", "0", kvarh="5")
    assert (r["lines"][-1]["power_factor"], r["lines"][-1]["percent"]) == ("0.00", "125.00")


def test_monthly_seasonal_tiers(catalogue):
    # July (summer): 260 × 0.5890 = 153.14, 40 × 0.6390 = 25.56.
    r = q(catalogue, "cn-gd-residential", "2026-07", "300", ytd_kwh="5000")
    assert amounts(r) == {"energy_tier1": "153.14", "energy_tier2": "25.56"}
    # January: 200 × 0.5890 = 117.80, 100 × 0.6390 = 63.90; ytd does not matter (monthly).
    r = q(catalogue, "cn-gd-residential", "2026-01", "300", ytd_kwh="5000")
    assert amounts(r) == {"energy_tier1": "117.80", "energy_tier2": "63.90"}
    # January, 450 kWh: 200 × 0.589 + 200 × 0.639 + 50 × 0.889 = 117.80 + 127.80 + 44.45.
    r = q(catalogue, "cn-gd-residential", "2026-01", "450")
    assert r["total"] == "290.05"


def test_fund_exemption_is_data(catalogue):
    # Agricultural: renewable surcharge exempt (no line); resettlement fund charged.
    # 1000 × 0.4750 = 475.00; 1000 × 0.0062 = 6.20.
    r = q(catalogue, "cn-agricultural-irrigation", "2026-03", "1000")
    assert amounts(r) == {"energy": "475.00", "fund_reservoir_resettlement": "6.20"}


def test_effective_dates_choose_the_version(catalogue):
    # Commercial: flat until 2021-11-30, TOU from 2021-12-01.
    r = q(catalogue, "cn-general-commercial", "2021-11", "100")
    assert amounts(r)["energy"] == "66.44"           # 100 × 0.6644
    r = q(catalogue, "cn-general-commercial", "2021-12", "100", peak_kwh="50",
          flat_kwh="30")
    assert amounts(r)["energy_valley"] == "6.38"     # remainder 20 × 0.3190
    with pytest.raises(TariffError, match="no version"):
        q(catalogue, "cn-general-commercial", "2019-06", "100")
    with pytest.raises(TariffError, match="unknown tariff"):
        q(catalogue, "no-such-tariff", "2026-03", "100")


def test_line_amounts_and_total(catalogue):
    r = q(catalogue, "cn-general-industrial", "2026-03", "1234.56", peak_kwh="600.01",
          flat_kwh="300.55", kvarh="999.99")
    total = sum(Decimal(ln["amount"]) for ln in r["lines"])
    assert Decimal(r["total"]) == total
    for ln in r["lines"]:
        expected = (Decimal(ln["quantity"]) * Decimal(ln["unit_price"])).quantize(
            Decimal("0.01"), rounding="ROUND_HALF_UP")
        assert Decimal(ln["amount"]) == expected, ln
