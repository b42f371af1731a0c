"""SQL of the daily worklists and the roster (collections' own tables only)."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame
from dianfei.db.lists import any_of

if TYPE_CHECKING:
    import polars as pl

ENTRY_COLUMNS = ("day", "account_id", "customer_id", "collector_id", "station_id", "region_id",
                 "amount_overdue", "days_overdue", "pay_probability", "expected", "reason", "rule",
                 "task_kinds", "assigned_at", "moved_from")


def entry_schema() -> Any:
    import polars as pl

    return {"day": pl.Date, "account_id": pl.String, "customer_id": pl.String,
            "collector_id": pl.String, "station_id": pl.String, "region_id": pl.String,
            "amount_overdue": pl.Int64, "days_overdue": pl.Int64, "pay_probability": pl.Float64,
            "expected": pl.Int64, "reason": pl.String, "rule": pl.String, "task_kinds": pl.String,
            "assigned_at": pl.Datetime("us", "UTC"), "moved_from": pl.String}


def open_tasks(engine: Engine, kinds: tuple[str, ...], before: datetime) -> pl.DataFrame:
    """task_id, account_id, customer_id, kind, created_at, status of the open tasks of ``kinds``
    raised before ``before``."""
    import polars as pl

    with engine.connect() as conn:
        member, params = any_of(conn, "kind", "kinds", list(kinds))
        return read_frame(
            conn, "SELECT task_id, account_id, customer_id, kind, created_at FROM collection_tasks "
            f"WHERE status = 'open' AND created_at < :before AND {member}",
            {**params, "before": before}, instants=("created_at",),
            schema={"task_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                    "kind": pl.String})


def tasks_of_accounts(engine: Engine, accounts: list[str]) -> pl.DataFrame:
    """task_id, account_id, kind, status, created_at, due_at, done_at, done_by, detail."""
    import polars as pl

    with engine.connect() as conn:
        member, params = any_of(conn, "account_id", "accts", sorted(set(accounts)))
        return read_frame(
            conn, "SELECT task_id, account_id, kind, status, created_at, due_at, done_at, done_by, "
            f"detail FROM collection_tasks WHERE {member} ORDER BY task_id", params,
            instants=("created_at", "due_at", "done_at"),
            schema={"task_id": pl.Int64, "account_id": pl.String, "kind": pl.String,
                    "status": pl.String, "done_by": pl.String, "detail": pl.String})


def visits_between(engine: Engine, accounts: list[str], lo: datetime, hi: datetime) -> pl.DataFrame:
    """account_id, at, detail of ``visit_recorded`` events of ``accounts`` in [lo, hi)."""
    import polars as pl

    with engine.connect() as conn:
        member, params = any_of(conn, "account_id", "accts", sorted(set(accounts)))
        return read_frame(
            conn, "SELECT account_id, at, detail FROM collection_events WHERE type = 'visit_recorded'"
            f" AND at >= :lo AND at < :hi AND {member}", {**params, "lo": lo, "hi": hi},
            instants=("at",), schema={"account_id": pl.String, "detail": pl.String})


def roster(engine: Engine | Connection) -> pl.DataFrame:
    """collector_id, active, languages, daily_capacity, username of the roster rows."""
    import polars as pl

    return read_frame(engine, "SELECT collector_id, active, languages, daily_capacity, username "
                      "FROM collector_roster ORDER BY collector_id",
                      schema={"collector_id": pl.String, "active": pl.Boolean,
                              "languages": pl.String, "daily_capacity": pl.Int64,
                              "username": pl.String})


def roster_row(conn: Connection, collector_id: str) -> Any:
    return conn.execute(text("SELECT collector_id, active, languages, daily_capacity, username "
                             "FROM collector_roster WHERE collector_id = :c"),
                        {"c": collector_id}).first()


def collector_of_username(conn: Connection, username: str) -> str | None:
    row = conn.execute(text("SELECT collector_id FROM collector_roster WHERE username = :u"),
                       {"u": username}).first()
    return None if row is None else str(row[0])


def upsert_roster(conn: Connection, values: dict[str, Any]) -> None:
    if roster_row(conn, values["collector_id"]) is None:
        conn.execute(text("INSERT INTO collector_roster (collector_id, active, languages, "
                          "daily_capacity, username) VALUES (:collector_id, :active, :languages, "
                          ":daily_capacity, :username)"), values)
    else:
        conn.execute(text("UPDATE collector_roster SET active = :active, languages = :languages, "
                          "daily_capacity = :daily_capacity, username = :username "
                          "WHERE collector_id = :collector_id"), values)


def entries(source: Engine | Connection, first: date, last: date,
            collector: str | None = None) -> pl.DataFrame:
    where = "day >= :first AND day <= :last"
    params: dict[str, Any] = {"first": first, "last": last}
    if collector is not None:
        where += " AND collector_id = :c"
        params["c"] = collector
    return read_frame(source, f"SELECT {', '.join(ENTRY_COLUMNS)} FROM worklist_entries "
                      f"WHERE {where}", params, dates=("day",), instants=("assigned_at",),
                      schema=entry_schema())


def has_entries(conn: Connection, day: date) -> bool:
    return conn.execute(text("SELECT 1 FROM worklist_entries WHERE day = :d LIMIT 1"),
                        {"d": day}).first() is not None


def entry(conn: Connection, day: date, account_id: str) -> Any:
    return conn.execute(text("SELECT collector_id, station_id FROM worklist_entries "
                             "WHERE day = :d AND account_id = :a"), {"d": day, "a": account_id}).first()


def move(conn: Connection, day: date, accounts: list[str], to: str) -> int:
    """Move ``accounts`` of ``day`` to collector ``to`` (``moved_from`` keeps the previous one)."""
    if not accounts:
        return 0
    member, params = any_of(conn, "account_id", "accts", accounts)
    res = conn.execute(text("UPDATE worklist_entries SET moved_from = collector_id, "
                            f"collector_id = :to WHERE day = :d AND {member}"),
                       {**params, "to": to, "d": day})
    return int(res.rowcount or 0)


def entries_of_account(engine: Engine, account_id: str) -> pl.DataFrame:
    return read_frame(engine, f"SELECT {', '.join(ENTRY_COLUMNS)} FROM worklist_entries "
                      "WHERE account_id = :a ORDER BY day", {"a": account_id}, dates=("day",),
                      instants=("assigned_at",), schema=entry_schema())
