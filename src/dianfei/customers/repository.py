"""Read queries on the customers package's tables (customers, accounts, meters, service points,
tariff assignments) that other packages reach through :mod:`dianfei.customers.service`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame
from dianfei.db.lists import any_of, rows_in

if TYPE_CHECKING:
    import polars as pl

def open_account_facts(engine: Engine, accounts: Sequence[str] | None = None, *,
                       names: bool = True) -> pl.DataFrame:
    """account_id, customer_id, name, customer_class, low_income, protected, payment_mode of
    every open account, or of the open ones among ``accounts``; without ``name`` when
    ``names`` is false."""
    import polars as pl

    from dianfei.db.frames import sqlite_columns

    schema = {"account_id": pl.String, "customer_id": pl.String,
              **({"name": pl.String} if names else {}),
              "customer_class": pl.String, "low_income": pl.Boolean, "protected": pl.Boolean,
              "payment_mode": pl.String}
    sql = ("SELECT a.account_id, c.customer_id, " + ("c.name, " if names else "")
           + "c.customer_class, c.low_income, c.protected, c.payment_mode FROM accounts a "
           "JOIN customers c ON c.customer_id = a.customer_id WHERE a.closed_on IS NULL")
    params: dict[str, Any] = {}
    if accounts is not None:
        member, params = any_of(engine, "a.account_id", "a", sorted(set(accounts)))
        sql = f"{sql} AND {member}"
    if not names:
        # ids, codes and flags only: parsed as one text on SQLite — a name is free text, so
        # with names every row is a Python tuple (0.6 s for the 100,000 accounts a day rates
        # at a million)
        fast = sqlite_columns(engine, sql, params, schema)
        if fast is not None:
            return fast
    if accounts is None:
        return read_frame(engine, sql, params, schema=schema)
    with engine.connect() as conn:  # on PostgreSQL: the array parameter through SQLAlchemy
        return read_frame(conn, sql, params, schema=schema)


def open_accounts_of_mode(engine: Engine, payment_mode: str, day: date, *,
                          names: bool = True) -> pl.DataFrame:
    """Open accounts of customers with ``payment_mode``, with their active meter and the tariff
    assignments that could be in force on ``day`` (the caller keeps the latest): account_id,
    customer_id, name, customer_class, low_income, protected, meter_id, multiplier, digits,
    tariff_id, tariff_from."""
    import polars as pl

    from dianfei.db.frames import sqlite_columns

    sql = ("SELECT a.account_id, c.customer_id, " + ("c.name, " if names else "")
           + "c.customer_class, c.low_income, c.protected, "
           "m.meter_id, m.multiplier, m.digits, ta.tariff_id, ta.effective_from AS tariff_from "
           "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
           "LEFT JOIN meters m ON m.account_id = a.account_id AND m.removed_on IS NULL "
           "LEFT JOIN tariff_assignments ta ON ta.account_id = a.account_id "
           "  AND ta.effective_from <= :d AND (ta.effective_to IS NULL OR ta.effective_to > :d) "
           "WHERE a.closed_on IS NULL AND c.payment_mode = :m")
    params = {"d": day, "m": payment_mode}
    schema = {"account_id": pl.String, "customer_id": pl.String,
              **({"name": pl.String} if names else {}),
              "customer_class": pl.String, "low_income": pl.Boolean, "protected": pl.Boolean,
              "meter_id": pl.String, "multiplier": pl.Int64, "digits": pl.Int64,
              "tariff_id": pl.String}
    if not names:  # ids, codes, numbers and dates only: parsed as one text on SQLite
        fast = sqlite_columns(engine, sql, params, {**schema, "tariff_from": pl.Date})
        if fast is not None:
            return fast
    return read_frame(engine, sql, params, dates=("tariff_from",), schema=schema)


def protected_customers(conn: Connection, customer_ids: Sequence[str]) -> set[str]:
    return {str(r[0]) for r in rows_in(
        conn, "SELECT customer_id FROM customers WHERE protected AND {member}", "customer_id",
        customer_ids)}


def customer_of_account(conn: Connection, account_id: str) -> str | None:
    row = conn.execute(text("SELECT customer_id FROM accounts WHERE account_id = :a"),
                       {"a": account_id}).first()
    return None if row is None else str(row[0])


def lock_accounts(conn: Connection, account_ids: Sequence[str]) -> dict[str, str]:
    if not account_ids:
        return {}
    lock = " ORDER BY account_id FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    return {str(r[0]): str(r[1]) for r in rows_in(
        conn, "SELECT account_id, customer_id FROM accounts WHERE {member}" + lock,
        "account_id", account_ids)}


def active_meter(conn: Connection, account_id: str, *, remote: bool) -> str | None:
    """The account's first active meter (by id); ``remote``: only one with a communication
    address (remote-capable)."""
    where = " AND comm_address IS NOT NULL" if remote else ""
    row = conn.execute(text(
        f"SELECT meter_id FROM meters WHERE account_id = :a AND removed_on IS NULL{where} "
        "ORDER BY meter_id LIMIT 1"), {"a": account_id}).first()
    return str(row[0]) if row else None


def active_meters(conn: Connection, account_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """:func:`active_meter` of many accounts in one read: account id → (its first active meter,
    its first remote-capable one or None); accounts without an active meter are left out."""
    out: dict[str, tuple[str, str | None]] = {}
    for acc, meter, comm in rows_in(conn, "SELECT account_id, meter_id, comm_address FROM meters "
                                          "WHERE {member} AND removed_on IS NULL "
                                          "ORDER BY account_id, meter_id",
                                    "account_id", account_ids):
        first, remote = out.get(acc, (str(meter), None))
        out[acc] = (first, remote if remote is not None or comm is None else str(meter))
    return out


def contact_rows(conn: Connection, customer_ids: Sequence[str]) -> list[Any]:
    """(customer_id, name, address, phone_enc) of the customers."""
    return rows_in(conn, "SELECT customer_id, name, address, phone_enc FROM customers "
                         "WHERE {member}", "customer_id", customer_ids)


def first_service_point_addresses(conn: Connection, account_ids: Sequence[str]) -> dict[str, Any]:
    """account id → the address of its first service point (by id)."""
    out: dict[str, Any] = {}
    for acc, addr in rows_in(conn, "SELECT account_id, address FROM service_points WHERE "
                                   "{member} ORDER BY account_id, service_point_id",
                                   "account_id", account_ids):
        out.setdefault(str(acc), addr)
    return out


def customer_dimensions(engine: Engine) -> pl.DataFrame:
    """customer_id, customer_class, region_id, station_id, collector_id, opened_on, closed_on of
    every customer."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT customer_id, customer_class, region_id, station_id, collector_id, opened_on, "
        "closed_on FROM customers ORDER BY customer_id", dates=("opened_on", "closed_on"),
        schema={"customer_id": pl.String, "customer_class": pl.String, "region_id": pl.String,
                "station_id": pl.String, "collector_id": pl.String, "opened_on": pl.Date,
                "closed_on": pl.Date})


def open_customer_count(engine: Engine, day: date) -> int:
    """How many customers were open on ``day`` (opened by it, not closed by it)."""
    from dianfei.db.frames import bind_params

    params = bind_params(engine, {"d": day})
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT COUNT(*) FROM customers WHERE opened_on <= :d "
            "AND (closed_on IS NULL OR closed_on > :d)"), params).scalar_one())


def collectors(engine: Engine) -> pl.DataFrame:
    """collector_id, name, station_id of every collector."""
    import polars as pl

    return read_frame(engine, "SELECT collector_id, name, station_id FROM collectors "
                      "ORDER BY collector_id",
                      schema={"collector_id": pl.String, "name": pl.String, "station_id": pl.String})


def assignment_facts(engine: Engine, accounts: Sequence[str]) -> pl.DataFrame:
    """account_id, customer_id, customer_class, region_id, station_id, collector_id, language of
    the open ones among ``accounts``."""
    import polars as pl

    schema = {"account_id": pl.String, "customer_id": pl.String, "customer_class": pl.String,
              "region_id": pl.String, "station_id": pl.String, "collector_id": pl.String,
              "language": pl.String}
    with engine.connect() as conn:
        member, params = any_of(conn, "a.account_id", "a", sorted(set(accounts)))
        return read_frame(
            conn, "SELECT a.account_id, c.customer_id, c.customer_class, c.region_id, "
            "c.station_id, c.collector_id, c.language FROM accounts a JOIN customers c "
            f"ON c.customer_id = a.customer_id WHERE a.closed_on IS NULL AND {member}",
            params, schema=schema)
def collector(conn: Connection, collector_id: str) -> dict[str, Any] | None:
    row = conn.execute(text("SELECT collector_id, name, station_id FROM collectors "
                            "WHERE collector_id = :c"), {"c": collector_id}).first()
    return None if row is None else {"collector_id": row[0], "name": row[1], "station_id": row[2]}


def bill_facts(engine: Engine, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """What a bill document prints about its customer, and what groups similar households:
    account_id, customer_id, name, customer_class, region_id, region_name, address (the
    customer's, else the service point's), low_income, payment_mode, capacity_kva (the largest
    contracted capacity of the account's service points, 0.01 kVA; null when none is recorded).
    Every account when ``accounts`` is None (the peer groups of a period)."""
    import polars as pl

    schema = {"account_id": pl.String, "customer_id": pl.String, "name": pl.String,
              "customer_class": pl.String, "region_id": pl.String, "region_name": pl.String,
              "address": pl.String, "low_income": pl.Boolean, "payment_mode": pl.String,
              "capacity_kva": pl.Int64}
    sql = ("SELECT a.account_id, c.customer_id, c.name, c.customer_class, c.region_id, "
           "r.name AS region_name, COALESCE(c.address, sp.address) AS address, c.low_income, "
           "c.payment_mode, sp.capacity_kva FROM accounts a "
           "JOIN customers c ON c.customer_id = a.customer_id "
           "LEFT JOIN regions r ON r.region_id = c.region_id "
           "LEFT JOIN (SELECT account_id, MAX(address) AS address, MAX(capacity_kva) AS capacity_kva "
           "  FROM service_points {points} GROUP BY account_id) sp ON sp.account_id = a.account_id")
    if accounts is None:
        return read_frame(engine, sql.format(points=""), schema=schema)
    with engine.connect() as conn:
        member, params = any_of(conn, "a.account_id", "a", sorted(set(accounts)))
        # the service points of these accounts only: grouping every account's points first
        # made one bill page cost a scan of the whole table
        points, _ = any_of(conn, "account_id", "a", [])
        return read_frame(conn, f"{sql.format(points='WHERE ' + points)} WHERE {member}", params,
                          schema=schema)


def account_profiles(engine: Engine) -> pl.DataFrame:
    """Every account (closed ones too) with what risk reads about its customer."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT a.account_id, c.customer_id, c.customer_class, c.region_id, c.station_id, "
        "c.low_income, c.protected, c.payment_mode, a.opened_on, a.closed_on "
        "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id",
        dates=("opened_on", "closed_on"),
        schema={"account_id": pl.String, "customer_id": pl.String, "customer_class": pl.String,
                "region_id": pl.String, "station_id": pl.String, "low_income": pl.Boolean,
                "protected": pl.Boolean, "payment_mode": pl.String})


def contact_facts(engine: Engine, accounts: Sequence[str] | None = None, *,
                  gaps_or_classes: Sequence[str] | None = None) -> pl.DataFrame:
    """``accounts`` (read through the account key) and ``gaps_or_classes`` (only accounts
    without a phone or of these classes) narrow the rows in SQL, not after reading them all."""
    import polars as pl

    has_phone = "c.phone_enc IS NOT NULL AND c.phone_enc != ''"
    where, params = "", dict[str, Any]()
    if accounts is not None:
        member, params = any_of(engine, "a.account_id", "accts", sorted(set(accounts)))
        where += f" AND {member}"
    if gaps_or_classes is not None:
        member, bound = any_of(engine, "c.customer_class", "classes", sorted(set(gaps_or_classes)))
        where += f" AND (NOT ({has_phone}) OR {member})"
        params = {**params, **bound}
    from dianfei.db.frames import sqlite_columns

    sql = ("SELECT a.account_id, c.customer_id, c.customer_class, c.station_id, "
           f"CASE WHEN {has_phone} THEN 1 ELSE 0 END AS has_phone "
           "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
           f"WHERE a.closed_on IS NULL AND c.closed_on IS NULL{where}")
    schema = {"account_id": pl.String, "customer_id": pl.String, "customer_class": pl.String,
              "station_id": pl.String, "has_phone": pl.Int64}
    # ids and codes only: one text parsed as columns on SQLite (the daily contact check reads
    # every account without a phone, ~90,000 at a million)
    fast = sqlite_columns(engine, sql, params, schema)
    frame = fast if fast is not None else read_frame(engine, sql, params, schema=schema)
    return frame.with_columns(pl.col("has_phone").cast(pl.Boolean)).sort("account_id")


def supply_off(conn: Connection, key: str, account_id: str, reason: str, at: Any) -> None:
    """Insert an interruption (nothing when ``key`` is there already: a run done again)."""
    from dianfei.db.frames import bind_params

    conn.execute(text(
        "INSERT INTO supply_interruptions (key, account_id, reason, off_at, on_at) "
        "VALUES (:k, :a, :r, :t, NULL) ON CONFLICT (key) DO NOTHING"),
        bind_params(conn, {"k": key, "a": account_id, "r": reason, "t": at}))


def supply_on(conn: Connection, key: str, at: Any) -> int:
    """Close the open interruption ``key``; the rows changed (0: none open)."""
    from dianfei.db.frames import bind_params

    result = conn.execute(text(
        "UPDATE supply_interruptions SET on_at = :t WHERE key = :k AND on_at IS NULL"),
        bind_params(conn, {"k": key, "t": at}))
    return int(result.rowcount or 0)


def supply_interruptions(engine: Engine | Connection, since: Any | None) -> pl.DataFrame:
    """key, account_id, reason, off_at, on_at of the interruptions still open at ``since`` or
    begun after it (all with None)."""
    import polars as pl

    from dianfei.db.frames import bind_params

    where = "" if since is None else " WHERE on_at IS NULL OR on_at > :s"
    return read_frame(
        engine, f"SELECT key, account_id, reason, off_at, on_at FROM supply_interruptions{where}",
        {} if since is None else bind_params(engine, {"s": since}), instants=("off_at", "on_at"),
        schema={"key": pl.String, "account_id": pl.String, "reason": pl.String}
    # typed even when every span is open (an all-null column would come back untyped)
    ).with_columns(pl.col("off_at", "on_at").cast(pl.Datetime("us", "UTC")))


def account_state(conn: Connection, account_id: str) -> Any:
    """(account_id, customer_id, closed_on, payment_mode) of one account, or None."""
    return conn.execute(text(
        "SELECT a.account_id, a.customer_id, a.closed_on, c.payment_mode FROM accounts a "
        "JOIN customers c ON c.customer_id = a.customer_id WHERE a.account_id = :a"),
        {"a": account_id}).first()


def close_account(conn: Connection, account_id: str, on: date) -> bool:
    """Close the open account (``closed_on``); its customer too when no other account of theirs
    is open. Returns whether the customer was closed."""
    from dianfei.db.frames import bind_params

    row = conn.execute(text("SELECT customer_id FROM accounts WHERE account_id = :a "
                            "AND closed_on IS NULL"), {"a": account_id}).first()
    if row is None:
        return False
    params = bind_params(conn, {"a": account_id, "d": on, "c": row[0]})
    conn.execute(text("UPDATE accounts SET closed_on = :d WHERE account_id = :a"), params)
    others = conn.execute(text("SELECT count(*) FROM accounts WHERE customer_id = :c "
                               "AND closed_on IS NULL"), params).scalar_one()
    if others:
        return False
    conn.execute(text("UPDATE customers SET closed_on = :d WHERE customer_id = :c "
                      "AND closed_on IS NULL"), params)
    return True


def off_since(conn: Connection, account_id: str) -> Any:
    """The start (UTC, aware) of the account's open interruption, or None."""
    import polars as pl

    frame = read_frame(conn, "SELECT off_at FROM supply_interruptions WHERE account_id = :a "
                       "AND on_at IS NULL", {"a": account_id}, instants=("off_at",),
                       schema={"off_at": pl.Datetime("us", "UTC")})
    return None if frame.height == 0 else frame["off_at"].min()
