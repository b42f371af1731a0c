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
from collections.abc import Iterator
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

    bound = bind_params(source, params or {})
    if isinstance(source, Connection):
        frame = _read_on(source, sql, bound)
    else:
        uri = _adbc_uri(source)
        frame = (_read_via_adbc(source, uri, sql, bound) if uri is not None
                 else _read_via_sqlalchemy(source, sql, bound))
    return _normalised(frame, dates, instants, schema or {})


def _normalised(frame: pl.DataFrame, dates: tuple[str, ...], instants: tuple[str, ...],
                schema: dict[str, Any]) -> pl.DataFrame:
    """The columns typed as :func:`read_frame` promises, in one pass over the frame (each eager
    Polars call costs a tenth of a millisecond or more, and a collections day reads hundreds of
    small frames: one ``with_columns`` where there were up to four)."""
    import polars as pl

    for name in (*dates, *instants, *schema):
        if name not in frame.columns:
            raise pl.exceptions.ColumnNotFoundError(f"read_frame: the query returned no {name!r}")
    if frame.height == 0:
        # nothing to parse: the frame of the types asked for, every other column text
        return pl.DataFrame(schema={c: (pl.Datetime("us", "UTC") if c in instants
                                        else pl.Date if c in dates
                                        else schema.get(c, pl.String))
                                    for c in frame.columns})
    fixes = []
    for name, dtype in frame.schema.items():
        if name in dates:
            if dtype == pl.String:
                fixes.append(pl.col(name).str.to_date("%Y-%m-%d"))
            elif dtype != pl.Date:
                fixes.append(pl.col(name).cast(pl.Date))
        elif name in instants:
            if dtype == pl.String:
                fixes.append(pl.col(name).str.to_datetime("%Y-%m-%d %H:%M:%S%.f",
                                                          time_unit="us", time_zone="UTC"))
            elif isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
                fixes.append(pl.col(name).dt.cast_time_unit("us").dt.replace_time_zone("UTC"))
            elif isinstance(dtype, pl.Datetime):
                fixes.append(pl.col(name).dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
        elif name in schema:
            fixes.append(pl.col(name).cast(schema[name]))
        elif dtype == pl.Null:
            # SQLite (and SQLAlchemy rows) type a column by its values: an all-NULL column
            # comes back without a type and is text unless ``schema`` types it. A column the
            # driver typed (ADBC/Arrow on PostgreSQL) keeps its type even when every value is
            # NULL.
            fixes.append(pl.col(name).cast(pl.String))
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


class AdbcPool:
    """The ADBC connections of one database (PostgreSQL), per process.

    A read checks a connection out for its own use and returns it afterwards; at most
    ``max_idle`` are kept between reads (connecting costs a server backend plus the driver's
    type introspection, tens of ms, more than most reads), the surplus closed at return. A
    connection in use is never in the idle list, so no other thread can close it under its
    reader — the cache this replaces keyed connections by thread and evicted the oldest, which
    could be one another thread was reading on. Autocommit: no read holds a transaction open.
    Kept apart from SQLAlchemy's pool on purpose (ADBC is another driver); closed with the
    engine (``engine.dispose()``) and at exit.
    """

    def __init__(self, uri: str, max_idle: int = 4) -> None:
        self.uri = uri
        self.max_idle = max_idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.connects = 0

    @contextlib.contextmanager
    def connection(self, adbc: Any, *, fresh: bool = False) -> Iterator[Any]:
        conn = None
        if not fresh:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = adbc.connect(self.uri, autocommit=True)
            self.connects += 1
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            surplus = [] if healthy else [conn]
            if healthy:
                with self._lock:
                    self._idle.append(conn)
                    while len(self._idle) > self.max_idle:
                        surplus.append(self._idle.pop(0))
            for c in surplus:  # a connection that failed is not trusted again
                with contextlib.suppress(Exception):
                    c.close()

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            conns, self._idle = self._idle, []
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()


_POOLS: dict[tuple[int, str], AdbcPool] = {}
_POOLS_LOCK = threading.Lock()


def adbc_pool(engine: Engine, uri: str) -> AdbcPool:
    """This process's pool for ``uri`` (a forked child makes its own: a connection is never
    shared across processes); closed when ``engine`` is disposed."""
    key = (os.getpid(), uri)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = AdbcPool(uri)
            from sqlalchemy import event

            if not event.contains(engine, "engine_disposed", _on_dispose):
                event.listen(engine, "engine_disposed", _on_dispose)
    return pool


def _on_dispose(engine: Engine) -> None:
    uri = _adbc_uri(engine)
    if uri is None:
        return
    with _POOLS_LOCK:
        pool = _POOLS.pop((os.getpid(), uri), None)
    if pool is not None:
        pool.close()


def close_adbc_connections() -> None:
    """Close this process's idle ADBC connections (at exit, before the driver is torn down)."""
    with _POOLS_LOCK:
        pools = [p for (pid, _), p in _POOLS.items() if pid == os.getpid()]
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(close_adbc_connections)


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
    pool = adbc_pool(engine, uri)
    for attempt in (1, 2):
        try:
            with pool.connection(adbc, fresh=attempt == 2) as conn, conn.cursor() as cur:
                cur.execute(positional_sql, values if values else None)
                table = cur.fetch_arrow_table()
            break
        except adbc.Error:
            # an idle connection the server closed (restart, dropped database): once more, on a
            # new one (the failed one was closed, not returned)
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
