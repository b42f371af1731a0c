"""The scalar reference rater: one usage, one tariff version → bill lines.

Plain Python integers, written to be read and checked by hand. The columnar rater
(``rating_columnar.py``) must agree with it line by line; property tests hold them together.

Line order on every bill: basic charge, energy lines, power-factor adjustment, funds, low-income
allowance. Which lines appear:

* basic (``basic_capacity`` / ``basic_demand``): when the version has a basic charge;
* ``energy`` (flat), ``energy_tier1`` and every declared ``energy_<period>``: always, even at 0 kWh,
  so a bill always shows its energy charge; ``energy_tier2/3`` and the tier increments only when
  kWh fall in that tier;
* ``pf_adjustment``: whenever kvarh was given (at 0 % too, and "not applicable" when the version
  has no PF standard);
* ``fund_<name>``: when kWh > 0 and the fund is not exempt;
* ``low_income_allowance``: when the usage is low-income, the version has an allowance and kWh > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from dianfei.core.clock import Period
from dianfei.core.money import QTY_SCALE, line_amount_fen
from dianfei.tariffs.models import (
    BASIC_CAPACITY_LABEL,
    BASIC_DEMAND_LABEL,
    FLAT_LABEL,
    INCREMENT_LABELS,
    LOW_INCOME_LABEL,
    TIER_LABELS,
    TOU_LABELS,
    TOU_PERIODS,
    FlatEnergy,
    Line,
    MeterUsage,
    RatingError,
    TariffVersion,
    TieredEnergy,
    TierSchedule,
    TouEnergy,
    TouTieredEnergy,
    Usage,
    pf_label,
)
from dianfei.tariffs.power_factor import power_factor_hundredths, standard_tables

#: codes whose amounts the power-factor percentage applies to (基本电费 + 电度电费)
PF_BASE_PREFIXES = ("basic", "energy")


def _units(value: Decimal | None, what: str) -> int | None:
    """A usage quantity as integer 0.01 units, refusing more than two places or negatives."""
    if value is None:
        return None
    scaled = Decimal(value) * QTY_SCALE
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise RatingError("invalid_quantity", f"{what} must have at most 2 decimal places, "
                                              f"got {value}")
    if scaled < 0:
        raise RatingError("invalid_quantity", f"{what} must not be negative, got {value}")
    return int(scaled)


def tier_split(tiers: TierSchedule, month: int, kwh: int, ytd: int) -> tuple[int, int, int]:
    """kWh of this bill falling in tiers 1, 2, 3 (0.01 kWh units).

    Annual basis: the bill covers cumulative usage (ytd, ytd + kwh]; monthly: (0, kwh].
    Tier 1 covers cumulative usage up to ``upto[0]`` inclusive, tier 2 up to ``upto[1]``.
    """
    start = ytd if tiers.basis == "annual" else 0
    end = start + kwh
    u1, u2 = tiers.upto_for(month)
    t1 = max(0, min(end, u1) - start)
    t2 = max(0, min(end, u2) - max(start, u1))
    t3 = max(0, end - max(start, u2))
    return t1, t2, t3


def tou_quantities(periods: tuple[str, ...], usage: Usage | MeterUsage,
                   kwh: int) -> dict[str, int]:
    """kWh per declared TOU period; one missing declared period gets the remainder of kwh."""
    given: dict[str, int | None] = {
        p: _units(usage.register(p), f"{p}_kwh") for p in TOU_PERIODS
    }
    for p in TOU_PERIODS:
        if p not in periods and given[p]:
            raise RatingError("tou_period_not_priced",
                              f"{p} kWh given but the tariff has no {p} price")
    missing = [p for p in periods if given[p] is None]
    if len(missing) > 1:
        raise RatingError("tou_registers_missing",
                          f"time-of-use kWh missing for {', '.join(missing)}; "
                          f"at most one period may be left to the remainder")
    known = sum(given[p] or 0 for p in periods)
    if missing:
        remainder = kwh - known
        if remainder < 0:
            raise RatingError("tou_sum_mismatch",
                              f"time-of-use kWh sum to more than kwh ({known / QTY_SCALE} > "
                              f"{kwh / QTY_SCALE})")
        given[missing[0]] = remainder
    elif known != kwh:
        raise RatingError("tou_sum_mismatch",
                          f"time-of-use kWh sum to {known / QTY_SCALE}, kwh is {kwh / QTY_SCALE}")
    return {p: given[p] or 0 for p in periods}


def _meter_quantities(version: TariffVersion, meters: Sequence[MeterUsage],
                      kwh: int) -> list[tuple[str, int, dict[str, int]]]:
    """(meter_id, kWh, kWh per TOU period) per meter, checked meter by meter in order: each
    meter's quantities, then its TOU registers; then the meters must add up to the account."""
    energy = version.energy
    out: list[tuple[str, int, dict[str, int]]] = []
    for m in meters:
        for name in ("kwh", "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh"):
            _units(getattr(m, name), f"meter {m.meter_id} {name}")
        mk = _units(m.kwh, f"meter {m.meter_id} kwh")
        if mk is None:
            raise RatingError("invalid_quantity", f"meter {m.meter_id}: kwh is required")
        qtys = (tou_quantities(energy.periods, m, mk)
                if isinstance(energy, TouEnergy | TouTieredEnergy) else {})
        out.append((m.meter_id, mk, qtys))
    total = sum(mk for _, mk, _ in out)
    if total != kwh:
        raise RatingError("meter_sum_mismatch",
                          f"the meters' kWh sum to {total / QTY_SCALE}, kwh is {kwh / QTY_SCALE}")
    return out


def _energy_lines(version: TariffVersion, period: Period, usage: Usage, kwh: int,
                  ytd: int, meters: Sequence[MeterUsage] = ()) -> list[Line]:
    """Energy lines. With ``meters`` the flat and time-of-use lines are one per meter and
    period (meter by meter, in the order given); tier lines and increments stay on the account's
    total, as the tier split of one household cannot be made per meter."""
    energy = version.energy
    lines: list[Line] = []

    def add(code: str, label: str, qty: int, price: int, meter: str | None = None) -> None:
        lines.append(Line(code, label, qty, "kWh", price, line_amount_fen(qty, price),
                          meter_id=meter))

    per_meter: list[tuple[str | None, int, dict[str, int]]] | None = (
        list(_meter_quantities(version, meters, kwh)) if meters else None)
    if isinstance(energy, FlatEnergy):
        for meter, mk, _ in per_meter or [(None, kwh, {})]:
            add("energy", FLAT_LABEL, mk, energy.price, meter)
    elif isinstance(energy, TieredEnergy):
        split = tier_split(energy.tiers, period.month, kwh, ytd)
        for i, (qty, price) in enumerate(zip(split, energy.prices, strict=True)):
            if i == 0 or qty > 0:
                add(f"energy_tier{i + 1}", TIER_LABELS[i], qty, price)
    elif isinstance(energy, TouEnergy | TouTieredEnergy):
        if per_meter is None:
            per_meter = [(None, kwh, tou_quantities(energy.periods, usage, kwh))]
        for meter, _, qtys in per_meter:
            for p, price in energy.prices:
                add(f"energy_{p}", TOU_LABELS[p], qtys[p], price, meter)
        if isinstance(energy, TouTieredEnergy):
            _, t2, t3 = tier_split(energy.tiers, period.month, kwh, ytd)
            for i, (qty, inc) in enumerate(zip((t2, t3), energy.increments, strict=True)):
                if qty > 0:
                    add(f"energy_tier{i + 2}_increment", INCREMENT_LABELS[i], qty, inc)
    else:  # pragma: no cover - the union is closed
        raise RatingError("unknown_component", f"unknown energy component {energy!r}")
    return lines


def _basic_line(version: TariffVersion, usage: Usage) -> list[Line]:
    basic = version.basic
    if basic is None:
        return []
    capacity = _units(usage.capacity_kva, "capacity_kva")
    demand = _units(usage.max_demand_kw, "max_demand_kw")
    if capacity is not None and demand is not None:
        raise RatingError("basic_basis_ambiguous",
                          "give either capacity (kVA) or maximum demand (kW), not both")
    if capacity is None and demand is None:
        raise RatingError("capacity_missing",
                          f"tariff {version.tariff_id} is two-part: give capacity_kva or "
                          f"max_demand_kw")
    if capacity is not None:
        if basic.capacity_price is None:
            raise RatingError("basic_basis_not_priced",
                              f"tariff {version.tariff_id} has no basic charge by capacity")
        return [Line("basic_capacity", BASIC_CAPACITY_LABEL, capacity, "kVA",
                     basic.capacity_price, line_amount_fen(capacity, basic.capacity_price))]
    assert demand is not None
    if basic.demand_price is None:
        raise RatingError("basic_basis_not_priced",
                          f"tariff {version.tariff_id} has no basic charge by maximum demand")
    return [Line("basic_demand", BASIC_DEMAND_LABEL, demand, "kW", basic.demand_price,
                 line_amount_fen(demand, basic.demand_price))]


def pf_adjustment_line(version: TariffVersion, kwh: int, kvarh: int, base_fen: int) -> Line:
    """The 力调 line: ``base_fen`` (basic + energy) × the table percentage, half-up to the fen.

    The percentage in hundredths of a percent is also the unit price in 0.0001 units
    (-0.75 % = -0.0075 per yuan), so the amount is an ordinary line amount.
    """
    pf = power_factor_hundredths(kwh, kvarh)
    std = version.pf_standard
    percent = 0 if std is None else standard_tables()[std].percent(pf)
    return Line("pf_adjustment", pf_label(std), base_fen, "yuan", percent,
                line_amount_fen(base_fen, percent), power_factor=pf, percent=percent)


def rate(version: TariffVersion, period: Period, usage: Usage,
         meters: Sequence[MeterUsage] = ()) -> list[Line]:
    """Rate one usage for one period: the itemised lines, each rounded half-up to the fen.

    ``meters`` (an account billed on several meters): the flat / time-of-use energy lines are
    rated per meter and carry its id; ``usage`` holds the account's totals (its own TOU
    registers are then not used) on which tiers, basic charge, PF, funds and allowance are
    rated. The PF base is the sum of the basic and energy lines as written.

    Raises ``RatingError`` (a ``TariffError``) with a stable ``reason`` when the usage cannot
    be rated: ``invalid_quantity``, ``tou_period_not_priced``, ``tou_registers_missing``,
    ``tou_sum_mismatch``, ``basic_basis_ambiguous``, ``capacity_missing``,
    ``basic_basis_not_priced`` — checked in that order; with ``meters``, each meter's
    quantities and TOU registers (meter by meter) then ``meter_sum_mismatch`` come before the
    basic charge checks, in place of the account's TOU checks.
    """
    # Every quantity is checked first so a bad value is reported before anything else.
    for name in ("kwh", "ytd_kwh", "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh", "kvarh",
                 "capacity_kva", "max_demand_kw"):
        _units(getattr(usage, name), name)
    kwh = _units(usage.kwh, "kwh")
    if kwh is None:
        raise RatingError("invalid_quantity", "kwh is required")
    ytd = _units(usage.ytd_kwh, "ytd_kwh") or 0
    kvarh = _units(usage.kvarh, "kvarh")
    # Register checks run before the basic-charge checks (same order as the columnar rater).
    energy = _energy_lines(version, period, usage, kwh, ytd, meters)
    lines = _basic_line(version, usage) + energy
    if kvarh is not None:
        base = sum(ln.amount for ln in lines if ln.code.startswith(PF_BASE_PREFIXES))
        lines.append(pf_adjustment_line(version, kwh, kvarh, base))
    if kwh > 0:
        for fund in version.funds:
            if not fund.exempt:
                lines.append(Line(f"fund_{fund.name}", fund.description, kwh, "kWh", fund.price,
                                  line_amount_fen(kwh, fund.price)))
        allowance = version.low_income
        if usage.low_income and allowance is not None:
            qty = min(kwh, allowance.free_kwh)
            lines.append(Line("low_income_allowance", LOW_INCOME_LABEL, qty, "kWh",
                              -allowance.price, line_amount_fen(qty, -allowance.price)))
    return lines
