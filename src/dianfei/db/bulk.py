"""Bulk writes of Polars frames: COPY on PostgreSQL, executemany on SQLite.

Persistence is the real cost of a bill run, so this is the one place that moves many rows; it
runs inside the caller's transaction (``conn``), never commits by itself.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

if TYPE_CHECKING:
    import polars as pl


def write_frame(conn: Connection, table: str, frame: pl.DataFrame) -> int:
    """Append ``frame`` to ``table`` (columns by name). Returns the row count."""
    if frame.height == 0:
        return 0
    cols = frame.columns
    if conn.dialect.name == "postgresql":
        return _copy_postgres(conn, table, frame)
    frame = _sqlite_ready(frame)
    raw: Any = conn.connection.driver_connection
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    cur = raw.cursor()
    try:
        cur.executemany(sql, frame.iter_rows())
    finally:
        cur.close()
    return frame.height


def _copy_postgres(conn: Connection, table: str, frame: pl.DataFrame) -> int:
    import polars as pl

    # CSV produced by Polars' Rust writer is far faster than row-by-row COPY from Python.
    out = frame.with_columns(
        [pl.col(c).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
         for c, t in frame.schema.items()
         if isinstance(t, pl.Datetime) and t.time_zone is not None]
    )
    buf = io.BytesIO()
    out.write_csv(buf, include_header=False, null_value="\\N", datetime_format="%Y-%m-%d %H:%M:%S%.f")
    raw: Any = conn.connection.driver_connection
    cols = ", ".join(frame.columns)
    with raw.cursor() as cur, cur.copy(
        f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')"
    ) as copy:
        view = buf.getbuffer()
        step = 1 << 20
        for i in range(0, len(view), step):
            copy.write(view[i : i + step])
    return frame.height


def _sqlite_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Dates and instants as the text SQLAlchemy stores in SQLite (naive UTC for instants)."""
    import polars as pl

    fixes = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            col = pl.col(name)
            if dtype.time_zone is not None:
                col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            fixes.append(col.dt.strftime("%Y-%m-%d %H:%M:%S.%6f").alias(name))
        elif dtype == pl.Date:
            fixes.append(pl.col(name).dt.strftime("%Y-%m-%d").alias(name))
        elif dtype == pl.Boolean:
            fixes.append(pl.col(name).cast(pl.Int8).alias(name))
    return frame.with_columns(fixes) if fixes else frame


def sqlite_rows(frame: pl.DataFrame) -> Any:
    """The rows of ``frame`` as SQLite parameters (dates and instants as the text SQLAlchemy
    stores, booleans as 0/1), for an ``executemany`` of the caller's own statement."""
    return _sqlite_ready(frame).iter_rows()
