"""The digest of a ledger batch: what an audit record of a posting carries, and what ``audit
verify`` recomputes from the ledger rows, so a ledger row edited (or added, or removed) after
its batch was recorded is found.

One record per batch rather than per row keeps a bill run of a million debits at one record per
chunk. A row's line is its columns (not ``entry_id``, which the database assigns after the
digest is taken) joined by U+001F, NULL written as U+0000; the batch's digest is sha256 over its
lines sorted (a row's kind and reference are unique, so the order is total) and joined by
U+001E. Two implementations, one for planned rows (dicts, the posting core) and one for columns
(Polars, bulk debits and ``verify``), are held equal by a property test.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

SEP, ROW, NULL = "\x1f", "\x1e", "\x00"
#: the columns of a line, in order
COLUMNS = ("kind", "reference", "account_id", "customer_id", "amount", "posted_at",
           "business_date", "due_on", "reverses_entry_id", "reason")


def new_batch() -> int:
    """A fresh batch number (random 62 bits: no shared counter to lock or to leak order)."""
    return secrets.randbits(62) + 1


def _instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"instants must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _day(value: date | str | None) -> str:
    if value is None:
        return NULL
    return value.isoformat() if isinstance(value, date) else str(value)


def _text(value: Any) -> str:
    return NULL if value is None else str(value)


def line(row: Mapping[str, Any]) -> str:
    return SEP.join((row["kind"], row["reference"], row["account_id"], row["customer_id"],
                     str(int(row["amount"])), _instant(row["posted_at"]),
                     _day(row["business_date"]), _day(row["due_on"]),
                     _text(row["reverses_entry_id"]), _text(row["reason"])))


def digest_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """The digest of planned ledger rows (dicts with :data:`COLUMNS`)."""
    return hashlib.sha256(ROW.join(sorted(line(r) for r in rows)).encode()).hexdigest()


def line_expr(schema: Mapping[str, Any]) -> pl.Expr:
    """The line of each row as a column expression (``schema``: the frame's schema; optional
    ``reverses_entry_id`` and ``reason`` are NULL when absent)."""
    import polars as pl

    posted = pl.col("posted_at")
    dtype = schema["posted_at"]
    if not isinstance(dtype, pl.Datetime):
        raise ValueError(f"posted_at must be a datetime column, got {dtype}")
    if dtype.time_zone is not None:  # a naive column is UTC already (as the bulk writer takes it)
        posted = posted.dt.convert_time_zone("UTC").dt.replace_time_zone(None)

    def text(name: str) -> pl.Expr:
        col = pl.col(name) if name in schema else pl.lit(None, pl.String)
        return col.cast(pl.String).fill_null(NULL)

    def day(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.Date).dt.strftime("%Y-%m-%d").fill_null(NULL)

    return pl.concat_str([
        pl.col("kind"), pl.col("reference"), pl.col("account_id"), pl.col("customer_id"),
        pl.col("amount").cast(pl.Int64).cast(pl.String),
        posted.dt.strftime("%Y-%m-%d %H:%M:%S%.6f"), day("business_date"), day("due_on"),
        text("reverses_entry_id"), text("reason")], separator=SEP)


def digest_frame(frame: pl.DataFrame) -> str:
    """The digest of ledger rows as columns (same result as :func:`digest_rows`)."""
    lines = frame.select(line_expr(frame.schema).alias("l")).sort("l")["l"]
    return hashlib.sha256(ROW.join(lines.to_list()).encode()).hexdigest()


def digests_by_batch(frame: pl.DataFrame) -> pl.DataFrame:
    """Per ``audit_batch`` of ``frame`` (ledger rows with ``entry_id``): rows, first_entry,
    digest."""
    import polars as pl

    grouped = (frame.select("audit_batch", "entry_id", line_expr(frame.schema).alias("l"))
               .sort("audit_batch", "l")
               .group_by("audit_batch", maintain_order=True)
               .agg(pl.len().alias("rows"), pl.col("entry_id").min().alias("first_entry"),
                    pl.col("l").str.join(ROW).alias("text")))
    return grouped.with_columns(pl.col("text").map_elements(
        lambda s: hashlib.sha256(s.encode()).hexdigest(), return_dtype=pl.String)
        .alias("digest")).drop("text")
