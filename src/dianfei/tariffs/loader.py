"""Load and validate tariff files (one TOML file per tariff id, several dated versions).

Every problem is reported as ``<file>: <field path>: <reason>`` so whoever edits a price notice
into a file can find the line. Unknown keys are errors: a misspelt ``effective_too`` must not
silently leave a version open-ended. Prices are written as quoted decimal strings ("0.5380"):
a TOML float cannot carry a price exactly, so floats are refused.

The format is described in docs/tariffs.md.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from dianfei.core.errors import TariffError
from dianfei.core.money import PRICE_SCALE, QTY_SCALE
from dianfei.tariffs.models import (
    TOU_PERIODS,
    BasicCharge,
    EnergyCharge,
    FlatEnergy,
    Fund,
    LowIncomeAllowance,
    Season,
    Tariff,
    TariffVersion,
    TieredEnergy,
    TierSchedule,
    TouEnergy,
    TouTieredEnergy,
)
from dianfei.tariffs.power_factor import standard_tables

CUSTOMER_CLASSES = ("residential", "commercial", "industrial", "large_industry", "agricultural")
ENERGY_KINDS = ("flat", "tiered", "tou", "tou_tiered")
TIER_BASES = ("annual", "monthly")
_FUND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class Finding:
    """One problem in one tariff file (a validator returns these rather than stopping)."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# --- scalar fields -----------------------------------------------------------------------------


def _table(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(path, "must be a table")
    return value


def _keys(table: dict[str, Any], path: str, required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(table) - required - optional)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise _Bad(where, f"unknown key {unknown[0]!r} (allowed: "
                          f"{', '.join(sorted(required | optional))})")
    missing = sorted(required - set(table))
    if missing:
        where = f"{path}.{missing[0]}" if path else missing[0]
        raise _Bad(where, "required key is missing")


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(path, "must be a non-empty string")
    return value


def _decimal(value: Any, path: str, places: int) -> Decimal:
    if isinstance(value, bool | float):
        raise _Bad(path, f"write numbers as quoted decimal strings (e.g. \"0.5380\"), "
                         f"not {type(value).__name__} {value!r}")
    if not isinstance(value, str | int):
        raise _Bad(path, f"must be a decimal string, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(path, f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise _Bad(path, f"not a finite number: {value!r}")
    if number != number.quantize(Decimal(1).scaleb(-places)):
        raise _Bad(path, f"at most {places} decimal places, got {value}")
    return number


def _price(value: Any, path: str) -> int:
    """A price in 0.0001 yuan units; prices in tariff files are never negative (a credit such
    as the low-income allowance is written as the positive price it credits)."""
    number = _decimal(value, path, 4)
    if number < 0:
        raise _Bad(path, f"negative price {value} (credits are written as positive prices)")
    return int(number * PRICE_SCALE)


def _qty(value: Any, path: str) -> int:
    number = _decimal(value, path, 2)
    if number <= 0:
        raise _Bad(path, f"must be positive, got {value}")
    return int(number * QTY_SCALE)


def _date(value: Any, path: str) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                return date.fromisoformat(value)
        except ValueError:
            pass
    raise _Bad(path, f"malformed date {value!r} (expected YYYY-MM-DD)")


# --- components --------------------------------------------------------------------------------


def _tou_prices(energy: dict[str, Any], path: str) -> tuple[tuple[str, int], ...]:
    periods = energy["periods"]
    if not isinstance(periods, list) or not periods:
        raise _Bad(f"{path}.periods", "must be a non-empty list of TOU periods")
    for p in periods:
        if p not in TOU_PERIODS:
            raise _Bad(f"{path}.periods", f"unknown TOU period {p!r} "
                                          f"(known: {', '.join(TOU_PERIODS)})")
    if len(set(periods)) != len(periods):
        raise _Bad(f"{path}.periods", "a period is listed twice")
    prices = _table(energy["prices"], f"{path}.prices")
    for p in prices:
        if p not in periods:
            raise _Bad(f"{path}.prices.{p}", f"price for a period not declared in periods "
                                             f"({', '.join(periods)})")
    for p in periods:
        if p not in prices:
            raise _Bad(f"{path}.prices.{p}", f"missing TOU price for declared period {p!r}")
    return tuple((p, _price(prices[p], f"{path}.prices.{p}"))
                 for p in TOU_PERIODS if p in periods)


def _tou_hours(energy: dict[str, Any], path: str,
               periods: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Clock hours of each period; informational, but they must cover the day exactly once."""
    if "hours" not in energy:
        return ()
    hours = _table(energy["hours"], f"{path}.hours")
    covered = [0] * 1440
    out: list[tuple[str, tuple[str, ...]]] = []
    for p, spans in hours.items():
        where = f"{path}.hours.{p}"
        if p not in periods:
            raise _Bad(where, "hours for a period not declared in periods")
        if not isinstance(spans, list) or not spans:
            raise _Bad(where, "must be a list like [\"08:00-22:00\"]")
        for span in spans:
            m = _HOURS.match(span) if isinstance(span, str) else None
            if m is None:
                raise _Bad(where, f"malformed span {span!r} (expected HH:MM-HH:MM)")
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                raise _Bad(where, f"malformed span {span!r}")
            a, b = (h1 * 60 + m1) % 1440, (h2 * 60 + m2) % 1440
            minute = a
            while True:  # a span may wrap past midnight (22:00-08:00)
                covered[minute] += 1
                minute = (minute + 1) % 1440
                if minute == b:
                    break
        out.append((p, tuple(spans)))
    missing = [p for p in periods if p not in hours]
    if missing:
        raise _Bad(f"{path}.hours.{missing[0]}", "hours missing for a declared period")
    if any(c != 1 for c in covered):
        raise _Bad(f"{path}.hours", "periods must cover the 24 hours exactly once "
                                    "(a gap or an overlap)")
    return tuple(sorted(out, key=lambda item: TOU_PERIODS.index(item[0])))


def _tier_schedule(energy: dict[str, Any], path: str,
                   want_price: bool) -> tuple[TierSchedule, list[int]]:
    """The three tiers: ``upto`` on tiers 1 and 2 (strictly increasing), then either ``price``
    (tiered) or ``increment`` (tou_tiered; none on tier 1). Returns the schedule and the three
    prices / increments."""
    basis = energy["basis"]
    if basis not in TIER_BASES:
        raise _Bad(f"{path}.basis", f"must be one of {', '.join(TIER_BASES)}, got {basis!r}")
    tiers = energy["tiers"]
    if not isinstance(tiers, list) or len(tiers) != 3:
        raise _Bad(f"{path}.tiers", "exactly three tiers are required")
    upto: list[int] = []
    values: list[int] = []
    for i, tier in enumerate(tiers):
        where = f"{path}.tiers[{i}]"
        tier = _table(tier, where)
        key = "price" if want_price else "increment"
        if i == 2 and "upto" in tier:
            raise _Bad(f"{where}.upto", "the last tier is open-ended: no upto")
        required = {"upto"} if i < 2 else set()
        optional: set[str] = set()
        if want_price or i > 0:
            required.add(key)
        else:
            optional.add(key)  # tier 1 of tou_tiered: an increment of 0 may be written out
        _keys(tier, where, required, optional)
        if i < 2:
            upto.append(_qty(tier["upto"], f"{where}.upto"))
        value = _price(tier[key], f"{where}.{key}") if key in tier else 0
        if not want_price and i == 0 and value != 0:
            raise _Bad(f"{where}.increment", "tier 1 is billed at the TOU prices: no increment")
        values.append(value)
    if upto[0] >= upto[1]:
        raise _Bad(f"{path}.tiers[1].upto", "tiers out of order: thresholds must increase "
                                            f"({upto[0] / QTY_SCALE} then {upto[1] / QTY_SCALE})")
    for i in (1, 2):
        if values[i] < values[i - 1]:
            what = "prices" if want_price else "increments"
            raise _Bad(f"{path}.tiers[{i}]", f"tiers out of order: {what} must not decrease")
    seasons: list[Season] = []
    seen: set[int] = set()
    for j, season in enumerate(energy.get("seasons", [])):
        where = f"{path}.seasons[{j}]"
        season = _table(season, where)
        _keys(season, where, {"months", "upto"}, set())
        months = season["months"]
        if (not isinstance(months, list) or not months
                or not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12
                           for m in months)):
            raise _Bad(f"{where}.months", "must be a list of month numbers 1..12")
        if seen & set(months):
            raise _Bad(f"{where}.months", f"month(s) {sorted(seen & set(months))} already in "
                                          "another season")
        seen |= set(months)
        bounds = season["upto"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise _Bad(f"{where}.upto", "must list the two thresholds [tier 1, tier 2]")
        s1, s2 = (_qty(b, f"{where}.upto[{k}]") for k, b in enumerate(bounds))
        if s1 >= s2:
            raise _Bad(f"{where}.upto", "tiers out of order: thresholds must increase")
        seasons.append(Season(frozenset(months), (s1, s2)))
    if seasons and basis != "monthly":
        raise _Bad(f"{path}.seasons", "seasonal thresholds need basis = \"monthly\"")
    return TierSchedule(basis, (upto[0], upto[1]), tuple(seasons)), values


def _energy(value: Any, path: str) -> EnergyCharge:
    energy = _table(value, path)
    kind = energy.get("kind")
    if kind not in ENERGY_KINDS:
        raise _Bad(f"{path}.kind", f"unknown component kind {kind!r} "
                                   f"(known: {', '.join(ENERGY_KINDS)})")
    if kind == "flat":
        _keys(energy, path, {"kind", "price"}, set())
        return FlatEnergy(_price(energy["price"], f"{path}.price"))
    if kind == "tiered":
        _keys(energy, path, {"kind", "basis", "tiers"}, {"seasons"})
        tiers, prices = _tier_schedule(energy, path, want_price=True)
        return TieredEnergy((prices[0], prices[1], prices[2]), tiers)
    if kind == "tou":
        _keys(energy, path, {"kind", "periods", "prices"}, {"hours"})
        tou_only = _tou_prices(energy, path)
        hours = _tou_hours(energy, path, tuple(p for p, _ in tou_only))
        return TouEnergy(tou_only, hours)
    _keys(energy, path, {"kind", "periods", "prices", "basis", "tiers"}, {"hours", "seasons"})
    tou = _tou_prices(energy, path)
    hours = _tou_hours(energy, path, tuple(p for p, _ in tou))
    tiers, incs = _tier_schedule(energy, path, want_price=False)
    return TouTieredEnergy(tou, (incs[1], incs[2]), tiers, hours)


def _basic(value: Any, path: str) -> BasicCharge:
    basic = _table(value, path)
    _keys(basic, path, set(), {"capacity_price", "demand_price"})
    if not basic:
        raise _Bad(path, "give capacity_price (yuan/kVA·month) and/or demand_price "
                         "(yuan/kW·month)")
    return BasicCharge(
        capacity_price=(_price(basic["capacity_price"], f"{path}.capacity_price")
                        if "capacity_price" in basic else None),
        demand_price=(_price(basic["demand_price"], f"{path}.demand_price")
                      if "demand_price" in basic else None),
    )


def _funds(value: Any, path: str) -> tuple[Fund, ...]:
    if not isinstance(value, list):
        raise _Bad(path, "must be a list of [[versions.funds]] tables")
    funds: list[Fund] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        item = _table(item, where)
        _keys(item, where, {"name", "description", "price"}, {"exempt", "source"})
        name = _str(item["name"], f"{where}.name")
        if not _FUND_NAME.match(name):
            raise _Bad(f"{where}.name", f"must be lower_snake_case, got {name!r}")
        if any(f.name == name for f in funds):
            raise _Bad(f"{where}.name", f"fund {name!r} listed twice")
        exempt = item.get("exempt", False)
        if not isinstance(exempt, bool):
            raise _Bad(f"{where}.exempt", "must be true or false")
        funds.append(Fund(name, _str(item["description"], f"{where}.description"),
                          _price(item["price"], f"{where}.price"), exempt))
    return tuple(funds)


def _low_income(value: Any, path: str) -> LowIncomeAllowance:
    table = _table(value, path)
    _keys(table, path, {"free_kwh", "price"}, {"source"})
    return LowIncomeAllowance(_qty(table["free_kwh"], f"{path}.free_kwh"),
                              _price(table["price"], f"{path}.price"))


def _version(raw: Any, path: str, tariff_id: str, name: str, cls: str) -> TariffVersion:
    v = _table(raw, path)
    _keys(v, path, {"effective_from", "source", "energy"},
          {"effective_to", "pf_standard", "basic", "funds", "low_income", "notes"})
    start = _date(v["effective_from"], f"{path}.effective_from")
    end = _date(v["effective_to"], f"{path}.effective_to") if "effective_to" in v else None
    if end is not None and end < start:
        raise _Bad(f"{path}.effective_to", f"ends ({end}) before it starts ({start})")
    pf = v.get("pf_standard")
    if pf is not None and pf not in standard_tables():
        raise _Bad(f"{path}.pf_standard", f"PF standard {pf!r} not in the tables "
                                          f"({', '.join(standard_tables())})")
    energy = _energy(v["energy"], f"{path}.energy")
    allowance = (_low_income(v["low_income"], f"{path}.low_income")
                 if "low_income" in v else None)
    if allowance is not None and allowance.price > _lowest_energy_price(energy):
        # a free kWh credited above what the cheapest kWh costs could make a bill negative
        raise _Bad(f"{path}.low_income.price",
                   f"the allowance price {allowance.price / 10000:.4f} exceeds the lowest energy "
                   f"price {_lowest_energy_price(energy) / 10000:.4f}: a small bill would go "
                   "negative")
    return TariffVersion(
        tariff_id=tariff_id, name=name, customer_class=cls,
        effective_from=start, effective_to=end,
        source=_str(v["source"], f"{path}.source"),
        energy=energy,
        basic=_basic(v["basic"], f"{path}.basic") if "basic" in v else None,
        pf_standard=pf,
        funds=_funds(v["funds"], f"{path}.funds") if "funds" in v else (),
        low_income=allowance,
    )


def _lowest_energy_price(energy: EnergyCharge) -> int:
    """The least any kWh can cost under this energy charge (tier increments only add)."""
    if isinstance(energy, FlatEnergy):
        return energy.price
    if isinstance(energy, TieredEnergy):
        return min(energy.prices)
    return min(price for _, price in energy.prices)


def _check_continuity(versions: list[tuple[int, TariffVersion]]) -> None:
    """Versions follow each other day by day: no gap, no overlap; only the last is open."""
    ordered = sorted(versions, key=lambda iv: iv[1].effective_from)
    for (_, prev), (j, nxt) in itertools.pairwise(ordered):
        where = f"versions[{j}].effective_from"
        if prev.effective_to is None:
            raise _Bad(where, f"overlap: the version from {prev.effective_from} has no "
                              f"effective_to but another starts {nxt.effective_from}")
        expected = prev.effective_to + timedelta(days=1)
        if nxt.effective_from < expected:
            raise _Bad(where, f"overlap: starts {nxt.effective_from} but the previous version "
                              f"runs to {prev.effective_to}")
        if nxt.effective_from > expected:
            raise _Bad(where, f"gap: starts {nxt.effective_from} but the previous version ends "
                              f"{prev.effective_to} (expected {expected})")


def parse_tariff(data: dict[str, Any], file_name: str, stem: str) -> Tariff:
    """Build one tariff from a parsed TOML document; raises ``TariffError`` naming the field."""
    try:
        _keys(data, "", {"id", "name", "customer_class", "versions"}, {"notes"})
        tariff_id = _str(data["id"], "id")
        if tariff_id != stem:
            raise _Bad("id", f"id {tariff_id!r} must match the file name {stem!r}")
        name = _str(data["name"], "name")
        cls = data["customer_class"]
        if cls not in CUSTOMER_CLASSES:
            raise _Bad("customer_class", f"must be one of {', '.join(CUSTOMER_CLASSES)}, "
                                         f"got {cls!r}")
        raw_versions = data["versions"]
        if not isinstance(raw_versions, list) or not raw_versions:
            raise _Bad("versions", "at least one [[versions]] table is required")
        versions = [(i, _version(v, f"versions[{i}]", tariff_id, name, cls))
                    for i, v in enumerate(raw_versions)]
        _check_continuity(versions)
    except _Bad as bad:
        raise TariffError(bad.reason, where=f"{file_name}: {bad.field}") from None
    ordered = tuple(sorted((v for _, v in versions), key=lambda v: v.effective_from))
    return Tariff(tariff_id, name, cls, ordered, file_name)


def validate_directory(directory: Path) -> tuple[dict[str, Tariff], list[Finding]]:
    """Parse every ``*.toml`` file; return the good tariffs and one finding per bad file."""
    tariffs: dict[str, Tariff] = {}
    findings: list[Finding] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            findings.append(Finding(path.name, "(syntax)", str(exc)))
            continue
        try:
            tariff = parse_tariff(data, path.name, path.stem)
        except TariffError as err:
            where = (err.where or "").removeprefix(f"{path.name}: ")
            findings.append(Finding(path.name, where, err.message))
            continue
        tariffs[tariff.tariff_id] = tariff
    return tariffs, findings


def load_directory(directory: Path) -> dict[str, Tariff]:
    """All tariffs of a directory, or ``TariffError`` listing every bad file."""
    if not directory.is_dir():
        raise TariffError(f"tariff directory not found: {directory}")
    tariffs, findings = validate_directory(directory)
    if findings:
        raise TariffError("; ".join(str(f) for f in findings))
    if not tariffs:
        raise TariffError(f"no tariff files (*.toml) in {directory}")
    return tariffs
