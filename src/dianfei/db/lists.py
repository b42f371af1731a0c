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
