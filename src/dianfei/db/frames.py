"""Reading query results straight into Polars frames (columnar, no per-row Python objects).

ADBC drivers hand Arrow batches to Polars directly; they read committed data on their own
connection, which is what the bill run wants (each chunk commits before the next read).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

if TYPE_CHECKING:
    import polars as pl


def _adbc_uri(engine: Engine) -> str | None:
    """PostgreSQL only. Never ADBC's SQLite: two SQLite libraries in one process release each
    other's POSIX locks and corrupt the database (SQLite's "multiple copies" warning)."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


def read_frame(source: Engine | Connection, sql: str, params: dict[str, Any] | None = None,
               *, dates: tuple[str, ...] = (), instants: tuple[str, ...] = (),
               schema: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run ``sql`` (with ``:name`` parameters) and return a Polars frame.

    Given a Connection, the query runs on it (and sees its uncommitted writes); given an Engine,
    on a connection of its own (ADBC/Arrow on PostgreSQL).

    ``dates`` / ``instants`` name columns to normalise: SQLite returns them as text, PostgreSQL
    as typed values; both come back as ``pl.Date`` and ``pl.Datetime("us", "UTC")``.
    ``schema`` casts the named columns: it types them when the result is empty or when every
    value is NULL (SQLite has no column types to report), so a caller that joins or compares on
    a column names it there. Columns of an empty result not named there are strings, and so are
    all-NULL columns the driver could not type.
    """
    import polars as pl

    bound = bind_params(source, params or {})
    if isinstance(source, Connection):
        frame = _read_on(source, sql, bound)
    else:
        uri = _adbc_uri(source)
        frame = (_read_via_adbc(source, uri, sql, bound) if uri is not None
                 else _read_via_sqlalchemy(source, sql, bound))
    if frame.height == 0:
        frame = frame.select([pl.col(c).cast(pl.String) for c in frame.columns])
        for name in instants:
            frame = frame.with_columns(pl.col(name).cast(pl.Datetime("us", "UTC")))
        for name in dates:
            frame = frame.with_columns(pl.col(name).cast(pl.Date))
    # SQLite (and SQLAlchemy rows) type a column by its values: an all-NULL column comes back
    # without a type (pl.Null) and is text unless ``schema`` types it. A column the driver typed
    # (ADBC/Arrow on PostgreSQL) keeps its type even when every value is NULL.
    untyped = [c for c, t in frame.schema.items() if t == pl.Null
               and c not in (schema or {}) and c not in dates and c not in instants]
    if untyped:
        frame = frame.with_columns([pl.col(c).cast(pl.String) for c in untyped])
    if schema:
        frame = frame.with_columns([pl.col(c).cast(t) for c, t in schema.items()
                                    if c not in dates and c not in instants])
    fixes = []
    for name in dates:
        if frame.schema[name] == pl.String:
            fixes.append(pl.col(name).str.to_date("%Y-%m-%d"))
        elif frame.schema[name] != pl.Date:
            fixes.append(pl.col(name).cast(pl.Date))
    for name in instants:
        dtype = frame.schema[name]
        if dtype == pl.String:
            fixes.append(pl.col(name).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us",
                                                      time_zone="UTC"))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
            fixes.append(pl.col(name).dt.cast_time_unit("us").dt.replace_time_zone("UTC"))
        elif isinstance(dtype, pl.Datetime):
            fixes.append(pl.col(name).dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
    return frame.with_columns(fixes) if fixes else frame


def bind_params(engine: Engine | Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Instants as naive UTC and, on SQLite, dates and instants as the exact text SQLAlchemy
    stores there, so that comparisons in SQL are comparisons of like with like."""
    from datetime import UTC, date, datetime

    sqlite = engine.dialect.name == "sqlite"
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, datetime):
            if v.tzinfo is not None:
                v = v.astimezone(UTC).replace(tzinfo=None)
            out[k] = v.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else v
        elif isinstance(v, date) and sqlite:
            out[k] = v.isoformat()
        else:
            out[k] = v
    return out


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


#: open ADBC connections per (process, thread, uri). Connecting costs a server backend plus the
#: driver's type introspection (tens of ms), more than most reads; autocommit, so no read holds a
#: transaction open between calls. Bounded: the oldest is closed beyond _ADBC_MAX.
_ADBC: OrderedDict[tuple[int, int, str], Any] = OrderedDict()
_ADBC_MAX = 8
_ADBC_LOCK = threading.Lock()


def close_adbc_connections() -> None:
    """Close this process's cached ADBC connections (at exit, before the driver is torn down)."""
    with _ADBC_LOCK:
        conns = [c for (pid, _, _), c in _ADBC.items() if pid == os.getpid()]
        _ADBC.clear()
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


atexit.register(close_adbc_connections)


def _adbc_connection(adbc: Any, uri: str, *, fresh: bool = False) -> Any:
    key = (os.getpid(), threading.get_ident(), uri)
    with _ADBC_LOCK:
        conn = None if fresh else _ADBC.get(key)
        if conn is not None:
            _ADBC.move_to_end(key)
            return conn
    conn = adbc.connect(uri, autocommit=True)
    with _ADBC_LOCK:
        _ADBC[key] = conn
        while len(_ADBC) > _ADBC_MAX:
            _, old = _ADBC.popitem(last=False)
            with contextlib.suppress(Exception):
                old.close()
    return conn


def _drop_adbc(uri: str) -> None:
    key = (os.getpid(), threading.get_ident(), uri)
    with _ADBC_LOCK:
        conn = _ADBC.pop(key, None)
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _read_via_adbc(engine: Engine, uri: str, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    """Arrow straight from the driver: no Python object per row."""
    import polars as pl

    names: list[str] = []

    def placeholder(m: re.Match[str]) -> str:
        names.append(m.group(1))
        return "?" if engine.dialect.name == "sqlite" else f"${len(names)}"

    positional_sql = _PARAM.sub(placeholder, sql)
    values = [params[n] for n in names]
    if engine.dialect.name == "sqlite":
        from adbc_driver_sqlite import dbapi as adbc
    else:
        from adbc_driver_postgresql import dbapi as adbc  # type: ignore[no-redef]
    for attempt in (1, 2):
        conn = _adbc_connection(adbc, uri, fresh=attempt == 2)
        try:
            with conn.cursor() as cur:
                cur.execute(positional_sql, values if values else None)
                table = cur.fetch_arrow_table()
            break
        except adbc.Error:
            # a cached connection the server closed (restart, dropped database): once more, fresh
            _drop_adbc(uri)
            if attempt == 2:
                raise
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _read_via_sqlalchemy(engine: Engine, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    with engine.connect() as conn:
        return _read_on(conn, sql, params)


def _read_on(conn: Connection, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    import polars as pl

    if conn.dialect.name == "sqlite":
        # the DB-API cursor, not SQLAlchemy rows: a third of the time for millions of rows
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(sql, params)
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
        finally:
            cur.close()
    else:
        result = conn.execute(text(sql), params)
        cols = list(result.keys())
        rows = result.fetchall()
    if not rows:
        return pl.DataFrame({c: [] for c in cols})
    return pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None)


def sqlite_columns(engine: Engine, sql: str, params: dict[str, Any],
                    schema: dict[str, Any]) -> pl.DataFrame | None:
    """SQLite only (else None; the caller falls back to :func:`read_frame`): the query's
    rows as one text built inside SQLite (printf and group_concat run in C, without the GIL)
    and parsed by Polars' CSV reader, instead of one Python tuple per row — several times faster
    for millions of rows. ``schema`` names every column in order with its type: pl.Datetime
    columns are the stored UTC text, pl.Date ISO dates; NULL is an empty field. Only for values
    without the unit separator or a newline (ids, codes, numbers, instants)."""
    if engine.dialect.name != "sqlite":
        return None
    import io

    import polars as pl

    names = list(schema)
    fmt = "\x1f".join(["%s"] * len(names))
    wrapped = (f"SELECT group_concat(printf('{fmt}', {', '.join(names)}), char(10)) "
               f"FROM ({sql})")
    with engine.connect() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(wrapped, bind_params(engine, params))
            blob = cur.fetchone()[0]
        finally:
            cur.close()
    text_types = {n: (pl.String if t in (pl.Date, pl.Boolean) or isinstance(t, pl.Datetime)
                      else t) for n, t in schema.items()}
    if not blob:
        return pl.DataFrame(schema=schema)
    frame = pl.read_csv(io.BytesIO(blob.encode()), separator="\x1f", has_header=False,
                        new_columns=names, schema=text_types, quote_char=None)
    fixes = []
    for n, t in schema.items():
        if isinstance(t, pl.Datetime):
            fixes.append(pl.col(n).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us",
                                                   time_zone="UTC"))
        elif t == pl.Date:
            fixes.append(pl.col(n).str.to_date("%Y-%m-%d"))
        elif t == pl.Boolean:
            fixes.append(pl.col(n).cast(pl.Int8).cast(pl.Boolean))
    return frame.with_columns(fixes) if fixes else frame
