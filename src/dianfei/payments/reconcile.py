"""Daily reconciliation (每日对账) as pure functions over Polars frames: statement lines in,
posted payments in, classes out. No database, no clock: fast (a million lines in a few seconds)
and testable by property.

The classes, and why they are what a reconciler (对账员) works with:
- **matched**: the channel and our ledger agree on the payment and its amount;
- **missing_in_ledger** (长款, the channel holds money we never posted): usually a callback that
  never arrived — safe to post from the statement when its payment order agrees (the service
  does that), otherwise a case for a person;
- **missing_in_statement** (短款, we posted money the channel does not report): a forged or
  mistaken posting, or a payment the channel books on another day — never posted twice, always
  looked at;
- **amount_mismatch**: same transaction, different amount;
- **duplicate**: the statement lists the same transaction again (the first line is classified,
  the later ones are duplicates);
- **refund**: refund lines, set beside the payment they refund (refunds are reversals done
  elsewhere; a refund whose payment is still ``posted`` here goes on the worklist).

Every statement line lands in exactly one class; every ledger payment of the day (or named by a
statement line) lands in exactly one of matched, amount_mismatch, missing_in_statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

#: the posted payments the matcher needs (payments table columns)
LEDGER_SCHEMA: dict[str, Any] = {
    "payment_id": pl.String,
    "transaction_id": pl.String,
    "order_no": pl.String,
    "account_id": pl.String,
    "amount": pl.Int64,
    "business_date": pl.Date,
    "status": pl.String,
    "source": pl.String,
}

#: worklist rows (待澄清) built from a matching: one per discrepancy
DISCREPANCY_SCHEMA: dict[str, Any] = {
    "kind": pl.String,
    "transaction_id": pl.String,
    "ref": pl.String,
    "statement_amount": pl.Int64,
    "ledger_amount": pl.Int64,
    "line": pl.Int64,
    "payment_id": pl.String,
    "order_no": pl.String,
    "detail": pl.String,
}

_LEDGER_SIDE = {
    "payment_id": "payment_id",
    "amount": "ledger_amount",
    "status": "ledger_status",
    "business_date": "ledger_business_date",
    "account_id": "ledger_account_id",
    "source": "ledger_source",
}

#: ledger statuses that show a refund or bank return was booked for the payment
REVERSED_STATUSES = ("refunded", "returned")


@dataclass
class Matching:
    """The classes of one channel-day. Statement-side frames keep the statement's columns plus
    the ledger's (``payment_id``, ``ledger_amount``, ``ledger_status`` …) where there is one."""

    day: date
    matched: pl.DataFrame
    missing_in_ledger: pl.DataFrame
    missing_in_statement: pl.DataFrame
    amount_mismatch: pl.DataFrame
    duplicates: pl.DataFrame
    refunds: pl.DataFrame


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=LEDGER_SCHEMA)


def match(statement: pl.DataFrame, ledger: pl.DataFrame, day: date) -> Matching:
    """Classify a statement's lines against posted payments by transaction id.

    ``ledger`` holds the channel's posted payments of ``day`` and may hold others (e.g. of the
    days around it, so a payment booked across midnight still matches); only those of ``day``
    can be missing_in_statement.
    """
    ledger = ledger.select(list(LEDGER_SCHEMA)).cast(LEDGER_SCHEMA)  # type: ignore[arg-type]
    side = ledger.select(["transaction_id", *_LEDGER_SIDE]).rename(_LEDGER_SIDE)
    pays = statement.filter(pl.col("kind") == "payment").sort("line")
    first = pays.select(pl.col("transaction_id").is_first_distinct()).to_series()
    primary = pays.filter(first)
    later = pays.filter(~first)
    joined = primary.join(side, on="transaction_id", how="left", coalesce=True)
    found = pl.col("payment_id").is_not_null()
    same = pl.col("amount") == pl.col("ledger_amount")
    duplicates = later.join(
        primary.select(
            "transaction_id", pl.col("line").alias("first_line"), pl.col("amount").alias("first_amount")
        ),
        on="transaction_id",
        how="left",
    )
    refunds = (
        statement.filter(pl.col("kind") == "refund")
        .sort("line")
        .join(side, on="transaction_id", how="left", coalesce=True)
    )
    missing_in_statement = (
        ledger.filter(pl.col("business_date") == day)
        .join(primary.select("transaction_id"), on="transaction_id", how="anti")
        .sort("transaction_id")
    )
    return Matching(
        day=day,
        matched=joined.filter(found & same),
        missing_in_ledger=joined.filter(~found),
        missing_in_statement=missing_in_statement,
        amount_mismatch=joined.filter(found & ~same),
        duplicates=duplicates,
        refunds=refunds,
    )


def discrepancies(m: Matching) -> pl.DataFrame:
    """The worklist rows of a matching (DISCREPANCY_SCHEMA). ``ref`` identifies the row within
    its channel-day and kind, so writing them again adds nothing."""
    parts = [
        m.missing_in_ledger.select(
            pl.lit("missing_in_ledger").alias("kind"),
            "transaction_id",
            pl.col("transaction_id").alias("ref"),
            pl.col("amount").alias("statement_amount"),
            pl.lit(None, pl.Int64).alias("ledger_amount"),
            "line",
            pl.lit(None, pl.String).alias("payment_id"),
            "order_no",
            pl.lit("in the statement, not posted (长款)").alias("detail"),
        ),
        m.missing_in_statement.select(
            pl.lit("missing_in_statement").alias("kind"),
            "transaction_id",
            pl.col("transaction_id").alias("ref"),
            pl.lit(None, pl.Int64).alias("statement_amount"),
            pl.col("amount").alias("ledger_amount"),
            pl.lit(None, pl.Int64).alias("line"),
            "payment_id",
            "order_no",
            pl.lit("posted, not in the statement (短款)").alias("detail"),
        ),
        m.amount_mismatch.select(
            pl.lit("amount_mismatch").alias("kind"),
            "transaction_id",
            pl.col("transaction_id").alias("ref"),
            pl.col("amount").alias("statement_amount"),
            "ledger_amount",
            "line",
            "payment_id",
            "order_no",
            pl.lit("the statement and the ledger disagree on the amount").alias("detail"),
        ),
        m.duplicates.select(
            pl.lit("duplicate").alias("kind"),
            "transaction_id",
            (pl.col("transaction_id") + pl.lit("#") + pl.col("line").cast(pl.String)).alias("ref"),
            pl.col("amount").alias("statement_amount"),
            pl.lit(None, pl.Int64).alias("ledger_amount"),
            "line",
            pl.lit(None, pl.String).alias("payment_id"),
            "order_no",
            (pl.lit("repeats line ") + pl.col("first_line").cast(pl.String)).alias("detail"),
        ),
        m.refunds.filter(~pl.col("ledger_status").is_in(REVERSED_STATUSES).fill_null(False)).select(
            pl.lit("refund_not_in_ledger").alias("kind"),
            "transaction_id",
            (
                pl.col("transaction_id")
                + pl.lit("#")
                + pl.col("refund_id").fill_null(pl.col("line").cast(pl.String))
            ).alias("ref"),
            pl.col("amount").alias("statement_amount"),
            "ledger_amount",
            "line",
            "payment_id",
            "order_no",
            pl.when(pl.col("payment_id").is_null())
            .then(pl.lit("a refund of a payment we never posted"))
            .otherwise(pl.lit("the channel refunded a payment the ledger still shows as posted"))
            .alias("detail"),
        ),
    ]
    return pl.concat(
        [p.cast(DISCREPANCY_SCHEMA) for p in parts],  # type: ignore[arg-type]
        how="vertical",
    ).select(list(DISCREPANCY_SCHEMA))


def totals(m: Matching) -> dict[str, dict[str, int]]:
    """Counts and fen totals per class (the report's figures)."""

    def figure(frame: pl.DataFrame, col: str = "amount") -> dict[str, int]:
        return {"count": frame.height, "amount": int(frame[col].sum() or 0) if frame.height else 0}

    return {
        "matched": figure(m.matched),
        "missing_in_ledger": figure(m.missing_in_ledger),
        "missing_in_statement": figure(m.missing_in_statement),
        "amount_mismatch": figure(m.amount_mismatch),
        "duplicates": figure(m.duplicates),
        "refunds": figure(m.refunds),
    }
