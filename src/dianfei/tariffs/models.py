"""Tariff data model (电价): versions, their charge components, usages and bill lines.

All money is integer: prices in units of 0.0001 yuan, quantities in units of 0.01 (kWh, kVA,
kW), amounts in fen. The loader (``loader.py``) builds these objects from the versioned TOML
files and validates them; tests may build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from dianfei.core.errors import TariffError
from dianfei.core.money import fmt_price, fmt_qty, fmt_yuan

#: time-of-use periods (分时时段) in the order lines are printed: 尖峰, 高峰, 平段, 低谷
TOU_PERIODS: tuple[str, ...] = ("sharp", "peak", "flat", "valley")

TOU_LABELS: dict[str, str] = {
    "sharp": "尖峰电量 Sharp-peak energy",
    "peak": "高峰电量 Peak energy",
    "flat": "平段电量 Flat (shoulder) energy",
    "valley": "低谷电量 Valley energy",
}
TIER_LABELS: tuple[str, str, str] = (
    "第一档电量 Tier 1 energy",
    "第二档电量 Tier 2 energy",
    "第三档电量 Tier 3 energy",
)
INCREMENT_LABELS: tuple[str, str] = (
    "第二档加价电量 Tier 2 increment",
    "第三档加价电量 Tier 3 increment",
)
FLAT_LABEL = "电度电费 Energy"
BASIC_CAPACITY_LABEL = "基本电费（按容量） Basic charge by capacity"
BASIC_DEMAND_LABEL = "基本电费（按最大需量） Basic charge by maximum demand"
LOW_INCOME_LABEL = "低保/五保户免费电量 Low-income free allowance"


def pf_label(standard: str | None) -> str:
    if standard is None:
        return "功率因数调整电费（不适用） Power-factor adjustment (not applicable)"
    return f"功率因数调整电费（考核标准{standard}） Power-factor adjustment (standard {standard})"


class RatingError(TariffError):
    """A usage cannot be rated against a tariff version; ``reason`` is a stable code.

    The same codes appear in the ``reason`` column of the columnar rater's error frame.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


# --- tiers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Season:
    """Months in which other tier thresholds apply (e.g. Guangdong summer, May–October)."""

    months: frozenset[int]
    #: upper bounds of tiers 1 and 2 in 0.01 kWh (inclusive)
    upto: tuple[int, int]


@dataclass(frozen=True)
class TierSchedule:
    """Three-tier thresholds (阶梯电量).

    ``annual``: thresholds on the calendar-year cumulative usage; a bill's kWh are split by the
    year-to-date usage before the bill. ``monthly``: thresholds on the month's own usage.
    """

    basis: str  # "annual" | "monthly"
    upto: tuple[int, int]
    seasons: tuple[Season, ...] = ()

    def upto_for(self, month: int) -> tuple[int, int]:
        for season in self.seasons:
            if month in season.months:
                return season.upto
        return self.upto


# --- energy components (电度电费) ---------------------------------------------------------------


@dataclass(frozen=True)
class FlatEnergy:
    """One price for every kWh. Line ``energy``."""

    price: int


@dataclass(frozen=True)
class TieredEnergy:
    """Three tiers, each with its own price. Lines ``energy_tier1..3``."""

    prices: tuple[int, int, int]
    tiers: TierSchedule


@dataclass(frozen=True)
class TouEnergy:
    """Time-of-use prices for the declared periods (in ``TOU_PERIODS`` order). Lines
    ``energy_<period>``. ``hours`` is informational (which clock hours belong to which period)."""

    prices: tuple[tuple[str, int], ...]
    hours: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def periods(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.prices)


@dataclass(frozen=True)
class TouTieredEnergy:
    """TOU prices for all kWh, plus an increment (阶梯加价) on the kWh falling in tiers 2 and 3.

    This is how Zhejiang residential TOU bills read: the peak/valley lines at tier-1 prices and
    separate ``energy_tier2_increment`` / ``energy_tier3_increment`` lines.
    """

    prices: tuple[tuple[str, int], ...]
    increments: tuple[int, int]
    tiers: TierSchedule
    hours: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def periods(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.prices)


EnergyCharge = FlatEnergy | TieredEnergy | TouEnergy | TouTieredEnergy


# --- other components ------------------------------------------------------------------------


@dataclass(frozen=True)
class BasicCharge:
    """Two-part tariff basic charge (基本电费), yuan per kVA·month or per kW·month.

    Either price may be absent; the account (or quote) says which basis it is billed on.
    """

    capacity_price: int | None = None
    demand_price: int | None = None


@dataclass(frozen=True)
class Fund:
    """A government fund or surcharge (政府性基金及附加), per kWh. Line ``fund_<name>``.

    ``exempt`` records an exemption as data (e.g. agricultural production): no line is rated.
    """

    name: str
    description: str
    price: int
    exempt: bool = False


@dataclass(frozen=True)
class LowIncomeAllowance:
    """Free monthly kWh for 城乡低保户 / 农村五保户, credited at ``price`` per kWh."""

    free_kwh: int
    price: int


@dataclass(frozen=True)
class TariffVersion:
    """One version of a tariff, in force from ``effective_from`` to ``effective_to`` (both
    inclusive; ``None`` = open-ended). A version applies to a period when it is in force on the
    period's first day."""

    tariff_id: str
    name: str
    customer_class: str
    effective_from: date
    effective_to: date | None
    source: str
    energy: EnergyCharge
    basic: BasicCharge | None = None
    pf_standard: str | None = None
    funds: tuple[Fund, ...] = ()
    low_income: LowIncomeAllowance | None = None

    def in_force_on(self, day: date) -> bool:
        return self.effective_from <= day and (self.effective_to is None
                                               or day <= self.effective_to)


@dataclass(frozen=True)
class Tariff:
    tariff_id: str
    name: str
    customer_class: str
    versions: tuple[TariffVersion, ...]
    source_file: str = ""


# --- usage and lines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What one bill is rated on. Quantities are Decimals with at most two places.

    ``ytd_kwh`` is this calendar year's usage *before* this bill (for annual tiers). TOU
    registers are per period; ``None`` means not read (one missing declared period gets the
    remainder of ``kwh``). Give ``capacity_kva`` or ``max_demand_kw`` for a two-part tariff.
    """

    kwh: Decimal
    ytd_kwh: Decimal = Decimal(0)
    sharp_kwh: Decimal | None = None
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None
    kvarh: Decimal | None = None
    capacity_kva: Decimal | None = None
    max_demand_kw: Decimal | None = None
    low_income: bool = False

    def register(self, period: str) -> Decimal | None:
        value: Decimal | None = getattr(self, f"{period}_kwh")
        return value


@dataclass(frozen=True)
class MeterUsage:
    """One meter's share of an account billed on several meters (一户多表).

    The account's ``Usage`` carries the totals (``kwh`` must equal the meters' sum); the
    energy lines that can be split by meter (flat energy, each time-of-use period) are rated per
    meter, in the order given; tiers, increments, the basic charge, the power factor, funds and
    the allowance are rated once on the account's totals.
    """

    meter_id: str
    kwh: Decimal
    sharp_kwh: Decimal | None = None
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None

    def register(self, period: str) -> Decimal | None:
        value: Decimal | None = getattr(self, f"{period}_kwh")
        return value


@dataclass(frozen=True)
class Line:
    """One bill line (账单明细行): amount = half-up(quantity × unit_price) to the fen."""

    code: str
    description: str
    #: 0.01 units of ``unit`` (for ``pf_adjustment``: the base in fen, i.e. 0.01 yuan)
    quantity: int
    unit: str
    #: 0.0001 yuan per unit
    unit_price: int
    #: fen
    amount: int
    #: hundredths (96 = PF 0.96); only on ``pf_adjustment``
    power_factor: int | None = None
    #: hundredths of a percent (-75 = -0.75 %); only on ``pf_adjustment``
    percent: int | None = None
    #: the meter an energy line was rated on (flat energy and time-of-use lines of a rating
    #: with meters); None for the account's own lines (tiers, basic charge, PF, funds …)
    meter_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "description": self.description,
            "quantity": fmt_qty(self.quantity),
            "unit": self.unit,
            "unit_price": fmt_price(self.unit_price),
            "amount": fmt_yuan(self.amount),
        }
        if self.power_factor is not None:
            out["power_factor"] = fmt_qty(self.power_factor)
        if self.percent is not None:
            out["percent"] = fmt_qty(self.percent)
        if self.meter_id is not None:
            out["meter_id"] = self.meter_id
        return out
