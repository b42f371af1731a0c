"""Queries on the collections domain's own tables (all of its SQL lives here): collection_events,
late_fee_accruals, dunning_state, stop_cases, meter_commands, payment_plans, plan_instalments,
prepay_state, collection_tasks, collection_runs, late_fee_waivers.

What collections needs from other packages (open items, customers, meters, bills, reads,
payments, the notify outbox) it reads through their services, in the same set-based way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import bind_params, read_frame
from dianfei.db.lists import any_of, rows_in

if TYPE_CHECKING:
    import polars as pl


def accruals(engine: Engine) -> pl.DataFrame:
    """The open late-fee accruals (every overdue bill's, read each day)."""
    import polars as pl

    from dianfei.db.frames import sqlite_columns

    sql = ("SELECT bill_id, account_id, customer_id, customer_class, due_on, through, raw, "
           "posted, waived, closed_on, accrued, opened_on FROM late_fee_accruals "
           "WHERE closed_on IS NULL")
    schema = {"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
              "customer_class": pl.String, "due_on": pl.Date, "through": pl.Date,
              "raw": pl.Int64, "posted": pl.Int64, "waived": pl.Boolean, "closed_on": pl.Date,
              "accrued": pl.Int64, "opened_on": pl.Date}
    # ids, codes, numbers and dates: one text parsed as columns on SQLite
    fast = sqlite_columns(engine, sql, {}, schema)
    if fast is not None:
        return fast
    dates = ("due_on", "through", "closed_on", "opened_on")
    return read_frame(engine, sql, dates=dates,
                      schema={k: v for k, v in schema.items() if k not in dates})


def late_history_of(engine: Engine, accounts: Sequence[str], since: date, recent: date,
                    until: date) -> pl.DataFrame:
    """Per account of ``accounts``, the bills due since ``since`` and before ``until`` that were
    paid late (they accrued a fee; a bill is late from the day after its due date): account_id,
    late_count, avg_days_late (days from the due date to the last day accrued), late_recent (how
    many fell due on or after ``recent``, the segment rules' recent months) — the payment-history
    features of the risk score, aggregated in the database through the account index. The daily
    run reads it for the accounts in arrears and on the worklists only (``Context.late_history``);
    the account page for one."""
    import polars as pl

    days = ("julianday(through) - julianday(due_on)" if engine.dialect.name == "sqlite"
            else "through - due_on")
    sql = (f"SELECT account_id, COUNT(*), CAST(AVG({days}) AS DOUBLE PRECISION), "
           "SUM(CASE WHEN due_on >= :recent THEN 1 ELSE 0 END) FROM late_fee_accruals "
           "WHERE due_on >= :since AND due_on < :until AND {member} GROUP BY account_id")
    if engine.dialect.name == "sqlite":
        # ids and whole numbers only: one text parsed as columns, not a Python tuple per
        # account (the 100,000 accounts in arrears a day at a million); the days late are
        # summed there (whole days, exact) and averaged here — the same double as AVG's
        from dianfei.db.frames import sqlite_columns

        member, bound = any_of(engine, "account_id", "members", sorted(set(accounts)))
        summed = sqlite_columns(engine, (
            "SELECT account_id, COUNT(*) AS late_count, "
            f"CAST(SUM({days}) AS INTEGER) AS days_late, "
            "SUM(CASE WHEN due_on >= :recent THEN 1 ELSE 0 END) AS late_recent "
            "FROM late_fee_accruals WHERE due_on >= :since AND due_on < :until "
            f"AND {member} GROUP BY account_id"),
            {"since": since, "recent": recent, "until": until, **bound},
            {"account_id": pl.String, "late_count": pl.Int64, "days_late": pl.Int64,
             "late_recent": pl.Int64})
        if summed is not None:
            return summed.select(
                "account_id", "late_count",
                (pl.col("days_late") / pl.col("late_count")).alias("avg_days_late"),
                "late_recent").cast(late_history_schema())  # type: ignore[arg-type]
    with engine.connect() as conn:
        rows = rows_in(conn, sql, "account_id", accounts,
                       bind_params(conn, {"since": since, "recent": recent, "until": until}))
    return pl.DataFrame([(str(r[0]), int(r[1]), float(r[2]), int(r[3])) for r in rows],
                        schema=late_history_schema(), orient="row")


def late_history_schema() -> dict[str, Any]:
    """The columns of :func:`late_history_of`."""
    import polars as pl

    return {"account_id": pl.String, "late_count": pl.Int64, "avg_days_late": pl.Float64,
            "late_recent": pl.Int64}


def latest_run_report(engine: Engine, on_or_before: date) -> tuple[date, str] | None:
    """(day, report JSON) of the latest finished collections run on or before a day."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT day, report FROM collection_runs WHERE day <= :d AND finished_at IS NOT NULL "
            "AND report IS NOT NULL ORDER BY day DESC LIMIT 1"),
            bind_params(conn, {"d": on_or_before})).first()
    if row is None:
        return None
    day = row[0] if isinstance(row[0], date) else date.fromisoformat(str(row[0]))
    return day, str(row[1])


def broken_plans(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(
        engine, "SELECT account_id, COUNT(*) AS broken_plans FROM payment_plans "
        "WHERE status = 'broken' GROUP BY account_id",
        schema={"account_id": pl.String, "broken_plans": pl.Int64})


def active_plans(engine: Engine | Connection) -> pl.DataFrame:
    """Active plans: plan_id, account_id, customer_id, kind, total, grace_days, agreed_at
    (payments posted since then count towards the plan), agreed_on."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT p.plan_id, p.account_id, p.customer_id, p.kind, p.total, p.grace_days, "
        "p.agreed_at, p.agreed_on FROM payment_plans p WHERE p.status = 'active'",
        instants=("agreed_at",), dates=("agreed_on",),
        schema={"plan_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String, "total": pl.Int64, "grace_days": pl.Int64})


def instalments(engine: Engine | Connection, plan_ids: list[int] | None = None) -> pl.DataFrame:
    """plan_id, seq, due_on, amount, period, bill_id of the active plans' instalments (or of
    ``plan_ids``, whatever their status)."""
    import polars as pl

    where, params = "p.status = 'active'", {}
    if plan_ids is not None:
        if not plan_ids:
            plan_ids = [-1]
        where = "i.plan_id IN (" + ", ".join(f":p{i}" for i in range(len(plan_ids))) + ")"
        params = {f"p{i}": v for i, v in enumerate(plan_ids)}
    return read_frame(
        engine,
        "SELECT i.plan_id, i.seq, i.due_on, i.amount, i.period, i.bill_id "
        "FROM plan_instalments i JOIN payment_plans p ON p.plan_id = i.plan_id "
        f"WHERE {where} ORDER BY i.plan_id, i.seq", params,
        dates=("due_on",), schema={"plan_id": pl.Int64, "seq": pl.Int64, "amount": pl.Int64,
                                   "period": pl.String, "bill_id": pl.String})


def instalments_due(conn: Connection, accounts: list[str], period: str) -> list[Any]:
    """account_id, plan_id, seq, amount and the plan's instalment count ("of") of the
    instalments falling due with ``period``'s bill on ``accounts``' instalment plans that are
    active or completed — filtered in SQL, so a bill costs the same in a county as in a
    province."""
    member, params = any_of(conn, "p.account_id", "accounts", sorted(set(accounts)))
    return list(conn.execute(text(
        "SELECT p.account_id, p.plan_id, i.seq, i.amount, "
        "(SELECT COUNT(*) FROM plan_instalments j WHERE j.plan_id = p.plan_id AND j.seq > 0) "
        "FROM plan_instalments i JOIN payment_plans p ON p.plan_id = i.plan_id "
        "WHERE p.kind = 'instalment' AND p.status IN ('active', 'completed') "
        f"AND i.period = :period AND {member} ORDER BY p.plan_id, i.seq"),
        {"period": period, **params}))


def bind_instalments(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Instalments ride on their issued bills: each row's plan_id, seq, bill_id, due_on (one
    executemany)."""
    if rows:
        conn.execute(text("UPDATE plan_instalments SET bill_id = :bill_id, due_on = :due_on "
                          "WHERE plan_id = :plan_id AND seq = :seq"), rows)


def end_plans(conn: Connection, plan_ids: list[int], status: str, day: date) -> None:
    """Set ``status`` and ``ended_on`` of the active plans ``plan_ids`` (one statement)."""
    if not plan_ids:
        return
    member, params = any_of(conn, "plan_id", "ids", plan_ids, array_type="BIGINT")
    conn.execute(text(f"UPDATE payment_plans SET status = :s, ended_on = :d WHERE {member} "
                      "AND status = 'active'"), {"s": status, "d": day, **params})


def _plan_where(**filters: Any) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    for col, val in filters.items():
        if val is not None:
            clauses.append(f"{col} = :{col}")
            params[col] = val
    return (f"WHERE {' AND '.join(clauses)} " if clauses else ""), params


def count_plans(engine: Engine | Connection, **filters: Any) -> int:
    """How many plans :func:`plans` pages through with the same filters."""
    where, params = _plan_where(**filters)
    sql = text(f"SELECT COUNT(*) FROM payment_plans {where}")
    if isinstance(engine, Connection):
        return int(engine.execute(sql, params).scalar_one())
    with engine.connect() as conn:
        return int(conn.execute(sql, params).scalar_one())


def plans(engine: Engine | Connection, *, status: str | None = None,
          account_id: str | None = None, requested_by: str | None = None,
          plan_id: int | None = None, kind: str | None = None,
          limit: int | None = None, offset: int = 0) -> pl.DataFrame:
    """Plans, newest first, with every column of ``payment_plans`` but ledger_mark
    (``limit``/``offset``: one page of them)."""
    import polars as pl

    where, params = _plan_where(status=status, account_id=account_id, requested_by=requested_by,
                                plan_id=plan_id, kind=kind)
    page = ""
    if limit is not None:
        page = " LIMIT :limit OFFSET :offset"
        params.update(limit=int(limit), offset=int(offset))
    return read_frame(
        engine,
        "SELECT plan_id, account_id, customer_id, kind, status, customer_class, segment, total, "
        "down_payment, grace_days, agreed_at, agreed_on, requested_by, approved_by, approved_at, "
        f"ended_on, ended_by, end_reason FROM payment_plans {where}ORDER BY plan_id DESC{page}",
        params,
        instants=("agreed_at", "approved_at"), dates=("agreed_on", "ended_on"),
        schema={"plan_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String, "status": pl.String, "customer_class": pl.String,
                "segment": pl.String, "total": pl.Int64, "down_payment": pl.Int64,
                "grace_days": pl.Int64, "requested_by": pl.String, "approved_by": pl.String,
                "ended_by": pl.String, "end_reason": pl.String})


def agreed_plan_ids(engine: Engine) -> set[int]:
    """The plans that were ever in force (each has its one ``plan_agreed`` event)."""
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT key FROM collection_events WHERE type = 'plan_agreed'"))
        return {int(k.split(":")[1]) for (k,) in keys if k.startswith("plan:")}


def plan_events(engine: Engine | Connection, first: date, last: date) -> pl.DataFrame:
    """account_id, type, business_date, amount, detail of the plan events (plan_*,
    instalment_missed) on business days ``first``..``last``."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT account_id, type, business_date, amount, detail FROM collection_events "
        "WHERE (type LIKE 'plan_%' OR type = 'instalment_missed') "
        "AND business_date >= :f AND business_date <= :l ORDER BY event_id",
        {"f": first, "l": last}, dates=("business_date",),
        schema={"account_id": pl.String, "type": pl.String, "amount": pl.Int64,
                "detail": pl.String})


def dunning_state(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(engine, "SELECT account_id, ladder, level, bill_id, since FROM dunning_state",
                      dates=("since",),
                      schema={"account_id": pl.String, "ladder": pl.String, "level": pl.String,
                              "bill_id": pl.String})


def replace_rows(conn: Connection, table: str, key: str, frame: pl.DataFrame) -> None:
    """Delete the rows whose ``key`` appears in ``frame`` and insert ``frame`` (a bulk upsert of
    this package's own state tables)."""
    from dianfei.db.bulk import write_frame

    if frame.height == 0:
        return
    delete_keys(conn, table, key, frame[key].to_list())
    write_frame(conn, table, frame)


def update_rows(conn: Connection, table: str, key: str, frame: pl.DataFrame) -> None:
    """Update the rows of ``table`` whose ``key`` appears in ``frame`` with its other columns
    (rows that exist; a daily state change touches only the table's pages, where a delete and
    insert would rewrite every index too)."""
    from dianfei.db.bulk import sqlite_rows, write_frame

    if frame.height == 0:
        return
    cols = [c for c in frame.columns if c != key]
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"CREATE TEMP TABLE _upd ON COMMIT DROP AS SELECT "
                             f"{', '.join(frame.columns)} FROM {table} WHERE false")
        write_frame(conn, "_upd", frame)
        conn.exec_driver_sql(
            f"UPDATE {table} t SET {', '.join(f'{c} = u.{c}' for c in cols)} FROM _upd u "
            f"WHERE t.{key} = u.{key}")
        conn.exec_driver_sql("DROP TABLE _upd")
        return
    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        cur.executemany(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in cols)} "
                        f"WHERE {key} = ?", sqlite_rows(frame.select(*cols, key)))
    finally:
        cur.close()


def delete_keys(conn: Connection, table: str, key: str, keys: list[str]) -> None:
    """Delete the rows whose (text) ``key`` is one of ``keys``."""
    if not keys:
        return
    member, params = any_of(conn, key, "keys", keys)
    conn.execute(text(f"DELETE FROM {table} WHERE {member}"), params)


def delete_run(conn: Connection, day: date) -> None:
    """Forget the run record of ``day`` (a day run again starts a fresh record)."""
    conn.execute(text("DELETE FROM collection_runs WHERE day = :d"), bind_params(conn, {"d": day}))


def notice_sent_keys_since(conn: Connection, first: date) -> pl.DataFrame:
    """key of every ``notice_sent`` event dated ``first`` or later (one range of the day index)."""
    import polars as pl

    return read_frame(conn, "SELECT key FROM collection_events WHERE business_date >= :d "
                      "AND type = 'notice_sent'", {"d": first}, schema={"key": pl.String})


def existing_keys(conn: Connection, table: str, keys: list[str]) -> set[str]:
    """Which of ``keys`` are already in ``table.key``."""
    return {str(r[0]) for r in rows_in(conn, f"SELECT key FROM {table} WHERE {{member}}", "key",
                                       keys)}


def events(engine: Engine, account_id: str | None = None) -> pl.DataFrame:
    import polars as pl

    where = " WHERE account_id = :a" if account_id else ""
    return read_frame(
        engine,
        "SELECT event_id, account_id, type, at, amount, balance_after, level, notice, channel, "
        f"bill_id, detail FROM collection_events{where} ORDER BY at, event_id",
        {"a": account_id} if account_id else {}, instants=("at",),
        schema={"event_id": pl.Int64, "account_id": pl.String, "type": pl.String,
                "amount": pl.Int64, "balance_after": pl.Int64, "level": pl.String,
                "notice": pl.String, "channel": pl.String, "bill_id": pl.String,
                "detail": pl.String})


def pending_fees(conn: Connection, accounts: list[str] | None = None) -> dict[str, int]:
    """Late fees accrued but not yet posted to the ledger (fen per account): owed all the same,
    they reach the ledger at month end or when the bill's accrual closes."""
    sql = ("SELECT account_id, SUM(accrued - posted) FROM late_fee_accruals "
           "WHERE closed_on IS NULL AND NOT waived AND accrued > posted{filter} "
           "GROUP BY account_id")
    if accounts is None:
        rows = conn.execute(text(sql.format(filter=""))).all()
    else:
        rows = rows_in(conn, sql.format(filter=" AND {member}"), "account_id", accounts)
    return {str(r[0]): int(r[1]) for r in rows}


def prepay_state(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(engine, "SELECT account_id, stage, since_at, accrued FROM prepay_state",
                      instants=("since_at",),
                      schema={"account_id": pl.String, "stage": pl.String, "accrued": pl.Int64})


def prepay_accrued(conn: Connection, account_id: str) -> int | None:
    """The charges accrued since the last bill as last computed (None: never computed)."""
    row = conn.execute(text("SELECT accrued FROM prepay_state WHERE account_id = :a"),
                       {"a": account_id}).first()
    return None if row is None or row[0] is None else int(row[0])


def accounts_with_plan(conn: Connection, accounts: list[str]) -> set[str]:
    return {str(r[0]) for r in rows_in(
        conn, "SELECT account_id FROM payment_plans WHERE status = 'active' AND {member}",
        "account_id", accounts)}


def prepay_accrued_of(conn: Connection, accounts: list[str]) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in rows_in(
        conn, "SELECT account_id, accrued FROM prepay_state WHERE accrued IS NOT NULL "
              "AND {member}", "account_id", accounts)}


def case_notice_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Which of ``keys`` already opened a stop case (in any status): one case per (account,
    oldest bill), since its stop notice can be given only once."""
    return {str(r[0]) for r in rows_in(
        conn, "SELECT notice_key FROM stop_cases WHERE {member}", "notice_key", keys)}


def live_case_accounts(conn: Connection) -> set[str]:
    """Accounts with a live stop case (any mode)."""
    return {str(r[0]) for r in conn.execute(text(
        "SELECT account_id FROM stop_cases WHERE status != 'closed'")).all()}


def active_plan(conn: Connection, account_id: str) -> Any:
    """(plan_id, agreed_on, total, status) of the account's active plan, if any."""
    return conn.execute(text(
        "SELECT plan_id, agreed_on, total, status FROM payment_plans WHERE account_id = :a "
        "AND status = 'active' ORDER BY plan_id DESC"), {"a": account_id}).first()


def live_case(conn: Connection, account_id: str) -> Any:
    """(case_id, mode, status, bill_id) of the account's live stop case, if any."""
    return conn.execute(text(
        "SELECT case_id, mode, status, bill_id FROM stop_cases WHERE account_id = :a "
        "AND status != 'closed'"), {"a": account_id}).first()


def prepay_stage(conn: Connection, account_id: str) -> Any:
    """(stage, available, as_of) of the account's smart-prepayment state, if any."""
    return conn.execute(text("SELECT stage, available, as_of FROM prepay_state "
                             "WHERE account_id = :a"), {"a": account_id}).first()


def suspended_between(engine: Engine, lo: Any, hi: Any) -> pl.DataFrame:
    """Stop cases whose supply was suspended in [lo, hi): case_id, account_id, customer_id,
    mode, suspended_at."""
    import polars as pl

    return read_frame(
        engine, "SELECT case_id, account_id, customer_id, mode, suspended_at FROM stop_cases "
        "WHERE suspended_at >= :lo AND suspended_at < :hi", {"lo": lo, "hi": hi},
        instants=("suspended_at",),
        schema={"case_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "mode": pl.String})


def live_case_frame(conn: Connection, mode: str, statuses: tuple[str, ...]) -> pl.DataFrame:
    """case_id, account_id, status, earliest_stop_at of the cases of ``mode`` in ``statuses``,
    oldest first."""
    import polars as pl

    marks = ", ".join(f":s{i}" for i in range(len(statuses)))
    return read_frame(
        conn, "SELECT case_id, account_id, status, earliest_stop_at FROM stop_cases "
        f"WHERE mode = :m AND status IN ({marks})",
        {"m": mode, **{f"s{i}": s for i, s in enumerate(statuses)}},
        instants=("earliest_stop_at",),
        schema={"case_id": pl.Int64, "account_id": pl.String, "status": pl.String}
    ).sort("case_id")  # not ORDER BY: see stops.live_cases


def event_totals_between(engine: Engine, first: Any, last: Any, types: Sequence[str]) -> pl.DataFrame:
    """type, events, amount (fen) of the collection events of ``types`` on business days
    ``first``..``last``."""
    import polars as pl

    names = {f"t{i}": t for i, t in enumerate(types)}
    return read_frame(
        engine, "SELECT type, count(*) AS events, CAST(coalesce(sum(amount), 0) AS BIGINT) AS amount "
        f"FROM collection_events WHERE business_date BETWEEN :a AND :z "
        f"AND type IN ({', '.join(':' + k for k in names) or 'NULL'}) GROUP BY type ORDER BY type",
        {"a": first, "z": last, **names},
        schema={"type": pl.String, "events": pl.Int64, "amount": pl.Int64})


def events_of_types(engine: Engine, types: tuple[str, ...]) -> pl.DataFrame:
    """account_id, type, business_date of the collection events of ``types``."""
    import polars as pl

    params = {f"t{i}": t for i, t in enumerate(types)}
    names = ", ".join(f":{k}" for k in params) or "NULL"
    return read_frame(
        engine, f"SELECT account_id, type, business_date FROM collection_events WHERE type IN ({names})",
        params, dates=("business_date",),
        schema={"account_id": pl.String, "type": pl.String})


def visits_since(engine: Engine, since: date) -> pl.DataFrame:
    """account_id, visits: collector visits ordered since ``since`` (any status)."""
    import polars as pl

    from dianfei.core.clock import start_of_day

    return read_frame(
        engine, "SELECT account_id, COUNT(*) AS visits FROM collection_tasks "
        "WHERE kind = 'collector_visit' AND created_at >= :since GROUP BY account_id",
        {"since": start_of_day(since)}, schema={"account_id": pl.String, "visits": pl.Int64})


# -- account closure (销户, collections.closure) ----------------------------------------------------

def pending_fees_of(conn: Connection, account_id: str) -> list[tuple[str, str, int]]:
    """(bill_id, customer_id, fen accrued but not posted yet) of the account's open accruals."""
    return [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(text(
        "SELECT bill_id, customer_id, accrued - posted FROM late_fee_accruals "
        "WHERE account_id = :a AND closed_on IS NULL AND NOT waived AND accrued > posted "
        "ORDER BY bill_id"), {"a": account_id})]


def close_accruals_of(conn: Connection, account_id: str, day: date) -> int:
    """Finish the account's open accruals on ``day`` with what they accrued posted (the caller
    posted it); a waived one keeps what it had posted. Returns the rows closed."""
    result = conn.execute(text(
        "UPDATE late_fee_accruals SET closed_on = :d, "
        "posted = CASE WHEN waived THEN posted ELSE accrued END "
        "WHERE account_id = :a AND closed_on IS NULL"),
        bind_params(conn, {"a": account_id, "d": day}))
    return int(result.rowcount or 0)


def cancel_open_tasks_of(conn: Connection, account_id: str) -> int:
    """Cancel the account's open worklist tasks (every kind). Returns how many."""
    result = conn.execute(text(
        "UPDATE collection_tasks SET status = 'cancelled' WHERE account_id = :a "
        "AND status = 'open'"), {"a": account_id})
    return int(result.rowcount or 0)


def forget_account_state(conn: Connection, account_id: str) -> None:
    """Drop the account's place on the dunning ladder and its smart-prepayment state."""
    for table in ("dunning_state", "prepay_state"):
        conn.execute(text(f"DELETE FROM {table} WHERE account_id = :a"), {"a": account_id})


def pending_fee_of_bill(conn: Connection, bill_id: str) -> tuple[str, str, int] | None:
    """(account_id, customer_id, fen accrued but not posted yet) of the bill's open accrual, or
    None when it has none open (not overdue yet, finished, or waived: a waived accrual posts
    nothing more)."""
    row = conn.execute(text(
        "SELECT account_id, customer_id, accrued - posted FROM late_fee_accruals "
        "WHERE bill_id = :b AND closed_on IS NULL AND NOT waived"), {"b": bill_id}).first()
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]))


def close_accrual(conn: Connection, bill_id: str, day: date) -> int:
    """Finish the bill's open accrual on ``day`` with what it accrued posted (the caller posted
    it); a waived one keeps what it had posted. Returns the rows closed (0 or 1)."""
    result = conn.execute(text(
        "UPDATE late_fee_accruals SET closed_on = :d, "
        "posted = CASE WHEN waived THEN posted ELSE accrued END "
        "WHERE bill_id = :b AND closed_on IS NULL"),
        bind_params(conn, {"b": bill_id, "d": day}))
    return int(result.rowcount or 0)
