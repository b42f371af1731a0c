"""From register reads to billed quantities, as column operations (pure functions).

For each meter and register of a period (P):
- the closing read is the last read in (start of P, end of P]; monthly frozen reads are taken at
  00:00 on the first day of the next month, which is exactly the end of P;
- the opening read is the last read at or before the start of P (the previous period's closing
  read, or the installation read for a new meter);
- consumption = (closing − opening) × multiplier. A closing read lower than the opening one is a
  register rollover (翻转) when going round 10**digits explains it with less than half a turn,
  otherwise a fault: the account goes to the exceptions list, never onto a bill;
- ``demand_kw`` is the period's maximum demand, not cumulative: its closing value × multiplier.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

CUMULATIVE = ("total", "sharp", "peak", "flat", "valley", "kvarh")
#: rater input column for each register
RATER_COLUMN = {"total": "kwh", "sharp": "sharp_kwh", "peak": "peak_kwh", "flat": "flat_kwh",
                "valley": "valley_kwh", "kvarh": "kvarh", "demand_kw": "max_demand_kw"}


def select_reads(reads: pl.DataFrame, start: datetime, end: datetime,
                 opening_at: pl.DataFrame | None = None) -> pl.DataFrame:
    """Opening and closing read per (meter, register).

    ``reads``: meter_id, register, read_at (UTC), value, source. ``opening_at`` (meter_id,
    open_from): where the meter's last bill stopped. The opening read is the read at that instant
    (起码 = 上期止码), so a faulty read that was never billed is never started from; meters
    without a previous bill start from the last read at or before ``start``.
    Returns meter_id, register, open_value, open_at, open_source, close_value, close_at,
    close_source (open_* null when there is no read at or before ``start``; close_* null
    when none in (start, end]).
    """
    s = reads.sort("meter_id", "register", "read_at")
    closing = (
        s.filter((pl.col("read_at") > start) & (pl.col("read_at") <= end))
        .group_by("meter_id", "register").last()
        .select("meter_id", "register", pl.col("value").alias("close_value"),
                pl.col("read_at").alias("close_at"), pl.col("source").alias("close_source"))
    )
    opening = (
        s.filter(pl.col("read_at") <= start)
        .group_by("meter_id", "register").last()
        .select("meter_id", "register", pl.col("value").alias("open_value"),
                pl.col("read_at").alias("open_at"), pl.col("source").alias("open_source"))
    )
    if opening_at is not None and opening_at.height:
        exact = (
            s.join(opening_at, on="meter_id", how="inner")
            .filter(pl.col("read_at") == pl.col("open_from"))
            .group_by("meter_id", "register").last()
            .select("meter_id", "register", pl.col("value").alias("open_value"),
                    pl.col("read_at").alias("open_at"), pl.col("source").alias("open_source"))
        )
        opening = pl.concat([exact, opening.join(exact, on=["meter_id", "register"],
                                                 how="anti")])
    return closing.join(opening, on=["meter_id", "register"], how="full", coalesce=True)


def register_consumption(selected: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """Per (meter, register): quantity in 0.01 units after the multiplier, or a problem.

    ``meters``: meter_id, multiplier, digits. Returns meter_id, register, quantity, estimated,
    problem (null when fine), detail.
    """
    wrap = (pl.lit(10, pl.Int64).pow(pl.col("digits").cast(pl.Int64)) * 100)
    df = selected.join(meters.select("meter_id", "multiplier", "digits"), on="meter_id",
                       how="inner")
    cumulative = pl.col("register").is_in(list(CUMULATIVE))
    raw_diff = pl.col("close_value") - pl.col("open_value")
    df = df.with_columns(
        pl.when(~cumulative).then(pl.col("close_value"))
        .when(raw_diff >= 0).then(raw_diff)
        .when(raw_diff + wrap < wrap // 2).then(raw_diff + wrap)
        .otherwise(None).alias("diff"),
        (pl.col("close_value") < 0).or_(pl.col("open_value") < 0).alias("negative"),
        (raw_diff < 0).alias("went_down"),
    )
    problem = (
        pl.when(pl.col("close_value").is_null()).then(pl.lit("no_read"))
        .when(pl.col("negative")).then(pl.lit("invalid_read"))
        .when(cumulative & pl.col("open_value").is_null()).then(pl.lit("no_previous_read"))
        .when(pl.col("close_value") >= wrap).then(pl.lit("invalid_read"))
        .when(cumulative & pl.col("diff").is_null()).then(pl.lit("read_backwards"))
        .otherwise(None)
    )
    detail = (
        pl.when(pl.col("close_value").is_null())
        .then(pl.format("meter {} register {}: no read in the period",
                        "meter_id", "register"))
        .when(pl.col("negative") | (pl.col("close_value") >= wrap))
        .then(pl.format("meter {} register {}: read {} is outside the register's range",
                        "meter_id", "register", "close_value"))
        .when(cumulative & pl.col("open_value").is_null())
        .then(pl.format("meter {} register {}: no previous read to start from",
                        "meter_id", "register"))
        .otherwise(pl.format(
            "meter {} register {}: read {} is lower than the previous read {} and is not a "
            "rollover", "meter_id", "register", "close_value", "open_value"))
    )
    estimated = ((pl.col("close_source") == "estimated")
                 | (pl.col("open_source") == "estimated")).fill_null(False)
    return df.with_columns(
        (pl.col("diff") * pl.col("multiplier")).alias("quantity"),
        estimated.alias("estimated"),
        problem.alias("problem"),
    ).with_columns(
        pl.when(pl.col("problem").is_null()).then(None).otherwise(detail).alias("detail")
    ).select("meter_id", "register", "quantity", "estimated", "problem", "detail",
             "open_value", "open_at", "close_value", "close_at")


def account_usage(consumption: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pivot per-register quantities to one rater row per meter.

    Returns (usage, problems): usage has meter_id, kwh, sharp_kwh … max_demand_kw, estimated and
    the total register's reads; problems has meter_id, reason, detail (first problem per meter).
    """
    problems = (consumption.filter(pl.col("problem").is_not_null())
                .sort("meter_id", "register").group_by("meter_id", maintain_order=True).first()
                .select("meter_id", pl.col("problem").alias("reason"), "detail"))
    ok = consumption.join(problems.select("meter_id"), on="meter_id", how="anti")
    wide = ok.pivot(on="register", index="meter_id", values="quantity")
    for reg, col in RATER_COLUMN.items():
        wide = (wide.rename({reg: col}) if reg in wide.columns
                else wide.with_columns(pl.lit(None, pl.Int64).alias(col)))
    flags = ok.group_by("meter_id").agg(pl.col("estimated").any())
    total = ok.filter(pl.col("register") == "total").select(
        "meter_id", pl.col("open_value").alias("read_from"), pl.col("open_at").alias("read_from_at"),
        pl.col("close_value").alias("read_to"), pl.col("close_at").alias("read_to_at"))
    usage = (wide.join(flags, on="meter_id", how="left").join(total, on="meter_id", how="left")
             .select("meter_id", *RATER_COLUMN.values(), "estimated", "read_from",
                     "read_from_at", "read_to", "read_to_at"))
    missing_total = usage.filter(pl.col("kwh").is_null()).select(
        "meter_id", pl.lit("no_read").alias("reason"),
        pl.format("meter {} register total: no read in the period", "meter_id").alias("detail"))
    usage = usage.filter(pl.col("kwh").is_not_null())
    return usage, pl.concat([problems, missing_total])


def fit_registers_to_tariff(usage: pl.DataFrame,
                            tou_periods: dict[str, tuple[str, ...]]) -> pl.DataFrame:
    """Bring the meter's time-of-use registers to the periods the account's tariff prices.

    ``tou_periods`` maps each tariff id to the TOU periods it prices (empty for a tariff without
    time of use). Two rules, both from practice:
    - a tariff without a sharp (尖峰) period counts the sharp hours as peak (尖峰并入高峰), so a
      four-register meter on a three-period tariff adds its sharp register to peak;
    - a tariff without time of use bills the total register; TOU registers are informational.
    Any other mismatch (e.g. a flat register on a two-period tariff) is left for the rater to
    refuse, with a reason, rather than guessed.
    """
    tou_cols = ("sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh")
    no_tou = [t for t, p in tou_periods.items() if not p]
    no_sharp = [t for t, p in tou_periods.items() if p and "sharp" not in p]
    fold = pl.col("tariff_id").is_in(no_sharp) & pl.col("sharp_kwh").is_not_null()
    out = usage.with_columns(
        pl.when(fold).then(pl.col("peak_kwh").fill_null(0) + pl.col("sharp_kwh"))
        .otherwise(pl.col("peak_kwh")).alias("peak_kwh"),
        pl.when(fold).then(None).otherwise(pl.col("sharp_kwh")).alias("sharp_kwh"),
    )
    return out.with_columns([
        pl.when(pl.col("tariff_id").is_in(no_tou)).then(None).otherwise(pl.col(c)).alias(c)
        for c in tou_cols
    ])
