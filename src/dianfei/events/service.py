"""Publishing and consuming events (see ``models`` for why deliveries, not positions).

- :func:`publish` runs in the transaction that causes the events: it inserts them (a key already
  published is skipped, so a replayed cause publishes nothing twice) and one pending delivery per
  subscribed consumer.
- :func:`claim` hands a consumer its pending deliveries, oldest first, locked (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so two processes never handle one event at once); the consumer writes
  its effects and calls :func:`mark_handled` in the same transaction. A crash before the commit
  leaves the deliveries pending; after it, they are handled: each event is handled exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from dianfei.core.metrics import Metric
from dianfei.db.lists import pg_array

#: which consumer follows which event types (data: a new consumer adds its line here)
SUBSCRIPTIONS: Mapping[str, frozenset[str]] = {
    "collections": frozenset({"payment_posted", "payment_reversed", "debit_reversed"}),
}

EVENT_TYPES = ("payment_posted", "payment_reversed", "debit_reversed", "credit_applied",
               "bills_issued", "late_fee_posted")


@dataclass(frozen=True)
class EventRow:
    event_id: int
    type: str
    key: str
    account_id: str | None
    customer_id: str | None
    occurred_at: datetime
    business_date: date
    amount: int | None
    balance_after: int | None
    payload: dict[str, Any]


def _naive(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"event instants must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).replace(tzinfo=None)


def _columns(events: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The events as the columns both inserts take (type checked, instants naive UTC, payload as
    JSON text), in the order of the events table's insert."""
    for e in events:
        if e["type"] not in EVENT_TYPES:
            raise ValueError(f"unknown event type {e['type']!r}")
    return [[e["type"] for e in events], [e["key"] for e in events],
            [e.get("account_id") for e in events], [e.get("customer_id") for e in events],
            [_naive(e["occurred_at"]) for e in events], [e["business_date"] for e in events],
            [e.get("amount") for e in events], [e.get("balance_after") for e in events],
            [json.dumps(e.get("payload") or {}, sort_keys=True, default=str) for e in events]]


def _subscription_rows() -> str:
    """The subscriptions as a row source both databases read: (type, consumer)."""
    pairs = [(t, c) for c, types in SUBSCRIPTIONS.items() for t in sorted(types)]
    return " UNION ALL ".join(f"SELECT '{t}' AS type, '{c}' AS consumer" for t, c in pairs)


def publish(conn: Connection, events: Sequence[Mapping[str, Any]]) -> None:
    """Write events (type, key, account_id, customer_id, occurred_at, business_date, amount,
    balance_after, payload dict) and a pending delivery per subscribed consumer, in the caller's
    transaction. A key already published is skipped (its deliveries exist already)."""
    if not events:
        return
    if conn.dialect.name == "postgresql":
        pg_publish(conn.connection.driver_connection, events)
        return
    cols = _columns(events)
    cols[4] = [at.strftime("%Y-%m-%d %H:%M:%S.%f") for at in cols[4]]  # as SQLAlchemy stores it
    # SQLite serialises writers: the events this transaction inserts are exactly those above
    # the largest id before it, so their deliveries are one INSERT … SELECT (no row-by-row
    # RETURNING)
    before = int(conn.execute(text("SELECT COALESCE(MAX(event_id), 0) FROM events")).scalar_one())
    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        cur.executemany(
            "INSERT INTO events (type, key, account_id, customer_id, occurred_at, business_date, "
            "amount, balance_after, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING", list(zip(*cols, strict=True)))
    finally:
        cur.close()
    conn.execute(text(
        "INSERT INTO event_deliveries (event_id, consumer, attempts) SELECT e.event_id, "
        f"s.consumer, 0 FROM events e JOIN ({_subscription_rows()}) s "
        "ON s.type = e.type WHERE e.event_id > :b"), {"b": before})


_PG_PUBLISH = (
    "WITH ev AS (INSERT INTO events (type, key, account_id, customer_id, occurred_at, "
    "business_date, amount, balance_after, payload) SELECT * FROM unnest(%s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::timestamp[], %s::date[], %s::bigint[], %s::bigint[], "
    "%s::text[]) ON CONFLICT (key) DO NOTHING RETURNING event_id, type) "
    "INSERT INTO event_deliveries (event_id, consumer, attempts) SELECT ev.event_id, s.consumer, 0 "
    f"FROM ev JOIN ({_subscription_rows()}) s ON s.type = ev.type")


def pg_publish(raw: Any, events: Sequence[Mapping[str, Any]]) -> None:
    """:func:`publish` on PostgreSQL as one statement (events and their deliveries), usable in a
    psycopg pipeline."""
    if events:  # each column as one array literal (see db.lists.pg_array)
        raw.execute(_PG_PUBLISH, [pg_array(column) for column in _columns(events)])


def claim(conn: Connection, consumer: str, *, limit: int = 10_000,
          types: Sequence[str] | None = None) -> list[EventRow]:
    """The consumer's pending events, oldest first, locked until the caller's transaction ends."""
    pg = conn.dialect.name == "postgresql"
    where = ""
    params: dict[str, Any] = {"c": consumer, "n": limit}
    if types:
        where = " AND e.type IN :types"
        params["types"] = list(types)
    sql = text(
        "SELECT e.event_id, e.type, e.key, e.account_id, e.customer_id, e.occurred_at, "
        "e.business_date, e.amount, e.balance_after, e.payload FROM event_deliveries d "
        "JOIN events e ON e.event_id = d.event_id "
        f"WHERE d.consumer = :c AND d.handled_at IS NULL{where} ORDER BY d.event_id LIMIT :n"
        + (" FOR UPDATE OF d SKIP LOCKED" if pg else ""))
    if types:
        sql = sql.bindparams(bindparam("types", expanding=True))
    out = []
    for r in conn.execute(sql, params):
        at = r[5] if isinstance(r[5], datetime) else datetime.fromisoformat(str(r[5]))
        day = r[6] if isinstance(r[6], date) else date.fromisoformat(str(r[6]))
        out.append(EventRow(int(r[0]), r[1], r[2], r[3], r[4], at.replace(tzinfo=UTC), day,
                            None if r[7] is None else int(r[7]),
                            None if r[8] is None else int(r[8]), json.loads(r[9] or "{}")))
    return out


def mark_handled(conn: Connection, consumer: str, event_ids: Sequence[int], at: datetime) -> int:
    """Mark deliveries handled, in the transaction that wrote the consumer's effects."""
    if not event_ids:
        return 0
    res = conn.execute(text("UPDATE event_deliveries SET handled_at = :at WHERE consumer = :c "
                            "AND event_id = :e AND handled_at IS NULL"),
                       [{"at": _naive(at), "c": consumer, "e": e} for e in event_ids])
    return int(getattr(res, "rowcount", 0) or 0)


def pending_count(conn: Connection, consumer: str) -> int:
    return int(conn.execute(text("SELECT count(*) FROM event_deliveries WHERE consumer = :c "
                                 "AND handled_at IS NULL"), {"c": consumer}).scalar_one())


def operational_metrics(conn: Connection) -> list[Metric]:
    """``/metrics``: events not yet handled, per consumer (a growing number is a stuck consumer)."""
    from sqlalchemy import text

    from dianfei.core.metrics import grouped

    rows = conn.execute(text("SELECT consumer, COUNT(*) FROM event_deliveries "
                             "WHERE handled_at IS NULL GROUP BY consumer")).all()
    return [grouped("dianfei_events_pending", "events waiting for their consumer", "gauge",
                    "consumer", rows)]
