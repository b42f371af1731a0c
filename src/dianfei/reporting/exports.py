"""CSV exports in the columns of docs/interfaces (used to check figures independently).

Amounts are yuan strings with two places, quantities decimal strings, dates YYYY-MM-DD,
instants ISO 8601 with the business offset (+08:00).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

KINDS = ("bills", "payments", "ledger", "customers")


def _two_places(col: str) -> pl.Expr:
    """An integer column in hundredths (fen, 0.01 kWh) as a decimal string with two places."""
    import polars as pl

    c = pl.col(col)
    sign = pl.when(c < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str([sign, (c.abs() // 100).cast(pl.String), pl.lit("."),
                          (c.abs() % 100).cast(pl.String).str.zfill(2)]).alias(col)


def _instant(col: str) -> pl.Expr:
    import polars as pl

    return (pl.col(col).dt.convert_time_zone("Asia/Shanghai")
            .dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias(col))


def bills_frame(db: Database, period: Period | None) -> pl.DataFrame:
    """bill_id, customer_id, period, issued_on, due_on, amount, kwh, paid_amount,
    paid_in_full_on, status. ``paid_amount`` sums the payment allocations to the bill;
    ``paid_in_full_on`` is the business date of the allocation that completed it (a zero bill is
    settled on issue)."""
    import polars as pl

    from dianfei.payments.service import bill_payment_state

    where, params = ("WHERE period = :p", {"p": str(period)}) if period else ("", {})
    f = read_frame(db.engine,
                   f"SELECT bill_id, customer_id, period, issued_on, due_on, amount, kwh, status "
                   f"FROM bills {where} ORDER BY period, bill_id", params,
                   dates=("issued_on", "due_on"))
    allocs = bill_payment_state(db.engine, str(period) if period else None)
    allocs = allocs.with_columns(
        pl.col("amount").cast(pl.Int64),
        pl.col("allocated_at").dt.convert_time_zone("Asia/Shanghai").dt.date().alias("_day"))
    allocs = allocs.with_columns(pl.col("amount").cum_sum().over("bill_id").alias("_cum"))
    paid = allocs.group_by("bill_id").agg(pl.col("amount").sum().alias("paid_amount"))
    f = f.join(paid, on="bill_id", how="left").with_columns(
        pl.col("paid_amount").fill_null(0).cast(pl.Int64))
    # the first allocation after which the cumulative reaches the bill's amount
    full = (allocs.join(f.select("bill_id", pl.col("amount").alias("_amt")), on="bill_id")
            .filter(pl.col("_cum") >= pl.col("_amt"))
            .group_by("bill_id").agg(pl.col("_day").first().alias("_full_day")))
    f = f.join(full, on="bill_id", how="left")
    settled = (pl.col("status") != "cancelled") & (pl.col("paid_amount") >= pl.col("amount"))
    return f.with_columns(
        pl.when(settled & (pl.col("amount") <= 0)).then(pl.col("issued_on"))
        .when(settled).then(pl.max_horizontal("_full_day", "issued_on"))
        .otherwise(None).alias("paid_in_full_on"),
        pl.when(pl.col("status") == "cancelled").then(pl.lit("cancelled"))
        .when(pl.col("paid_amount") >= pl.col("amount")).then(pl.lit("paid"))
        .when(pl.col("paid_amount") > 0).then(pl.lit("partially_paid"))
        .otherwise(pl.lit("open")).alias("status"),
    ).select("bill_id", "customer_id", "period", "issued_on", "due_on", _two_places("amount"),
             _two_places("kwh"),
             _two_places("paid_amount"), "paid_in_full_on", "status")


def payments_frame(db: Database, period: Period | None) -> pl.DataFrame:
    """One row per allocation: payment_id, customer_id, paid_at, amount, channel, bill_id,
    allocated_to (bill, late_fee, credit). ``paid_at`` is when the money reached the item (the
    payment's time; for credit used by a later bill, the moment it was used)."""
    from dianfei.payments.service import allocation_rows

    f = allocation_rows(db.engine, str(period) if period else None)
    return f.with_columns(_instant("paid_at"), _two_places("amount")).select(
        "payment_id", "customer_id", "paid_at", "amount", "channel", "bill_id", "allocated_to")


def export(db: Database, kind: str, out: Path, period: Period | None = None) -> int:
    import polars as pl

    if kind == "bills":
        frame = bills_frame(db, period)
    elif kind == "payments":
        frame = payments_frame(db, period)
    elif kind == "ledger":
        frame = read_frame(db.engine, "SELECT entry_id, customer_id, posted_at, kind, amount, "
                           "reference FROM ledger_entries ORDER BY entry_id",
                           instants=("posted_at",))
        frame = frame.with_columns(_instant("posted_at"), _two_places("amount"))
    elif kind == "customers":
        from dianfei.core.crypto import mask_phone
        from dianfei.db.pii import CUSTOMER_PHONE, cipher_for

        cipher = cipher_for(db)
        frame = read_frame(
            db.engine,
            "SELECT c.customer_id, c.name, c.customer_class, c.region_id AS region, c.address, "
            "c.phone_enc, t.tariff_id, c.low_income, c.protected, c.payment_mode, c.opened_on "
            "FROM customers c LEFT JOIN tariff_assignments t ON t.account_id = c.customer_id "
            "AND t.effective_to IS NULL ORDER BY c.customer_id", dates=("opened_on",))
        phones = [mask_phone(cipher.decrypt(p, CUSTOMER_PHONE.context(c))) for c, p in
                  zip(frame["customer_id"].to_list(), frame["phone_enc"].to_list(), strict=True)]
        frame = frame.with_columns(
            pl.Series("phone", phones, dtype=pl.String),
            pl.col("low_income").cast(pl.Int8), pl.col("protected").cast(pl.Int8),
        ).select("customer_id", "name", "customer_class", "region", "address", "phone",
                 "tariff_id", "low_income", "protected", "payment_mode", "opened_on")
    else:
        raise ValidationError(f"export kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out)
    return frame.height
