"""The columnar rater: a whole bill run's usages → bill lines, with Polars.

Rows are grouped by tariff id (a utility has a handful of tariffs), the version in force is
looked up once per group, and every charge is a vectorised integer expression. It mirrors
``rating_scalar`` exactly — the same lines, in the same order, with the same rounding — and
property tests check that line by line.

Integer arithmetic only: quantities in 0.01 units, prices in 0.0001 yuan, amounts in fen.
A line amount is half-up(quantity × price / 10⁴), rounding away from zero on ties as
``div_round_half_up`` does. The power factor is computed exactly with 128-bit integers (see
``power_factor.power_factor_hundredths``) — no float anywhere on the money path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from dianfei.core.clock import Period
from dianfei.core.errors import TariffError
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
    RatingError,
    TariffVersion,
    TieredEnergy,
    TierSchedule,
    TouEnergy,
    TouTieredEnergy,
    pf_label,
)
from dianfei.tariffs.power_factor import standard_tables
from dianfei.tariffs.service import TariffCatalogue

#: columns of the optional per-meter frame (an account billed on several meters)
METER_COLUMNS = ("kwh", "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh")

#: input columns holding quantities in 0.01 units (nullable except kwh)
QTY_COLUMNS = ("kwh", "ytd_kwh", "sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh", "kvarh",
               "capacity_kva", "max_demand_kw")

LINES_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "line_no": pl.Int32(),
    "code": pl.String(),
    "description": pl.String(),
    "quantity": pl.Int64(),
    "unit": pl.String(),
    "unit_price": pl.Int64(),
    "amount": pl.Int64(),
    "power_factor": pl.Int32(),
    "percent": pl.Int32(),
    "meter_id": pl.String(),
}
ERRORS_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
}

# 0.01 units × 0.0001 yuan = 10⁻⁶ yuan; one fen is 10⁴ of those.
_AMOUNT_DIVISOR = 10_000
_SQUARES = pl.Series("squares", [k * k for k in range(1, 201)], dtype=pl.Int64)


def half_up_div(numerator: pl.Expr, divisor: int) -> pl.Expr:
    """Integer division rounded half-up, away from zero on ties (as ``div_round_half_up``).

    Polars' ``//`` floors, which would round negative ties the wrong way, so the rounding is
    done on the magnitude and the sign put back.
    """
    if divisor <= 0 or divisor % 2:
        raise ValueError("half_up_div needs a positive even divisor")
    magnitude = (numerator.abs() + divisor // 2) // divisor
    return pl.when(numerator < 0).then(-magnitude).otherwise(magnitude)


def line_amount(qty: pl.Expr, price: pl.Expr) -> pl.Expr:
    return half_up_div(qty * price, _AMOUNT_DIVISOR)


def power_factor_expr(kwh: pl.Expr, kvarh: pl.Expr) -> pl.Expr:
    """Exact PF in hundredths, vectorised: n = (isqrt(⌊40000·P²/S⌋) + 1) // 2, S = P² + Q².

    The products are taken in Int128 so no usage can overflow; ⌊40000·P²/S⌋ ≤ 40000, so its
    integer square root is a count of the squares 1..200² not above it (a sorted search).
    P = Q = 0 is PF 1.00 by convention.
    """
    p = kwh.cast(pl.Int128)
    q = kvarh.cast(pl.Int128)
    s = p * p + q * q
    ratio = ((pl.lit(40_000, pl.Int128) * p * p)
             // pl.when(s == 0).then(pl.lit(1, pl.Int128)).otherwise(s)).cast(pl.Int64)
    root = pl.lit(_SQUARES).search_sorted(ratio, side="right").cast(pl.Int64)
    return pl.when(s == 0).then(pl.lit(100, pl.Int64)).otherwise((root + 1) // 2)


@dataclass(frozen=True)
class _LineSpec:
    """One kind of line a version can produce; ``mask`` says on which rows it appears."""

    code: str
    description: str
    unit: str
    qty: pl.Expr
    price: pl.Expr
    mask: pl.Expr
    pf_base: bool = False
    is_pf: bool = False
    #: rated per meter when the account has meters (flat energy, each TOU period)
    per_meter: bool = False


def _tier_exprs(tiers: TierSchedule, month: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    start = pl.col("ytd_kwh") if tiers.basis == "annual" else pl.lit(0, pl.Int64)
    end = start + pl.col("kwh")
    u1, u2 = tiers.upto_for(month)
    t1 = (end.clip(upper_bound=u1) - start).clip(lower_bound=0)
    t2 = (end.clip(upper_bound=u2) - start.clip(lower_bound=u1)).clip(lower_bound=0)
    t3 = (end - start.clip(lower_bound=u2)).clip(lower_bound=0)
    return t1, t2, t3


def _tou_qty(period: str, periods: tuple[str, ...]) -> pl.Expr:
    """Register kWh, or the remainder of kwh for the one declared period left unread."""
    known = pl.sum_horizontal([pl.col(f"{p}_kwh").fill_null(0) for p in periods])
    return pl.col(f"{period}_kwh").fill_null(pl.col("kwh") - known)


def _tou_checks(version: TariffVersion) -> list[tuple[pl.Expr, str | pl.Expr, pl.Expr]]:
    checks: list[tuple[pl.Expr, str | pl.Expr, pl.Expr]] = []
    energy = version.energy
    if isinstance(energy, TouEnergy | TouTieredEnergy):
        periods = energy.periods
        for p in TOU_PERIODS:
            if p not in periods:
                checks.append((pl.col(f"{p}_kwh").fill_null(0) != 0, "tou_period_not_priced",
                               pl.lit(f"{p} kWh given but the tariff has no {p} price")))
        missing = pl.sum_horizontal([pl.col(f"{p}_kwh").is_null().cast(pl.Int32)
                                     for p in periods])
        known = pl.sum_horizontal([pl.col(f"{p}_kwh").fill_null(0) for p in periods])
        checks.append((missing > 1, "tou_registers_missing",
                       pl.lit(f"time-of-use kWh missing for more than one of "
                              f"{', '.join(periods)}")))
        checks.append((((missing == 1) & (known > pl.col("kwh")))
                       | ((missing == 0) & (known != pl.col("kwh"))), "tou_sum_mismatch",
                       pl.format("time-of-use kWh sum to {} (0.01 kWh), kwh is {}",
                                 known, pl.col("kwh"))))
    return checks


def _chain(checks: list[tuple[pl.Expr, str | pl.Expr, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
    reason: pl.Expr = pl.lit(None, pl.String)
    detail: pl.Expr = pl.lit(None, pl.String)
    for cond, code, text in reversed(checks):
        reason = pl.when(cond).then(pl.lit(code) if isinstance(code, str) else code)\
            .otherwise(reason)
        detail = pl.when(cond).then(text).otherwise(detail)
    return reason, detail


def _meter_error_exprs(version: TariffVersion) -> tuple[pl.Expr, pl.Expr]:
    """(reason, detail) per meter row, in the scalar rater's order for one meter."""
    negative = pl.any_horizontal([pl.col(c) < 0 for c in METER_COLUMNS]).fill_null(False)
    checks: list[tuple[pl.Expr, str | pl.Expr, pl.Expr]] = [
        (pl.col("kwh").is_null() | negative, "invalid_quantity",
         pl.format("meter {}: kwh is required and quantities must not be negative",
                   pl.col("meter_id")))]
    return _chain(checks + _tou_checks(version))


def _error_exprs(version: TariffVersion, with_meters: bool) -> tuple[pl.Expr, pl.Expr]:
    """(reason, detail) per row, null when the row can be rated; first failing check wins, in
    the order the scalar rater checks. ``with_meters``: the rows carry ``_nm`` (number of
    meters, null for a row rated without meters), ``_mreason``/``_mdetail`` (the first failing
    meter's) and ``_mkwh`` (the meters' kWh sum)."""
    checks: list[tuple[pl.Expr, str | pl.Expr, pl.Expr]] = []
    # computed before the TOU columns of accounts with meters are replaced (``_negative``)
    checks.append((pl.col("kwh").is_null() | pl.col("_negative"), "invalid_quantity",
                   pl.lit("kwh is required and quantities must not be negative")))
    if with_meters:
        has = pl.col("_nm").is_not_null()
        checks.append((has & pl.col("_mreason").is_not_null(), pl.col("_mreason"),
                       pl.col("_mdetail")))
        checks.append((has & (pl.col("_mkwh") != pl.col("kwh")), "meter_sum_mismatch",
                       pl.format("the meters' kWh sum to {} (0.01 kWh), kwh is {}",
                                 pl.col("_mkwh"), pl.col("kwh"))))
    # with meters the TOU columns are the sums of the meters' checked quantities: they pass
    checks += _tou_checks(version)
    basic = version.basic
    if basic is not None:
        cap = pl.col("capacity_kva").is_not_null()
        dem = pl.col("max_demand_kw").is_not_null()
        checks.append((cap & dem, "basic_basis_ambiguous",
                       pl.lit("give either capacity (kVA) or maximum demand (kW), not both")))
        checks.append((~cap & ~dem, "capacity_missing",
                       pl.lit(f"tariff {version.tariff_id} is two-part: give capacity_kva "
                              f"or max_demand_kw")))
        if basic.capacity_price is None:
            checks.append((cap, "basic_basis_not_priced",
                           pl.lit(f"tariff {version.tariff_id} has no basic charge by "
                                  f"capacity")))
        if basic.demand_price is None:
            checks.append((dem, "basic_basis_not_priced",
                           pl.lit(f"tariff {version.tariff_id} has no basic charge by "
                                  f"maximum demand")))
    return _chain(checks)


def _line_specs(version: TariffVersion, period: Period) -> list[_LineSpec]:
    """The possible lines of a version in bill order (see ``rating_scalar``)."""
    true = pl.lit(True)
    kwh = pl.col("kwh")
    specs: list[_LineSpec] = []
    basic = version.basic
    if basic is not None:
        if basic.capacity_price is not None:
            specs.append(_LineSpec("basic_capacity", BASIC_CAPACITY_LABEL, "kVA",
                                   pl.col("capacity_kva"), pl.lit(basic.capacity_price),
                                   pl.col("capacity_kva").is_not_null(), pf_base=True))
        if basic.demand_price is not None:
            specs.append(_LineSpec("basic_demand", BASIC_DEMAND_LABEL, "kW",
                                   pl.col("max_demand_kw"), pl.lit(basic.demand_price),
                                   pl.col("max_demand_kw").is_not_null(), pf_base=True))
    energy = version.energy
    if isinstance(energy, FlatEnergy):
        specs.append(_LineSpec("energy", FLAT_LABEL, "kWh", kwh, pl.lit(energy.price), true,
                               pf_base=True, per_meter=True))
    elif isinstance(energy, TieredEnergy):
        for i, (qty, price) in enumerate(zip(_tier_exprs(energy.tiers, period.month),
                                             energy.prices, strict=True)):
            specs.append(_LineSpec(f"energy_tier{i + 1}", TIER_LABELS[i], "kWh", qty,
                                   pl.lit(price), true if i == 0 else qty > 0, pf_base=True))
    elif isinstance(energy, TouEnergy | TouTieredEnergy):
        for p, price in energy.prices:
            specs.append(_LineSpec(f"energy_{p}", TOU_LABELS[p], "kWh",
                                   _tou_qty(p, energy.periods), pl.lit(price), true,
                                   pf_base=True, per_meter=True))
        if isinstance(energy, TouTieredEnergy):
            _, t2, t3 = _tier_exprs(energy.tiers, period.month)
            for i, (qty, inc) in enumerate(zip((t2, t3), energy.increments, strict=True)):
                specs.append(_LineSpec(f"energy_tier{i + 2}_increment", INCREMENT_LABELS[i],
                                       "kWh", qty, pl.lit(inc), qty > 0, pf_base=True))
    else:  # pragma: no cover - the union is closed
        raise TariffError(f"unknown energy component {energy!r}")
    # The PF line's quantity and price are filled in once the base is known.
    specs.append(_LineSpec("pf_adjustment", pf_label(version.pf_standard), "yuan",
                           pl.lit(0), pl.lit(0), pl.col("kvarh").is_not_null(), is_pf=True))
    for fund in version.funds:
        if not fund.exempt:
            specs.append(_LineSpec(f"fund_{fund.name}", fund.description, "kWh", kwh,
                                   pl.lit(fund.price), kwh > 0))
    allowance = version.low_income
    if allowance is not None:
        specs.append(_LineSpec("low_income_allowance", LOW_INCOME_LABEL, "kWh",
                               kwh.clip(upper_bound=allowance.free_kwh),
                               pl.lit(-allowance.price), pl.col("low_income") & (kwh > 0)))
    return specs


def _meter_frame(version: TariffVersion, period: Period, specs: list[_LineSpec],
                 meters: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per-meter energy lines' quantities and amounts (``_q{i}``, ``_p{i}``, ``_a{i}``), and
    their per-account aggregate: ``_nm`` meters, ``_mkwh``, the first failing meter's
    ``_mreason``/``_mdetail``, each TOU period's ``_mq_{p}`` and each line's ``_ma{i}``."""
    reason, detail = _meter_error_exprs(version)
    m = meters.with_columns(reason.alias("_reason"), detail.alias("_detail"))
    cols: list[pl.Expr] = []
    for i, spec in enumerate(specs):
        if spec.per_meter:
            cols += [spec.qty.cast(pl.Int64).alias(f"_q{i}"),
                     spec.price.cast(pl.Int64).alias(f"_p{i}")]
    m = m.with_columns(cols).with_columns(
        line_amount(pl.col(f"_q{i}"), pl.col(f"_p{i}")).alias(f"_a{i}")
        for i, spec in enumerate(specs) if spec.per_meter)
    energy = version.energy
    periods = energy.periods if isinstance(energy, TouEnergy | TouTieredEnergy) else ()
    # rows are in meter order within each account; group_by keeps that order inside a group
    agg = m.group_by("account_id").agg(
        pl.len().alias("_nm"),
        pl.col("kwh").sum().alias("_mkwh"),
        pl.col("_reason").drop_nulls().first().alias("_mreason"),
        pl.col("_detail").drop_nulls().first().alias("_mdetail"),
        *[_tou_qty(p, periods).sum().alias(f"_mq_{p}") for p in periods],
        *[pl.col(f"_a{i}").sum().alias(f"_ma{i}")
          for i, spec in enumerate(specs) if spec.per_meter],
    )
    return m, agg


def _rate_group(version: TariffVersion, period: Period, rows: pl.LazyFrame,
                meters: pl.LazyFrame | None) -> tuple[pl.LazyFrame, list[pl.LazyFrame]]:
    """→ (errors, one lazy frame per kind of line). Each row is checked, then every possible
    line is computed as columns of one wide frame and each kind is filtered out of it.

    ``meters``: the per-meter rows of this group's accounts billed on several meters (with
    ``_mi``, the meter's place within its account); their per-meter lines come from there."""
    specs = _line_specs(version, period)
    pf_index = next(i for i, s in enumerate(specs) if s.is_pf)
    metered = [i for i, s in enumerate(specs) if s.per_meter]  # contiguous energy lines
    energy = version.energy
    periods = energy.periods if isinstance(energy, TouEnergy | TouTieredEnergy) else ()
    meter_rows: pl.LazyFrame | None = None
    rows = rows.with_columns(pl.any_horizontal([pl.col(c) < 0 for c in QTY_COLUMNS])
                             .fill_null(False).alias("_negative"))
    if meters is not None:
        meter_rows, agg = _meter_frame(version, period, specs, meters)
        rows = rows.join(agg, on="account_id", how="left")
        has = pl.col("_nm").is_not_null()
        # the account's TOU quantities are the sums of its meters' (each checked on its own)
        rows = rows.with_columns(
            pl.when(has).then(pl.col(f"_mq_{p}") if p in periods else pl.lit(None, pl.Int64))
            .otherwise(pl.col(f"{p}_kwh")).alias(f"{p}_kwh") for p in TOU_PERIODS)
    else:
        rows = rows.with_columns(pl.lit(None, pl.UInt32).alias("_nm"))
    reason, detail = _error_exprs(version, meters is not None)
    checked = rows.with_columns(reason.alias("_reason"), detail.alias("_detail"))
    errors = (checked.filter(pl.col("_reason").is_not_null())
              .select("account_id", pl.col("_reason").alias("reason"),
                      pl.col("_detail").alias("detail")))
    ok = checked.filter(pl.col("_reason").is_null())

    stage1: list[pl.Expr] = []
    for i, spec in enumerate(specs):
        if not spec.is_pf:
            stage1.append(spec.qty.cast(pl.Int64).alias(f"_q{i}"))
            stage1.append(spec.price.cast(pl.Int64).alias(f"_p{i}"))
        stage1.append(spec.mask.fill_null(False).alias(f"_m{i}"))
    wide = ok.with_columns(stage1)
    has_meters = pl.col("_nm").is_not_null()
    wide = wide.with_columns(
        (pl.when(has_meters).then(pl.col(f"_ma{i}"))
         .otherwise(line_amount(pl.col(f"_q{i}"), pl.col(f"_p{i}")))
         if s.per_meter and meters is not None
         else line_amount(pl.col(f"_q{i}"), pl.col(f"_p{i}"))).alias(f"_a{i}")
        for i, s in enumerate(specs) if not s.is_pf)

    # 力调: base = basic + energy amounts; percentage from the version's standard table.
    base = pl.sum_horizontal([pl.col(f"_a{i}").fill_null(0)
                              for i, s in enumerate(specs) if s.pf_base])
    pf = power_factor_expr(pl.col("kwh"), pl.col("kvarh"))
    if version.pf_standard is None:
        percent: pl.Expr = pl.lit(0, pl.Int64)
    else:
        table = pl.Series("pct", standard_tables()[version.pf_standard].percent_by_pf,
                          dtype=pl.Int64)
        percent = pl.lit(table).gather(pf)
    has_kvarh = pl.col("kvarh").is_not_null()
    wide = wide.with_columns(
        pl.when(has_kvarh).then(base).alias(f"_q{pf_index}"),
        pl.when(has_kvarh).then(pf).cast(pl.Int32).alias("_pf"),
        pl.when(has_kvarh).then(percent).cast(pl.Int64).alias(f"_p{pf_index}"),
    ).with_columns(
        line_amount(pl.col(f"_q{pf_index}"), pl.col(f"_p{pf_index}")).alias(f"_a{pf_index}"),
    )
    # Line numbers: a running count of the lines present on the row, in bill order; an
    # account with n meters has n lines for each per-meter kind (meter by meter), so the lines
    # after them move on by (n − 1) × their count.
    shift = ((pl.col("_nm").cast(pl.Int32) - 1) * len(metered)).fill_null(0)
    wide = wide.with_columns(
        (pl.sum_horizontal([pl.col(f"_m{j}").cast(pl.Int32) for j in range(i + 1)])
         + (shift if metered and i > metered[-1] else 0))
        .cast(pl.Int32).alias(f"_n{i}")
        for i in range(len(specs))
    )
    parts: list[pl.LazyFrame] = []
    null_i32 = pl.lit(None, pl.Int32)
    null_str = pl.lit(None, pl.String)
    for i, spec in enumerate(specs):
        present = pl.col(f"_m{i}") & ~has_meters if spec.per_meter else pl.col(f"_m{i}")
        parts.append(wide.filter(present).select(
            "account_id",
            pl.col(f"_n{i}").alias("line_no"),
            pl.lit(spec.code).alias("code"),
            pl.lit(spec.description).alias("description"),
            pl.col(f"_q{i}").alias("quantity"),
            pl.lit(spec.unit).alias("unit"),
            pl.col(f"_p{i}").alias("unit_price"),
            pl.col(f"_a{i}").alias("amount"),
            (pl.col("_pf") if spec.is_pf else null_i32).alias("power_factor"),
            (pl.col(f"_p{i}").cast(pl.Int32) if spec.is_pf else null_i32).alias("percent"),
            (pl.col("meter_id") if spec.per_meter else null_str).alias("meter_id"),
            "_row",
        ))
    if meter_rows is not None and metered:
        before = metered[0] - 1
        nbase = pl.col(f"_n{before}") if before >= 0 else pl.lit(0, pl.Int32)
        accounts = wide.filter(has_meters).select("account_id", "_row",
                                                  nbase.cast(pl.Int32).alias("_nbase"))
        per_meter = meter_rows.join(accounts, on="account_id", how="inner")
        for j, i in enumerate(metered):
            spec = specs[i]
            parts.append(per_meter.select(
                "account_id",
                (pl.col("_nbase") + pl.col("_mi") * len(metered) + j + 1).cast(pl.Int32)
                .alias("line_no"),
                pl.lit(spec.code).alias("code"),
                pl.lit(spec.description).alias("description"),
                pl.col(f"_q{i}").alias("quantity"),
                pl.lit(spec.unit).alias("unit"),
                pl.col(f"_p{i}").alias("unit_price"),
                pl.col(f"_a{i}").alias("amount"),
                null_i32.alias("power_factor"),
                null_i32.alias("percent"),
                pl.col("meter_id"),
                "_row",
            ))
    return errors, parts


def _prepare(usage: pl.DataFrame) -> pl.DataFrame:
    """Check the input columns, add the optional ones as nulls, fix dtypes, number the rows."""
    missing = [c for c in ("account_id", "tariff_id", "kwh") if c not in usage.columns]
    if missing:
        raise TariffError(f"rate_frame: usage frame lacks column(s) {', '.join(missing)}")
    cols: list[pl.Expr] = [pl.col("account_id").cast(pl.String),
                           pl.col("tariff_id").cast(pl.String)]
    for c in QTY_COLUMNS:
        if c in usage.columns:
            dtype = usage.schema[c]
            if not dtype.is_integer():
                raise TariffError(f"rate_frame: column {c} must be integer 0.01 units, "
                                  f"got {dtype}")
            expr = pl.col(c).cast(pl.Int64)
        else:
            expr = pl.lit(None, pl.Int64)
        if c == "ytd_kwh":
            expr = expr.fill_null(0)
        cols.append(expr.alias(c))
    low = (pl.col("low_income").cast(pl.Boolean).fill_null(False)
           if "low_income" in usage.columns else pl.lit(False))
    cols.append(low.alias("low_income"))
    meter = (pl.col("meter_id").cast(pl.String) if "meter_id" in usage.columns
             else pl.lit(None, pl.String))
    cols.append(meter.alias("meter_id"))
    return usage.select(cols).with_row_index("_row")


def _prepare_meters(meters: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """The per-meter rows with their account's tariff and ``_mi``, the meter's place (0, 1, …)
    within its account in the order given."""
    missing = [c for c in ("account_id", "meter_id", "kwh") if c not in meters.columns]
    if missing:
        raise TariffError(f"rate_frame: meters frame lacks column(s) {', '.join(missing)}")
    cols: list[pl.Expr] = [pl.col("account_id").cast(pl.String),
                           pl.col("meter_id").cast(pl.String)]
    for c in METER_COLUMNS:
        if c in meters.columns and not meters.schema[c].is_integer():
            raise TariffError(f"rate_frame: meters column {c} must be integer 0.01 units, "
                              f"got {meters.schema[c]}")
        cols.append((pl.col(c).cast(pl.Int64) if c in meters.columns
                     else pl.lit(None, pl.Int64)).alias(c))
    return (meters.select(cols)
            .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("account_id").alias("_mi"))
            .join(frame.select("account_id", "tariff_id"), on="account_id", how="inner")
            .sort("account_id", "_mi"))


def rate_frame(catalogue: TariffCatalogue, period: Period, usage: pl.DataFrame,
               meters: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rate one row per account → (lines, errors).

    Input columns: ``account_id``, ``tariff_id``, ``kwh`` (Int64, 0.01 kWh) and optionally
    ``ytd_kwh``, ``sharp_kwh``, ``peak_kwh``, ``flat_kwh``, ``valley_kwh``, ``kvarh``,
    ``capacity_kva``, ``max_demand_kw`` (Int64, 0.01 units, nullable) and ``low_income``.
    ``lines`` is ordered by input row then ``line_no``; a row with an error has no lines and
    one row in ``errors`` (``reason`` is a stable code, ``detail`` human text).

    ``meter_id`` (optional usage column): the one meter the row was read on; the flat and
    time-of-use energy lines carry it. ``meters`` (optional; ``account_id``, ``meter_id``,
    ``kwh`` and optionally ``sharp_kwh`` … ``valley_kwh``): the accounts billed on several
    meters, one row per meter in bill order. Their flat / TOU energy lines are rated per meter
    (as ``rating_scalar.rate`` with ``meters``); the usage row holds the account's totals.
    Lines have ``meter_id`` (null on the account's own lines: tiers, basic, PF, funds …).
    """
    frame = _prepare(usage)
    meter_groups: dict[Any, pl.DataFrame] = {}
    if meters is not None and meters.height:
        meter_groups = _prepare_meters(meters, frame).partition_by(
            "tariff_id", as_dict=True, maintain_order=True)
    error_parts: list[pl.LazyFrame] = []
    line_parts: list[pl.LazyFrame] = []
    groups = frame.partition_by("tariff_id", as_dict=True, maintain_order=True)
    for key, rows in groups.items():
        tariff_id = key[0]
        try:
            if tariff_id is None:
                raise RatingError("unknown_tariff", "no tariff id given")
            version = catalogue.version_for(str(tariff_id), period)
        except RatingError as err:
            error_parts.append(rows.lazy().select(
                "account_id", pl.lit(err.reason).alias("reason"),
                pl.lit(err.message).alias("detail")))
            continue
        group_meters = meter_groups.get(key)
        errors, parts = _rate_group(version, period, rows.lazy(),
                                    None if group_meters is None else group_meters.lazy())
        error_parts.append(errors)
        line_parts.extend(parts)
    empty_lines = pl.DataFrame(schema={"_row": pl.UInt32, **LINES_SCHEMA}).lazy()
    lines_lf = (pl.concat([empty_lines.select([*LINES_SCHEMA, "_row"]), *line_parts],
                          how="vertical_relaxed")
                .sort("_row", "line_no")
                .drop("_row")
                .cast(LINES_SCHEMA))  # type: ignore[arg-type]
    errors_lf = pl.concat([pl.DataFrame(schema=ERRORS_SCHEMA).lazy(), *error_parts],
                          how="vertical_relaxed")
    collected = pl.collect_all([lines_lf, errors_lf])
    return collected[0], collected[1]
