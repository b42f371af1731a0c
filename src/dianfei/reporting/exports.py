"""CSV exports in the columns of docs/interfaces (used to check figures independently).

Amounts are yuan strings with two places, quantities decimal strings, dates YYYY-MM-DD,
instants ISO 8601 with the business offset (+08:00).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from dianfei.core.clock import Period
from dianfei.core.csvsafe import safe_frame
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


def bills_frame(db: Database, period: Period | None, as_of: date | None = None) -> pl.DataFrame:
    """bill_id, customer_id, period, issued_on, due_on, amount, kwh, paid_amount,
    paid_in_full_on, status — as of ``as_of`` (None: everything so far). ``paid_amount`` sums
    the clearings to the bill up to then; ``paid_in_full_on`` is the day they last reached its
    amount (a zero bill is settled on issue): :func:`dianfei.reporting.kpi.bill_state`, the same
    function the KPIs use, so the file and ``dianfei kpi`` agree to the fen."""
    import polars as pl

    from dianfei.billing.service import bills_between
    from dianfei.payments.service import bill_clearings
    from dianfei.reporting.kpi import bill_state

    first, last = (str(period), str(period)) if period else ("0000-01", "9999-12")
    bills = bills_between(db.engine, first, last)
    f = bill_state(bills, bill_clearings(db.engine, first, last), as_of)
    return f.with_columns(
        pl.when(pl.col("status") == "cancelled").then(pl.lit("cancelled"))
        .when(pl.col("paid") >= pl.col("amount")).then(pl.lit("paid"))
        .when(pl.col("paid") > 0).then(pl.lit("partially_paid"))
        .otherwise(pl.lit("open")).alias("status"),
        pl.col("paid").alias("paid_amount"),
    ).select("bill_id", "customer_id", "period", "issued_on", "due_on", _two_places("amount"),
             _two_places("kwh"),
             _two_places("paid_amount"), "paid_in_full_on", "status")


def payments_frame(db: Database, period: Period | None, as_of: date | None = None) -> pl.DataFrame:
    """One row per allocation: payment_id, customer_id, paid_at, amount, channel, bill_id,
    allocated_to (bill, late_fee, credit). ``paid_at`` is when the money reached the item (the
    payment's time; for credit used by a later bill, the moment it was used); with ``as_of``
    only the rows whose ``paid_at`` falls on or before that business day (Asia/Shanghai)."""
    from dianfei.payments.service import allocation_rows
    from dianfei.reporting.kpi import business_day

    f = allocation_rows(db.engine, str(period) if period else None)
    if as_of is not None:
        f = f.filter(business_day("paid_at") <= as_of)
    return f.with_columns(_instant("paid_at"), _two_places("amount")).select(
        "payment_id", "customer_id", "paid_at", "amount", "channel", "bill_id", "allocated_to")


def export(db: Database, kind: str, out: Path, period: Period | None = None,
           as_of: date | None = None, *, reveal: bool = False) -> int:
    """Write one export as CSV (UTF-8; ``bom=True`` files for Excel come from the reports).
    ``as_of`` applies to bills and payments only (what was paid by then).

    The customers export holds personal data: name, address and phone are masked (张**,
    the first characters of the address, 138****5678) unless ``reveal`` — then they are written
    in clear and a ``pii.revealed`` record goes on the audit chain before the file is written
    (who exported how many customers' data, not the data). The CLI has no roles, so revealing
    is an explicit, recorded choice of whoever runs it."""

    if as_of is not None and kind not in ("bills", "payments"):
        raise ValidationError(f"--as-of applies to the bills and payments exports, not {kind!r}")
    if reveal and kind != "customers":
        raise ValidationError(f"--reveal applies to the customers export (the only one with "
                              f"personal data), not {kind!r}")
    if kind == "bills":
        frame = bills_frame(db, period, as_of)
    elif kind == "payments":
        frame = payments_frame(db, period, as_of)
    elif kind == "ledger":
        frame = read_frame(db.engine, "SELECT entry_id, customer_id, posted_at, kind, amount, "
                           "reference FROM ledger_entries ORDER BY entry_id",
                           instants=("posted_at",))
        frame = frame.with_columns(_instant("posted_at"), _two_places("amount"))
    elif kind == "customers":
        frame = customers_frame(db, reveal=reveal)
    else:
        raise ValidationError(f"export kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    safe_frame(frame).write_csv(out)  # a name like =HYPERLINK(…) must not run in Excel
    return frame.height


#: the customers export's columns (docs/interfaces.md, customers.csv)
CUSTOMER_COLUMNS = ("customer_id", "name", "customer_class", "region", "address", "phone",
                    "tariff_id", "low_income", "protected", "payment_mode", "opened_on")


def customers_frame(db: Database, *, reveal: bool = False) -> pl.DataFrame:
    """The customers in :data:`CUSTOMER_COLUMNS`, name/address/phone masked unless ``reveal``
    (then audited as ``pii.revealed``, committed before the caller writes anything)."""
    import polars as pl

    from dianfei.core.crypto import mask_address, mask_name, mask_phone
    from dianfei.db.pii import CUSTOMER_PHONE, cipher_for

    cipher = cipher_for(db)
    frame = read_frame(
        db.engine,
        "SELECT c.customer_id, c.name, c.customer_class, c.region_id AS region, c.address, "
        "c.phone_enc, t.tariff_id, c.low_income, c.protected, c.payment_mode, c.opened_on "
        "FROM customers c LEFT JOIN tariff_assignments t ON t.account_id = c.customer_id "
        "AND t.effective_to IS NULL ORDER BY c.customer_id", dates=("opened_on",))
    phones = [cipher.decrypt(p, CUSTOMER_PHONE.context(c)) for c, p in
              zip(frame["customer_id"].to_list(), frame["phone_enc"].to_list(), strict=True)]
    if reveal:
        from dianfei.audit import service as audit

        with db.engine.begin() as conn:
            audit.record(conn, "pii.revealed", "customers",
                         {"export": "customers", "rows": frame.height,
                          "columns": ["name", "address", "phone"]})
    else:
        phones = [mask_phone(p) for p in phones]
        frame = frame.with_columns(
            pl.Series("name", [mask_name(v) for v in frame["name"].to_list()], dtype=pl.String),
            pl.Series("address", [mask_address(v) for v in frame["address"].to_list()],
                      dtype=pl.String))
    return frame.with_columns(
        pl.Series("phone", phones, dtype=pl.String),
        pl.col("low_income").cast(pl.Int8), pl.col("protected").cast(pl.Int8),
    ).select(*CUSTOMER_COLUMNS)
