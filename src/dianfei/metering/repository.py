"""Read queries on register reads that other packages reach through
:mod:`dianfei.metering.service`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl

#: the reads of the active meters of open accounts of customers with payment mode :mode
_OF_MODE = (
    "JOIN meters m ON m.meter_id = r.meter_id AND m.removed_on IS NULL "
    "JOIN accounts a ON a.account_id = m.account_id AND a.closed_on IS NULL "
    "JOIN customers c ON c.customer_id = a.customer_id AND c.payment_mode = :mode ")


def reads_of_mode_between(engine: Engine, payment_mode: str, lo: datetime,
                          hi: datetime) -> pl.DataFrame:
    """meter_id, register, read_at, value of the reads actually taken in (lo, hi] — never a read
    the bill run estimated from intervals: what the meter shows now decides a prepaid customer's
    balance and a cut-off, so only a real read may. Reads held as implausible (a finding
    ``implausible_read`` at that meter and instant, metering/vee/plausibility.py) are left out
    too: a forged or corrupt read never moves a balance by itself — unless a person released it
    (``vee review``, table ``vee_read_reviews``)."""
    from dianfei.metering.vee.names import held_read

    return _actual_reads(engine, (
        "SELECT r.meter_id, r.register, r.read_at, r.value FROM register_reads r "
        f"{_OF_MODE}WHERE r.read_at > :lo AND r.read_at <= :hi AND r.source <> 'estimated' "
        f"AND NOT {held_read('r.meter_id', 'r.read_at')}"),
        {"lo": lo, "hi": hi, "mode": payment_mode})


def reads_of_meters_between(engine: Engine, meter_ids: list[str], lo: datetime,
                            hi: datetime) -> pl.DataFrame:
    """:func:`reads_of_mode_between` for meters the caller already knows: an index seek per
    meter (meter_id, read_at) instead of every read of the window joined to its meter, account
    and customer — a quarter of the time for the prepaid meters of a million accounts."""
    from dianfei.db.lists import any_of
    from dianfei.metering.vee.names import held_read

    member, params = any_of(engine, "r.meter_id", "m", sorted(set(meter_ids)))
    return _actual_reads(engine, (
        "SELECT r.meter_id, r.register, r.read_at, r.value FROM register_reads r "
        f"WHERE {member} AND r.read_at > :lo AND r.read_at <= :hi AND r.source <> 'estimated' "
        f"AND NOT {held_read('r.meter_id', 'r.read_at')}"), {**params, "lo": lo, "hi": hi})


def _actual_reads(engine: Engine, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    import polars as pl

    from dianfei.db.frames import sqlite_columns

    # every prepaid meter's reads of the last two days, daily: parsed as one text on SQLite
    # (ids, register names, instants and numbers only)
    fast = sqlite_columns(engine, sql, params, {
        "meter_id": pl.String, "register": pl.String, "read_at": pl.Datetime("us", "UTC"),
        "value": pl.Int64})
    if fast is not None:
        return fast
    return read_frame(engine, sql, params, instants=("read_at",),
                      schema={"meter_id": pl.String, "register": pl.String, "value": pl.Int64})


def reads_at(engine: Engine, meter_ids: list[str], instants: list[datetime]) -> pl.DataFrame:
    """meter_id, register, read_at, value of the reads of ``meter_ids`` taken exactly at one of
    ``instants``: index seeks per (instant, meter), not every meter's read of the instant."""
    import polars as pl

    from dianfei.db.lists import any_of

    schema = {"meter_id": pl.String, "register": pl.String, "value": pl.Int64}
    if not instants or not meter_ids:
        return pl.DataFrame(schema={**schema, "read_at": pl.Datetime("us", "UTC")}).select(
            "meter_id", "register", "read_at", "value")
    from dianfei.db.frames import sqlite_columns

    at_marks = ", ".join(f":t{j}" for j in range(len(instants)))
    member, params = any_of(engine, "meter_id", "meters", sorted(set(meter_ids)))
    sql = ("SELECT meter_id, register, read_at, value FROM register_reads "
           f"WHERE read_at IN ({at_marks}) AND {member}")
    params = {**params, **{f"t{j}": t for j, t in enumerate(instants)}}
    # ids, codes, instants and numbers: one text parsed as columns on SQLite (the prepaid
    # meters' opening reads, every day)
    fast = sqlite_columns(engine, sql, params, {"meter_id": pl.String, "register": pl.String,
                                                "read_at": pl.Datetime("us", "UTC"),
                                                "value": pl.Int64})
    if fast is not None:
        return fast
    with engine.connect() as conn:  # on PostgreSQL: the array parameter through SQLAlchemy
        return read_frame(conn, sql, params, instants=("read_at",), schema=schema)


def account_reads(engine: Engine, account_id: str, since: datetime) -> pl.DataFrame:
    """meter_id, register, read_at, value, source of the reads since ``since`` of every meter
    the account has had, oldest first."""
    import polars as pl

    return read_frame(
        engine, "SELECT r.meter_id, r.register, r.read_at, r.value, r.source FROM register_reads r "
        "JOIN meters m ON m.meter_id = r.meter_id WHERE m.account_id = :a AND r.read_at >= :since "
        "ORDER BY r.read_at, r.meter_id, r.register", {"a": account_id, "since": since},
        instants=("read_at",), schema={"meter_id": pl.String, "register": pl.String,
                                       "value": pl.Int64, "source": pl.String})
