"""Read queries of the ledger that other packages reach through :mod:`dianfei.ledger.service`
(the open-item store and the posting writes are :mod:`dianfei.ledger.items`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl


def cleared_on_bills_since(engine: Engine, since: datetime) -> pl.DataFrame:
    """bill_id, paid_today: money cleared on bills by clearings made at or after ``since``."""
    import polars as pl

    # the day's clearings first (the allocated_at index), then grouped: asked in one step, the
    # planner walked the bill index to skip the sort — every clearing ever made, each day
    return read_frame(
        engine,
        "WITH today AS MATERIALIZED (SELECT bill_id, amount FROM payment_allocations "
        "WHERE allocated_to = 'bill' AND allocated_at >= :since) "
        "SELECT bill_id, CAST(SUM(amount) AS BIGINT) AS paid_today FROM today GROUP BY bill_id",
        {"since": since}, schema={"bill_id": pl.String, "paid_today": pl.Int64})


def last_entry_id(conn: Connection, account_id: str) -> int:
    """The highest ledger entry id of the account (0 when it has none)."""
    return int(conn.execute(text("SELECT COALESCE(MAX(entry_id), 0) FROM ledger_entries "
                                 "WHERE account_id = :a"), {"a": account_id}).scalar_one())


def unreversed_entries(conn: Connection, kind: str, reference_prefix: str) -> list[Any]:
    """(entry_id, account_id, customer_id, amount) of the entries of ``kind`` whose reference
    starts with ``reference_prefix`` (which ends in ``:``) and that are not reversed, oldest
    first — a range on the (kind, reference) index instead of LIKE: ids may contain '_' or '%'."""
    assert reference_prefix.endswith(":")
    return list(conn.execute(text(
        "SELECT e.entry_id, e.account_id, e.customer_id, e.amount FROM ledger_entries e "
        "LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id "
        "WHERE e.kind = :k AND e.reference >= :lo AND e.reference < :hi "
        "AND r.entry_id IS NULL ORDER BY e.entry_id"),
        {"k": kind, "lo": reference_prefix, "hi": reference_prefix[:-1] + ";"}).all())


def entry_id_for(conn: Connection, kind: str, reference: str) -> int | None:
    """The id of the entry of ``kind`` posted for ``reference`` (unique per kind), if any."""
    row = conn.execute(text("SELECT entry_id FROM ledger_entries WHERE kind = :k "
                            "AND reference = :r"), {"k": kind, "r": reference}).first()
    return None if row is None else int(row[0])


def reversal_of(conn: Connection, entry_id: int) -> int | None:
    """The id of the reversal of ``entry_id``, if it is reversed."""
    row = conn.execute(text("SELECT entry_id FROM ledger_entries WHERE reverses_entry_id = :e"),
                       {"e": entry_id}).first()
    return None if row is None else int(row[0])
