"""The columnar rater agrees with the scalar reference rater, line by line, to the fen.

Random tariff versions cover every component kind (flat, tiered annual/monthly with seasons,
TOU, TOU with tier increments, basic charge by capacity/demand, PF standards, funds with
exemptions, low-income allowance); random usages include the error cases (missing and
mismatched TOU registers, missing or doubled basic-charge basis, negative quantities).
"""

from __future__ import annotations

import itertools
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dianfei.core.clock import Period
from dianfei.tariffs.models import (
    TOU_PERIODS,
    BasicCharge,
    EnergyCharge,
    FlatEnergy,
    Fund,
    LowIncomeAllowance,
    MeterUsage,
    RatingError,
    Season,
    Tariff,
    TariffVersion,
    TieredEnergy,
    TierSchedule,
    TouEnergy,
    TouTieredEnergy,
    Usage,
)
from dianfei.tariffs.rating_columnar import rate_frame
from dianfei.tariffs.rating_scalar import rate, tou_quantities
from dianfei.tariffs.service import TariffCatalogue

price = st.integers(0, 30_000)  # 0.0000 .. 3.0000 yuan, four places


@st.composite
def tier_schedules(draw: Any) -> TierSchedule:
    basis = draw(st.sampled_from(["annual", "monthly"]))
    u1 = draw(st.integers(1, 600_000))
    u2 = u1 + draw(st.integers(1, 600_000))
    seasons: tuple[Season, ...] = ()
    if basis == "monthly" and draw(st.booleans()):
        months = draw(st.sets(st.integers(1, 12), min_size=1, max_size=11))
        s1 = draw(st.integers(1, 600_000))
        seasons = (Season(frozenset(months), (s1, s1 + draw(st.integers(1, 600_000)))),)
    return TierSchedule(basis, (u1, u2), seasons)


@st.composite
def tou_prices(draw: Any) -> tuple[tuple[str, int], ...]:
    periods = draw(st.sets(st.sampled_from(TOU_PERIODS), min_size=1))
    return tuple((p, draw(price)) for p in TOU_PERIODS if p in periods)


@st.composite
def energies(draw: Any) -> EnergyCharge:
    kind = draw(st.sampled_from(["flat", "tiered", "tou", "tou_tiered"]))
    if kind == "flat":
        return FlatEnergy(draw(price))
    if kind == "tiered":
        p = sorted(draw(st.lists(price, min_size=3, max_size=3)))
        return TieredEnergy((p[0], p[1], p[2]), draw(tier_schedules()))
    if kind == "tou":
        return TouEnergy(draw(tou_prices()))
    inc = sorted(draw(st.lists(price, min_size=2, max_size=2)))
    return TouTieredEnergy(draw(tou_prices()), (inc[0], inc[1]), draw(tier_schedules()))


@st.composite
def versions(draw: Any) -> TariffVersion:
    basic = None
    if draw(st.booleans()):
        basic = draw(st.sampled_from([
            BasicCharge(draw(price), draw(price)), BasicCharge(draw(price), None),
            BasicCharge(None, draw(price))]))
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=3))
    funds = tuple(Fund(n, f"基金 {n}", draw(price), draw(st.booleans())) for n in names)
    low = (LowIncomeAllowance(draw(st.integers(1, 2_000)), draw(price))
           if draw(st.booleans()) else None)
    return TariffVersion(
        tariff_id="t", name="t", customer_class="residential",
        effective_from=date(2000, 1, 1), effective_to=None, source="property test",
        energy=draw(energies()), basic=basic,
        pf_standard=draw(st.sampled_from([None, "0.90", "0.85", "0.80"])),
        funds=funds, low_income=low,
    )


@st.composite
def usages(draw: Any, version: TariffVersion) -> dict[str, Any]:
    """A usage row in 0.01 units; mostly valid, sometimes broken on purpose."""
    big = draw(st.booleans())
    kwh = draw(st.integers(0, 10**9 if big else 200_000))
    row: dict[str, Any] = {
        "kwh": kwh, "ytd_kwh": draw(st.integers(0, 1_500_000)),
        "sharp_kwh": None, "peak_kwh": None, "flat_kwh": None, "valley_kwh": None,
        "kvarh": draw(st.none() | st.integers(0, 3 * kwh + 10)),
        "capacity_kva": None, "max_demand_kw": None, "low_income": draw(st.booleans()),
    }
    energy = version.energy
    if isinstance(energy, TouEnergy | TouTieredEnergy):
        periods = list(energy.periods)
        cuts = sorted(draw(st.lists(st.integers(0, kwh), min_size=len(periods) - 1,
                                    max_size=len(periods) - 1)))
        bounds = [0, *cuts, kwh]
        for p, lo, hi in zip(periods, bounds, bounds[1:], strict=False):
            row[f"{p}_kwh"] = hi - lo
        mode = draw(st.sampled_from(["ok", "ok", "drop1", "drop2", "skew", "undeclared"]))
        if mode == "drop1":
            row[f"{draw(st.sampled_from(periods))}_kwh"] = None
        elif mode == "drop2":
            for p in draw(st.lists(st.sampled_from(periods), min_size=2, max_size=2)):
                row[f"{p}_kwh"] = None
        elif mode == "skew":
            row[f"{periods[0]}_kwh"] += draw(st.integers(-5, 5))
            row[f"{periods[0]}_kwh"] = max(row[f"{periods[0]}_kwh"], 0)
        elif mode == "undeclared":
            others = [p for p in TOU_PERIODS if p not in periods]
            if others:
                row[f"{draw(st.sampled_from(others))}_kwh"] = draw(st.integers(0, 3))
    basis = draw(st.sampled_from(["capacity", "demand", "none", "both"]))
    if basis in ("capacity", "both"):
        row["capacity_kva"] = draw(st.integers(0, 5_000_000))
    if basis in ("demand", "both"):
        row["max_demand_kw"] = draw(st.integers(0, 5_000_000))
    if draw(st.integers(0, 30)) == 0:
        row[draw(st.sampled_from(["kwh", "ytd_kwh", "kvarh"]))] = -1
    return row


def _dec(units: int | None) -> Decimal | None:
    return None if units is None else Decimal(units).scaleb(-2)


def _usage(row: dict[str, Any]) -> Usage:
    qty = {k: _dec(v) for k, v in row.items() if k != "low_income"}
    return Usage(low_income=row["low_income"], **qty)  # type: ignore[arg-type]


@st.composite
def cases(draw: Any) -> tuple[TariffVersion, Period, list[dict[str, Any]]]:
    version = draw(versions())
    period = Period(2026, draw(st.integers(1, 12)))
    rows = draw(st.lists(usages(version), min_size=1, max_size=6))
    return version, period, rows


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_columnar_agrees_with_scalar(case: tuple[TariffVersion, Period, list[Any]]) -> None:
    version, period, rows = case
    catalogue = TariffCatalogue({"t": Tariff("t", "t", "residential", (version,))}, Path("."))
    frame = pl.DataFrame(
        [{"account_id": f"A{i}", "tariff_id": "t", **row} for i, row in enumerate(rows)],
        schema_overrides={k: pl.Int64 for k in rows[0] if k != "low_income"},
    )
    lines, errors = rate_frame(catalogue, period, frame)
    reasons = dict(zip(errors["account_id"], errors["reason"], strict=True))
    for i, row in enumerate(rows):
        account = f"A{i}"
        try:
            expected = rate(version, period, _usage(row))
        except RatingError as err:
            assert reasons.get(account) == err.reason, (row, err)
            assert lines.filter(pl.col("account_id") == account).height == 0
            continue
        assert account not in reasons, (row, reasons.get(account))
        got = lines.filter(pl.col("account_id") == account)
        assert got["line_no"].to_list() == list(range(1, len(expected) + 1))
        got_rows = [(r["code"], r["description"], r["quantity"], r["unit"], r["unit_price"],
                     r["amount"], r["power_factor"], r["percent"]) for r in got.iter_rows(
                         named=True)]
        want_rows = [(ln.code, ln.description, ln.quantity, ln.unit, ln.unit_price,
                      ln.amount, ln.power_factor, ln.percent) for ln in expected]
        assert got_rows == want_rows
        for ln in expected:
            exact = Decimal(ln.quantity) * Decimal(ln.unit_price) / Decimal(10**4)
            assert ln.amount == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        if row["kvarh"] is not None:
            assert [ln.code for ln in expected].count("pf_adjustment") == 1
    assert lines.schema["line_no"] == pl.Int32
    assert lines.schema["amount"] == pl.Int64
    assert lines.schema["power_factor"] == pl.Int32


def test_unknown_tariff_and_no_version_in_force_are_errors() -> None:
    version = TariffVersion("t", "t", "residential", date(2025, 1, 1), None, "s",
                            FlatEnergy(5_000))
    catalogue = TariffCatalogue({"t": Tariff("t", "t", "residential", (version,))}, Path("."))
    frame = pl.DataFrame({"account_id": ["A", "B", "C"], "tariff_id": ["t", "zz", None],
                          "kwh": [100, 100, 100]})
    lines, errors = rate_frame(catalogue, Period(2026, 1), frame)
    assert lines["account_id"].to_list() == ["A"]
    assert lines["amount"].to_list() == [50]
    assert sorted(errors["reason"].to_list()) == ["unknown_tariff", "unknown_tariff"]
    lines, errors = rate_frame(catalogue, Period(2024, 12), frame.head(1))
    assert lines.height == 0 and errors["reason"].to_list() == ["no_tariff_in_force"]


# --- accounts billed on several meters (一户多表) ---------------------------------------------


@st.composite
def meter_usages(draw: Any, version: TariffVersion, kwh: int) -> list[dict[str, Any]]:
    """1–3 meters whose kWh add up to the account's ``kwh`` (sometimes not, on purpose), each
    with its own TOU registers split like an account's (sometimes broken the same ways)."""
    n = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.integers(0, kwh), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, kwh]
    meters = []
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        meter: dict[str, Any] = {"meter_id": f"M{k}", "kwh": hi - lo}
        for p in TOU_PERIODS:
            meter[f"{p}_kwh"] = None
        energy = version.energy
        if isinstance(energy, TouEnergy | TouTieredEnergy):
            periods = list(energy.periods)
            mcuts = sorted(draw(st.lists(st.integers(0, hi - lo), min_size=len(periods) - 1,
                                         max_size=len(periods) - 1)))
            mb = [0, *mcuts, hi - lo]
            for p, a, b in zip(periods, mb, mb[1:], strict=False):
                meter[f"{p}_kwh"] = b - a
            if draw(st.integers(0, 5)) == 0:  # a broken meter: one period unread, or skewed
                meter[f"{periods[0]}_kwh"] = (None if draw(st.booleans())
                                              else meter[f"{periods[0]}_kwh"] + 1)
                if len(periods) > 1 and draw(st.booleans()):
                    meter[f"{periods[-1]}_kwh"] = None
        meters.append(meter)
    if draw(st.integers(0, 20)) == 0:
        meters[0]["kwh"] += 1  # the meters do not add up to the account
    return meters


def _meter_usage(m: dict[str, Any]) -> MeterUsage:
    return MeterUsage(m["meter_id"], **{k: _dec(v) for k, v in m.items()  # type: ignore[arg-type]
                                        if k != "meter_id"})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_columnar_agrees_with_scalar_on_several_meters(data: Any) -> None:
    version = data.draw(versions())
    period = Period(2026, data.draw(st.integers(1, 12)))
    rows = data.draw(st.lists(usages(version), min_size=1, max_size=4))
    meters_of = []
    for row in rows:
        for p in TOU_PERIODS:  # the account's own registers are not used with meters
            row[f"{p}_kwh"] = None
        meters_of.append(data.draw(meter_usages(version, max(row["kwh"], 0))))
    catalogue = TariffCatalogue({"t": Tariff("t", "t", "residential", (version,))}, Path("."))
    frame = pl.DataFrame(
        [{"account_id": f"A{i}", "tariff_id": "t", **row} for i, row in enumerate(rows)],
        schema_overrides={k: pl.Int64 for k in rows[0] if k != "low_income"},
    )
    meters = pl.DataFrame(
        [{"account_id": f"A{i}", **m} for i, ms in enumerate(meters_of) for m in ms],
        schema_overrides={k: pl.Int64 for k in ("kwh", *(f"{p}_kwh" for p in TOU_PERIODS))},
    )
    lines, errors = rate_frame(catalogue, period, frame, meters)
    reasons = dict(zip(errors["account_id"], errors["reason"], strict=True))
    for i, row in enumerate(rows):
        account = f"A{i}"
        ms = [_meter_usage(m) for m in meters_of[i]]
        try:
            expected = rate(version, period, _usage(row), ms)
        except RatingError as err:
            assert reasons.get(account) == err.reason, (row, meters_of[i], err)
            assert lines.filter(pl.col("account_id") == account).height == 0
            continue
        assert account not in reasons, (row, meters_of[i], reasons.get(account))
        got = lines.filter(pl.col("account_id") == account)
        assert got["line_no"].to_list() == list(range(1, len(expected) + 1))
        got_rows = [(r["code"], r["quantity"], r["unit_price"], r["amount"], r["power_factor"],
                     r["percent"], r["meter_id"]) for r in got.iter_rows(named=True)]
        want_rows = [(ln.code, ln.quantity, ln.unit_price, ln.amount, ln.power_factor,
                      ln.percent, ln.meter_id) for ln in expected]
        assert got_rows == want_rows
        # tiers and increments are those of the summed consumption; per-meter lines add up to
        # the summed quantities; every per-account line appears once
        summed = {f"{p}_kwh": sum(q for m in meters_of[i]
                                  if (q := m[f"{p}_kwh"]) is not None) for p in TOU_PERIODS}
        energy = version.energy
        if isinstance(energy, TouEnergy | TouTieredEnergy):
            split = {p: 0 for p in energy.periods}
            for m in ms:
                for p, v in tou_quantities(energy.periods, m, int(m.kwh * 100)).items():
                    split[p] += v
            summed = {f"{p}_kwh": split.get(p) for p in TOU_PERIODS}
        whole = rate(version, period, _usage({**row, **summed}))
        tier = [(ln.code, ln.quantity, ln.amount) for ln in whole if "tier" in ln.code]
        assert [(ln.code, ln.quantity, ln.amount) for ln in expected if "tier" in ln.code] == tier
        per_account = [ln.code for ln in expected if ln.meter_id is None]
        assert len(per_account) == len(set(per_account))
        for code in {ln.code for ln in expected if ln.meter_id is not None}:
            assert sum(ln.quantity for ln in expected if ln.code == code) == next(
                ln.quantity for ln in whole if ln.code == code)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_one_meter_named_on_the_row_is_one_meter_group(
        case: tuple[TariffVersion, Period, list[Any]]) -> None:
    """A row's ``meter_id`` rates exactly as that one meter given to the scalar rater."""
    version, period, rows = case
    catalogue = TariffCatalogue({"t": Tariff("t", "t", "residential", (version,))}, Path("."))
    frame = pl.DataFrame(
        [{"account_id": f"A{i}", "tariff_id": "t", "meter_id": f"M{i}", **row}
         for i, row in enumerate(rows)],
        schema_overrides={k: pl.Int64 for k in rows[0] if k != "low_income"},
    )
    lines, errors = rate_frame(catalogue, period, frame)
    reasons = dict(zip(errors["account_id"], errors["reason"], strict=True))
    for i, row in enumerate(rows):
        account = f"A{i}"
        meter = {"meter_id": f"M{i}", "kwh": row["kwh"],
                 **{f"{p}_kwh": row[f"{p}_kwh"] for p in TOU_PERIODS}}
        try:
            if row["kwh"] < 0:
                raise RatingError("invalid_quantity", "negative")
            expected = rate(version, period, _usage(row), [_meter_usage(meter)])
        except RatingError as err:
            assert reasons.get(account) == err.reason
            continue
        got = lines.filter(pl.col("account_id") == account)
        assert [(r["code"], r["amount"], r["meter_id"]) for r in got.iter_rows(named=True)] \
            == [(ln.code, ln.amount, ln.meter_id) for ln in expected]
