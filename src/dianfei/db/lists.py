"""Membership in a long list of values as ONE bound parameter.

``col IN (:a0, :a1, …)`` with thousands of names costs a statement compile per call (SQLAlchemy
builds and caches nothing reusable: every length is a new statement) and chunking below the
driver's variable limit. Instead the list travels as one value: a JSON array read by
``json_each`` on SQLite, an array compared with ``= ANY`` on PostgreSQL. The statement text is
the same whatever the list's length, and the index on ``col`` is used on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text


def any_of(conn: Connection | Engine, column: str, name: str, values: Iterable[Any], *,
           array_type: str = "TEXT") -> tuple[str, dict[str, Any]]:
    """SQL ``column`` ∈ ``values`` as one ``:name`` parameter, and that parameter's binding.
    Values are strings (``array_type`` TEXT) or integers (BIGINT); an empty list matches
    nothing."""
    vals = list(values)
    if conn.dialect.name == "postgresql":
        return f"{column} = ANY(CAST(:{name} AS {array_type}[]))", {name: vals}
    return f"{column} IN (SELECT value FROM json_each(:{name}))", {name: json.dumps(vals)}


def rows_in(conn: Connection, sql: str, column: str, values: Iterable[Any],
            params: dict[str, Any] | None = None) -> list[Any]:
    """The rows of ``sql``, whose ``{member}`` stands for "``column`` ∈ ``values``" (distinct
    string values, as one parameter ``:members``), with ``params`` bound too."""
    member, bound = any_of(conn, column, "members", sorted(set(values)))
    return list(conn.execute(text(sql.format(member=member)), {**(params or {}), **bound}).all())


def pg_array(values: Iterable[Any]) -> str:
    """``values`` as one PostgreSQL array literal (``{1,NULL,"a\\"b"}``), for a ``%s::T[]``
    parameter of a raw psycopg statement.

    Why: psycopg adapts a Python list element by element in Python (finding the element type,
    escaping each one), ~25 µs per array of 20 values — on the callback writer, which sends some
    sixty arrays a batch, that was a fifth of the server's CPU. One string built here costs a
    third of that, and PostgreSQL parses it with the column's own input function.
    Elements: None (NULL), bool, int, Decimal, str, naive datetime (timestamp without time
    zone: an aware one is refused — the literal would silently drop its offset), date, bytes
    (bytea, hex). Anything else is a TypeError."""
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        elif isinstance(v, str):
            out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif isinstance(v, bool):
            out.append("t" if v else "f")
        elif isinstance(v, int | Decimal):
            out.append(str(v))
        elif isinstance(v, datetime):
            if v.tzinfo is not None:
                raise ValueError(f"pg_array takes naive (UTC) instants, got {v!r}")
            out.append('"' + v.isoformat() + '"')
        elif isinstance(v, date):
            out.append(v.isoformat())
        elif isinstance(v, bytes | bytearray | memoryview):
            out.append('"\\\\x' + bytes(v).hex() + '"')
        else:
            raise TypeError(f"pg_array cannot write {type(v).__name__} {v!r}")
    return "{" + ",".join(out) + "}"
