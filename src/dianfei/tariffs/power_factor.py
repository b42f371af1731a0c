"""Power-factor adjustment (力调电费): the exact power factor and the standard tables.

The monthly average power factor is PF = kWh / √(kWh² + kvarh²), rounded half-up to 0.01
((83)水电财字第215号). The rounding decides money, so it is computed exactly on integers: no
float, no square root of a real number. The adjustment percentage comes from one of the three
standard tables (0.90 / 0.85 / 0.80), which are data in ``power_factor.toml``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dianfei.core.errors import TariffError
from dianfei.core.rules import rule_cache

TABLES_FILE = Path(__file__).with_name("power_factor.toml")


def power_factor_hundredths(kwh_units: int, kvarh_units: int) -> int:
    """PF in hundredths (0..100), rounded half-up, from active and reactive energy.

    Both quantities are in the same units (here 0.01 kWh / 0.01 kvarh), so the scale cancels.
    With x = P/√S (S = P² + Q²) the rounded value is n = ⌊100x + ½⌋, the largest n with
    (2n − 1)/200 ≤ x, i.e. 2n − 1 ≤ ⌊200P/√S⌋ = isqrt(⌊40000·P²/S⌋) (taking the floor before
    the integer square root does not change the result). Hence n = (m + 1) // 2.

    Convention: no energy at all (P = Q = 0) is PF 1.00 — nothing was drawn, so nothing is
    penalised; P = 0 with Q > 0 is PF 0.00 (the formula gives it).
    """
    if kwh_units < 0 or kvarh_units < 0:
        raise TariffError(f"power factor needs non-negative kWh and kvarh, "
                          f"got {kwh_units} and {kvarh_units} (0.01 units)")
    s = kwh_units * kwh_units + kvarh_units * kvarh_units
    if s == 0:
        return 100
    m = math.isqrt((40_000 * kwh_units * kwh_units) // s)
    return (m + 1) // 2


@dataclass(frozen=True)
class PowerFactorTable:
    """One standard table: percent (hundredths of a percent) for each PF in hundredths."""

    standard: str
    applies_to: str
    source: str
    #: index = PF in hundredths (0..100); value = adjustment in hundredths of a percent
    percent_by_pf: tuple[int, ...]

    def percent(self, pf_hundredths: int) -> int:
        return self.percent_by_pf[pf_hundredths]


def _hundredths(text: Any, where: str) -> int:
    from decimal import Decimal, InvalidOperation

    if not isinstance(text, str):
        raise TariffError("must be a quoted decimal string", where=where)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise TariffError(f"not a decimal: {text!r}", where=where) from None
    scaled = value * 100
    if scaled != scaled.to_integral_value():
        raise TariffError(f"at most 2 decimal places, got {text}", where=where)
    return int(scaled)


def parse_tables(data: dict[str, Any], origin: str) -> dict[str, PowerFactorTable]:
    """Build the tables from the TOML document, refusing gaps and unknown keys."""
    standards = data.get("standards")
    if not isinstance(standards, dict) or set(data) != {"standards"}:
        raise TariffError("expected only a [standards] table", where=origin)
    tables: dict[str, PowerFactorTable] = {}
    for std, body in standards.items():
        where = f"{origin}: standards.{std}"
        if not isinstance(body, dict):
            raise TariffError("must be a table", where=where)
        allowed = {"applies_to", "source", "lowest", "below_step_percent", "table"}
        unknown = set(body) - allowed
        if unknown:
            raise TariffError(f"unknown key(s) {sorted(unknown)}", where=where)
        missing = allowed - set(body)
        if missing:
            raise TariffError(f"missing key(s) {sorted(missing)}", where=where)
        lowest = _hundredths(body["lowest"], f"{where}.lowest")
        step = _hundredths(body["below_step_percent"], f"{where}.below_step_percent")
        rows = {_hundredths(k, f"{where}.table"): _hundredths(v, f"{where}.table.{k}")
                for k, v in body["table"].items()}
        expected = set(range(lowest, 101))
        if set(rows) != expected:
            raise TariffError(f"table must list every PF from 1.00 down to lowest, "
                              f"missing {sorted(expected - set(rows))}, extra "
                              f"{sorted(set(rows) - expected)}", where=f"{where}.table")
        percent = [rows[lowest] + step * (lowest - pf) for pf in range(lowest)]
        percent += [rows[pf] for pf in range(lowest, 101)]
        tables[std] = PowerFactorTable(std, str(body["applies_to"]), str(body["source"]),
                                       tuple(percent))
    return tables


@rule_cache(maxsize=1)
def standard_tables() -> dict[str, PowerFactorTable]:
    """The three standard tables, keyed by the standard as written ("0.90", "0.85", "0.80")."""
    with TABLES_FILE.open("rb") as fh:
        return parse_tables(tomllib.load(fh), TABLES_FILE.name)
