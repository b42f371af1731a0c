"""Allocation (销账): which open bills and late fees a payment settles, and what is left as credit.

The rule is data (``[payments] allocation`` in the config file):
- ``oldest_first`` (default): items by due date, oldest first; on the same date a bill before a
  late fee. Late fees fall due on the day they accrue, so a partial payment first clears the
  principal of the oldest bill, which also stops that bill's fee from growing.
- ``fees_first``: every open late fee first (oldest first), then bills oldest first — the order
  some supply contracts prescribe (违约金优先).

What a payment does not settle is credit (预收电费), which the money core applies to every debit
it meets (:mod:`dianfei.ledger.posting`). :func:`allocate` is the rule every posting uses;
:func:`allocate_frame` is its columnar twin for analysis, and a property test keeps them in
agreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    import polars as pl

ALLOCATION_ORDERS = ("oldest_first", "fees_first")


@dataclass(frozen=True)
class OpenItem:
    """An open debit of an account: a bill or a late fee, with what is still unpaid (fen)."""

    reference: str
    item_kind: str  # bill | late_fee
    bill_id: str
    due_on: date
    open_amount: int


def _key(item: OpenItem, order: str) -> tuple[int, date, int, str]:
    kind_rank = 0 if item.item_kind == "bill" else 1
    if order == "fees_first":
        return (kind_rank ^ 1, item.due_on, kind_rank, item.reference)
    return (0, item.due_on, kind_rank, item.reference)


def check_order(order: str) -> str:
    if order not in ALLOCATION_ORDERS:
        raise ValidationError(f"payments.allocation must be one of {', '.join(ALLOCATION_ORDERS)}, "
                              f"got {order!r}")
    return order


def allocate(amount: int, items: Sequence[OpenItem], order: str = "oldest_first"
             ) -> tuple[list[tuple[OpenItem, int]], int]:
    """Split ``amount`` fen over ``items`` in the allocation order; returns the parts and the
    credit left over. Items with nothing open are skipped."""
    if amount < 0:
        raise ValidationError(f"cannot allocate a negative amount ({amount} fen)")
    check_order(order)
    parts: list[tuple[OpenItem, int]] = []
    left = amount
    for item in sorted(items, key=lambda i: _key(i, order)):
        if left == 0:
            break
        if item.open_amount <= 0:
            continue
        take = min(left, item.open_amount)
        parts.append((item, take))
        left -= take
    return parts, left


def sort_items(items: pl.DataFrame, order: str) -> pl.DataFrame:
    """Items (account_id, reference, item_kind, bill_id, due_on, open_amount) in allocation order."""
    import polars as pl

    check_order(order)
    rank = pl.when(pl.col("item_kind") == "bill").then(0).otherwise(1)
    first = (rank ^ 1) if order == "fees_first" else pl.lit(0)
    return (items.filter(pl.col("open_amount") > 0)
            .with_columns(first.alias("_k0"), rank.alias("_k2"))
            .sort(["account_id", "_k0", "due_on", "_k2", "reference"])
            .drop("_k0", "_k2"))


def allocate_frame(sources: pl.DataFrame, items: pl.DataFrame, order: str = "oldest_first"
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Allocate many payments (or credits) to many open items at once.

    ``sources``: account_id, source_id, amount (fen > 0), seq (the order in which they apply).
    ``items``: account_id, reference, item_kind, bill_id, due_on, open_amount.
    Returns (parts: account_id, source_id, reference, item_kind, bill_id, amount;
    leftovers: account_id, source_id, amount > 0). Each account's sources and items are laid end
    to end as intervals of fen; a part is the overlap of a source's interval with an item's.
    """
    import polars as pl

    its = sort_items(items, order).with_columns(
        pl.col("open_amount").cum_sum().over("account_id").alias("_i_end"))
    its = its.with_columns((pl.col("_i_end") - pl.col("open_amount")).alias("_i_start"))
    src = (sources.filter(pl.col("amount") > 0).sort(["account_id", "seq"])
           .with_columns(pl.col("amount").cum_sum().over("account_id").alias("_s_end")))
    src = src.with_columns((pl.col("_s_end") - pl.col("amount")).alias("_s_start"))
    joined = src.select("account_id", "source_id", "_s_start", "_s_end").join(
        its.select("account_id", "reference", "item_kind", "bill_id", "_i_start", "_i_end"),
        on="account_id")
    parts = (joined.with_columns(
        (pl.min_horizontal("_s_end", "_i_end") - pl.max_horizontal("_s_start", "_i_start"))
        .alias("amount"))
        .filter(pl.col("amount") > 0)
        .select("account_id", "source_id", "reference", "item_kind", "bill_id",
                pl.col("amount").cast(pl.Int64)))
    used = parts.group_by("source_id").agg(pl.col("amount").sum().alias("_used"))
    leftovers = (src.join(used, on="source_id", how="left")
                 .with_columns((pl.col("amount") - pl.col("_used").fill_null(0)).alias("amount"))
                 .filter(pl.col("amount") > 0)
                 .select("account_id", "source_id", pl.col("amount").cast(pl.Int64)))
    return parts, leftovers
