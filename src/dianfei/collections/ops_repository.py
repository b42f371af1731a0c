"""Queries of collector operations (C) on collections' own tables: contact_flags,
contact_checks, credit_ratings, and the collection events they read."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    from collections.abc import Iterator

    import polars as pl


@contextmanager
def _connected(source: Engine | Connection) -> Iterator[Connection]:
    if isinstance(source, Connection):
        yield source
    else:
        with source.connect() as conn:
            yield conn


def events_mentioning(source: Engine | Connection, type_: str, since: date,
                      word: str) -> pl.DataFrame:
    """key, account_id, customer_id, type, at, business_date, detail of the collection events of
    ``type_`` on business days from ``since`` whose detail holds ``word`` (a superset the caller
    checks by parsing the detail): the daily contact check wants the few wrong-contact visits of
    its week, not every visit's detail parsed in Python."""
    import polars as pl

    find = "instr(e.detail, :w)" if source.dialect.name == "sqlite" else "strpos(e.detail, :w)"
    # sorted here, not by ORDER BY event_id: that makes SQLite walk every event ever recorded in
    # id order instead of the business-date index. The days' events first (the business-date
    # index), then their type: asked in one step, SQLite skip-scanned the (account, type, day)
    # index over every account — 40 ms a day for 600 visits at 20,000 accounts, 5× less so
    return read_frame(
        source, "WITH days AS MATERIALIZED (SELECT event_id, type FROM collection_events "
        "WHERE business_date >= :s) "
        "SELECT e.event_id, e.key, e.account_id, e.customer_id, e.type, e.at, e.business_date, "
        "e.detail FROM days JOIN collection_events e ON e.event_id = days.event_id "
        f"WHERE days.type = :t AND {find} > 0",
        {"s": since, "t": type_, "w": word}, dates=("business_date",), instants=("at",),
        schema={"event_id": pl.Int64, "key": pl.String, "account_id": pl.String,
                "customer_id": pl.String, "type": pl.String, "detail": pl.String},
    ).sort("event_id").drop("event_id")


def rating_facts(source: Engine | Connection, since: date, day: date, *, paid: str, fee: str,
                 broken: Sequence[str], stopped: str, later: Sequence[str],
                 accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """account_id, on_time, broken, suspensions of the accounts with collection events from
    ``since``, counted in the database: on_time the business months with a ``paid`` event and
    no ``fee`` event, broken the ``broken`` events, suspensions the ``stopped`` events (a smart
    prepayment cut-off left out); the ``later`` types count only before ``day``. ``accounts``:
    of these accounts only (read through the account index). One row per account, where a row
    per account, type and month made the rating build and group ten times the rows in Python."""
    import polars as pl

    from dianfei.db.lists import any_of

    types = {"p": paid, "f": fee, "s": stopped,
             **{f"b{i}": t for i, t in enumerate(broken)}}
    later_names = {f"l{i}": t for i, t in enumerate(later)}
    cut = (f"AND NOT (type IN ({', '.join(':' + k for k in later_names)}) "
           "AND business_date >= :d) " if later_names else "")
    member, bound = ("", {}) if accounts is None else any_of(source, "account_id", "accts",
                                                              sorted(set(accounts)))
    dialect = source.dialect.name
    # the month of a business date: its first seven characters as SQLite stores it (a third
    # cheaper than strftime over the window's tens of thousands of events)
    month = ("substr(business_date, 1, 7)" if dialect == "sqlite"
             else "to_char(business_date, 'YYYY-MM')")
    find = "instr" if dialect == "sqlite" else "strpos"
    broken_in = ", ".join(f":b{i}" for i in range(len(broken))) or "NULL"
    counted = ", ".join(":" + k for k in types if k != "s")
    among = f"AND {member} " if member else ""
    return read_frame(
        source, "SELECT account_id, "
        # BIGINT: PostgreSQL's SUM of integers is numeric
        "CAST(SUM(CASE WHEN paid = 1 AND fee = 0 THEN 1 ELSE 0 END) AS BIGINT) AS on_time, "
        "CAST(SUM(broken) AS BIGINT) AS broken, CAST(SUM(stops) AS BIGINT) AS suspensions FROM ("
        # payments, fees and broken promises by month from the (account, type, day) index
        # alone; the suspensions apart, the only type whose row (its detail) must be read
        "SELECT account_id, "
        "MAX(CASE WHEN type = :p THEN 1 ELSE 0 END) AS paid, "
        "MAX(CASE WHEN type = :f THEN 1 ELSE 0 END) AS fee, "
        f"SUM(CASE WHEN type IN ({broken_in}) THEN 1 ELSE 0 END) AS broken, 0 AS stops "
        f"FROM collection_events WHERE business_date >= :since AND type IN ({counted}) "
        f"{among}{cut}GROUP BY account_id, {month} "
        "UNION ALL SELECT account_id, 0, 0, 0, COUNT(*) FROM collection_events "
        f"WHERE business_date >= :since AND type = :s {among}"
        # a smart-prepayment cut-off is how prepayment works, not a stop for arrears
        f"AND coalesce({find}(detail, :pp), 0) = 0 {cut}"
        "GROUP BY account_id) per_month GROUP BY account_id",
        {"since": since, "pp": '"reason": "prepay"', **types, **later_names, **bound,
         **({"d": day} if later_names else {})},
        schema={"account_id": pl.String, "on_time": pl.Int64, "broken": pl.Int64,
                "suspensions": pl.Int64})


def accounts_with_events(source: Engine | Connection, types: Sequence[str],
                         spans: Sequence[tuple[date, date]]) -> set[str]:
    """The accounts with collection events of ``types`` on a business day in any of ``spans``
    ([first, last) each) — read through the business-date index."""
    names = {f"t{i}": t for i, t in enumerate(types)}
    where = " OR ".join(f"(business_date >= :a{i} AND business_date < :b{i})"
                        for i in range(len(spans)))
    if not where or not names:
        return set()
    bound: dict[str, Any] = {**names}
    for i, (a, b) in enumerate(spans):
        bound |= {f"a{i}": a, f"b{i}": b}
    # the days' events first (the business-date index), then their types: asked in one step,
    # SQLite skip-scanned the (account, type, day) index over every account
    with _connected(source) as conn:
        rows = conn.execute(text(
            f"WITH days AS MATERIALIZED (SELECT account_id, type FROM collection_events "
            f"WHERE {where}) SELECT DISTINCT account_id FROM days WHERE type IN "
            f"({', '.join(':' + k for k in names)})"), bound).all()
    return {r[0] for r in rows}


def late_bills(source: Engine | Connection, since: date, until: date,
               accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """account_id, late: bills due from ``since`` and before ``until`` that accrued a late fee
    (paid late, or still overdue); of ``accounts`` only when given."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, bound = ("", {}) if accounts is None else any_of(source, "account_id", "accts",
                                                              sorted(set(accounts)))
    return read_frame(
        source, "SELECT account_id, COUNT(*) AS late FROM late_fee_accruals WHERE due_on >= :s "
        f"AND due_on < :u {'AND ' + member if member else ''} GROUP BY account_id",
        {"s": since, "u": until, **bound},
        schema={"account_id": pl.String, "late": pl.Int64})


def late_count_moved(source: Engine | Connection, passed: date, passed_window: tuple[date, date],
                     window: tuple[date, date]) -> set[str]:
    """The accounts whose count of late bills (as :func:`late_bills`: accruals due in
    ``window`` = [since, until)) may differ from the one counted by the rating pass of day
    ``passed`` over ``passed_window``: those with an accrual opened on or after that day (a bill
    first overdue, an old bill re-issued — the pass may have run before the day's late fees), and
    those with an accrual due where the window's edges moved. A bill's accrual row, once written,
    stays (updated in place, or replaced under the same bill with its ``opened_on`` kept or, for
    a bill overdue again, today's), so no other count can move; each part is an index range of
    the day's few rows (was: every account's count of the window compared with its stored
    rating, a read that grew with the book and its history). A row without ``opened_on`` (made
    outside a collections run) counts as just opened."""
    (p_since, p_until), (since, until) = passed_window, window
    with _connected(source) as conn:
        rows = conn.execute(text(
            # the opened ones through their index (materialized: else a planner may walk the
            # whole window by the due-date index instead)
            "WITH opened AS MATERIALIZED (SELECT account_id, due_on FROM late_fee_accruals "
            "WHERE opened_on >= :p UNION ALL SELECT account_id, due_on FROM late_fee_accruals "
            "WHERE opened_on IS NULL) "
            "SELECT account_id FROM opened WHERE due_on >= :s AND due_on < :u "
            # due dates the window's start passed (they left) and its end passed (they entered)
            "UNION SELECT account_id FROM late_fee_accruals WHERE due_on >= :ps AND due_on < :s "
            "UNION SELECT account_id FROM late_fee_accruals WHERE due_on >= :pu AND due_on < :u"),
            {"p": passed, "s": since, "u": until, "ps": min(p_since, since),
             "pu": min(p_until, until)}).all()
    return {r[0] for r in rows}


def queue_for_rating(conn: Connection, accounts: Sequence[str]) -> None:
    """Put accounts on the rating queue (in the caller's transaction; once each)."""
    todo = sorted(set(accounts))
    if todo:
        conn.execute(text("INSERT INTO credit_rating_queue (account_id) VALUES (:a) "
                          "ON CONFLICT (account_id) DO NOTHING"), [{"a": a} for a in todo])


def rating_queue(conn: Connection) -> set[str]:
    return {r[0] for r in conn.execute(text("SELECT account_id FROM credit_rating_queue")).all()}


def clear_rating_queue(conn: Connection, accounts: Sequence[str]) -> None:
    from dianfei.db.lists import any_of

    if accounts:
        member, bound = any_of(conn, "account_id", "accts", sorted(set(accounts)))
        conn.execute(text(f"DELETE FROM credit_rating_queue WHERE {member}"), bound)


def last_rating_pass(source: Engine | Connection) -> tuple[date, str] | None:
    """(day, rules digest) of the latest rating pass, or None."""
    with _connected(source) as conn:
        row = conn.execute(text("SELECT day, rules FROM credit_rating_passes "
                                "ORDER BY day DESC LIMIT 1")).first()
    if row is None:
        return None
    day = row[0] if isinstance(row[0], date) else date.fromisoformat(str(row[0]))
    return day, str(row[1])


def record_rating_pass(conn: Connection, day: date, rules: str, full: bool, accounts: int) -> None:
    conn.execute(text("DELETE FROM credit_rating_passes WHERE day = :d"), {"d": day})
    conn.execute(text("INSERT INTO credit_rating_passes (day, rules, full_pass, accounts) "
                      "VALUES (:d, :r, :f, :n)"), {"d": day, "r": rules, "f": full, "n": accounts})


def repeat_defaulter_count(source: Engine | Connection) -> int:
    with _connected(source) as conn:
        return int(conn.execute(text(
            "SELECT COUNT(*) FROM credit_ratings WHERE repeat_defaulter")).scalar_one())


def open_flags(source: Engine | Connection) -> pl.DataFrame:
    """The open contact flags: flag_id, account_id, customer_id, reason, field, opened_at, task_id."""
    import polars as pl

    # sorted here: ORDER BY flag_id walks every flag ever raised instead of the status index
    return read_frame(
        source, "SELECT flag_id, account_id, customer_id, reason, field, opened_at, task_id "
        "FROM contact_flags WHERE status = 'open'", instants=("opened_at",),
        schema={"flag_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "reason": pl.String, "field": pl.String, "task_id": pl.Int64}).sort("flag_id")


def open_flag_fields(source: Engine | Connection) -> pl.DataFrame:
    """account_id, field of every open contact flag (what the daily check needs of them: the
    fields already in doubt), without the columns :func:`open_flags` parses."""
    import polars as pl

    return read_frame(source, "SELECT account_id, field FROM contact_flags WHERE status = 'open'",
                      schema={"account_id": pl.String, "field": pl.String})


def flags(source: Engine | Connection, status: str | None) -> pl.DataFrame:
    """Contact flags (of ``status``, or all), oldest first."""
    import polars as pl

    where = " WHERE status = :s" if status else ""
    return read_frame(
        source, "SELECT flag_id, key, account_id, customer_id, reason, field, status, opened_at, "
        f"task_id, closed_at, closed_by, detail FROM contact_flags{where} ORDER BY flag_id",
        {"s": status} if status else {}, instants=("opened_at", "closed_at"),
        schema={"flag_id": pl.Int64, "key": pl.String, "account_id": pl.String,
                "customer_id": pl.String, "reason": pl.String, "field": pl.String,
                "status": pl.String, "task_id": pl.Int64, "closed_by": pl.String,
                "detail": pl.String})


def checks(source: Engine | Connection, accounts: Sequence[str]) -> pl.DataFrame:
    """account_id, phone_verified_at, email_verified_at of those of ``accounts`` verified at least
    once (the day's causes, a worklist's rows: never every account ever verified)."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, bound = any_of(source, "account_id", "accts", sorted(set(accounts)))
    return read_frame(
        source, "SELECT account_id, phone_verified_at, email_verified_at FROM contact_checks "
        f"WHERE {member}", bound,
        instants=("phone_verified_at", "email_verified_at"), schema={"account_id": pl.String})


def existing_flag_keys(conn: Connection, keys: list[str]) -> set[str]:
    from dianfei.db.lists import rows_in

    return {str(r[0]) for r in rows_in(conn, "SELECT key FROM contact_flags WHERE {member}",
                                       "key", keys)}


def open_contact_task(conn: Connection, account_id: str) -> int | None:
    """The account's open ``contact_update`` task (whoever raised it), if any."""
    row = conn.execute(text(
        "SELECT task_id FROM collection_tasks WHERE account_id = :a AND kind = 'contact_update' "
        "AND status = 'open' ORDER BY task_id"), {"a": account_id}).first()
    return None if row is None else int(row[0])


def ratings(source: Engine | Connection, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """Every account's credit rating (of ``accounts`` only, when given)."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, bound = ("", {}) if accounts is None else any_of(source, "account_id", "accts",
                                                              sorted(set(accounts)))
    return read_frame(
        source, "SELECT account_id, customer_id, grade, points, on_time, late, broken, "
        f"suspensions, repeat_defaulter, as_of, since FROM credit_ratings "
        f"{'WHERE ' + member if member else ''} ORDER BY account_id", bound,
        dates=("as_of", "since"),
        schema={"account_id": pl.String, "customer_id": pl.String, "grade": pl.String,
                "points": pl.Int64, "on_time": pl.Int64, "late": pl.Int64, "broken": pl.Int64,
                "suspensions": pl.Int64, "repeat_defaulter": pl.Boolean})


def repeat_defaulters(source: Engine | Connection) -> pl.DataFrame:
    """account_id of every account rated a repeat defaulter."""
    import polars as pl

    return read_frame(source, "SELECT account_id FROM credit_ratings WHERE repeat_defaulter",
                      schema={"account_id": pl.String})


def rating_rows(conn: Connection, accounts: Sequence[str]) -> list[Any]:
    from dianfei.db.lists import rows_in

    return rows_in(conn, "SELECT account_id, grade, points, as_of, since, repeat_defaulter "
                         "FROM credit_ratings WHERE {member}", "account_id", accounts)


def task_counts(source: Engine | Connection, kinds: Sequence[str]) -> pl.DataFrame:
    """account_id, kind, status, tasks: the tasks of ``kinds`` per account and status."""
    import polars as pl

    names = {f"k{i}": k for i, k in enumerate(kinds)}
    return read_frame(
        source, "SELECT account_id, kind, status, COUNT(*) AS tasks FROM collection_tasks "
        f"WHERE kind IN ({', '.join(':' + k for k in names) or 'NULL'}) "
        "GROUP BY account_id, kind, status", names,
        schema={"account_id": pl.String, "kind": pl.String, "status": pl.String,
                "tasks": pl.Int64})


def open_ladder_tasks(conn: Connection, kinds: Sequence[str]) -> pl.DataFrame:
    """task_id, account_id, customer_id, kind of the open tasks of ``kinds`` the dunning ladder
    raised (key ``dun:…``). Found through the (status, kind) index: the key's prefix is tested
    with ``substr`` so that neither database walks the key index's range, which holds every
    ladder task ever raised, done ones too (a cost that grew with the history)."""
    import polars as pl

    names = {f"k{i}": k for i, k in enumerate(kinds)}
    return read_frame(
        conn, "SELECT task_id, account_id, customer_id, kind FROM collection_tasks "
        f"WHERE status = 'open' AND kind IN ({', '.join(':' + k for k in names) or 'NULL'}) "
        "AND substr(key, 1, 4) = 'dun:'", names,
        schema={"task_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String})


def unrouted_tasks(conn: Connection) -> pl.DataFrame:
    """task_id, kind of the tasks no department has yet (raised by other modules)."""
    import polars as pl

    return read_frame(conn, "SELECT task_id, kind FROM collection_tasks WHERE department IS NULL "
                            "ORDER BY task_id", schema={"task_id": pl.Int64, "kind": pl.String})


def fill_due(conn: Connection, kind: str, days: int) -> None:
    """Tasks of ``kind`` without a due time are due ``days`` after they were raised."""
    rows = conn.execute(text("SELECT task_id, created_at FROM collection_tasks "
                             "WHERE kind = :k AND due_at IS NULL"), {"k": kind}).all()
    if not rows:
        return
    from datetime import timedelta

    from sqlalchemy import bindparam, update

    from dianfei.collections.models import CollectionTask

    conn.execute(update(CollectionTask).where(CollectionTask.task_id == bindparam("tid"))
                 .values(due_at=bindparam("due")).execution_options(synchronize_session=False),
                 [{"tid": r[0], "due": _aware(r[1]) + timedelta(days=days)} for r in rows])


def _aware(value: Any) -> Any:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def tasks_by_id(conn: Connection, task_ids: Sequence[int]) -> pl.DataFrame:
    """task_id, key, account_id, customer_id, kind, department, owner, created_at, due_at."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, params = any_of(conn, "task_id", "ids", list(task_ids), array_type="BIGINT")
    return read_frame(
        conn, "SELECT task_id, key, account_id, customer_id, kind, department, owner, created_at, "
        f"due_at FROM collection_tasks WHERE {member} ORDER BY task_id", params,
        instants=("created_at", "due_at"),
        schema={"task_id": pl.Int64, "key": pl.String, "account_id": pl.String,
                "customer_id": pl.String, "kind": pl.String, "department": pl.String,
                "owner": pl.String})


def tasks_by_key(conn: Connection, keys: Sequence[str]) -> pl.DataFrame:
    """:func:`tasks_by_id`'s columns for the tasks of ``keys``."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, params = any_of(conn, "key", "keys", list(keys))
    return read_frame(
        conn, "SELECT task_id, key, account_id, customer_id, kind, department, owner, created_at, "
        f"due_at FROM collection_tasks WHERE {member} ORDER BY task_id", params,
        instants=("created_at", "due_at"),
        schema={"task_id": pl.Int64, "key": pl.String, "account_id": pl.String,
                "customer_id": pl.String, "kind": pl.String, "department": pl.String,
                "owner": pl.String})


def open_contact_tasks(conn: Connection, accounts: Sequence[str]) -> dict[str, int]:
    """account → its oldest open ``contact_update`` task (whoever raised it)."""
    from dianfei.db.lists import rows_in

    out: dict[str, int] = {}
    for a, t in rows_in(conn, "SELECT account_id, task_id FROM collection_tasks WHERE "
                              "kind = 'contact_update' AND status = 'open' AND {member} "
                              "ORDER BY task_id", "account_id", accounts):
        out.setdefault(str(a), int(t))
    return out


def flags_by_key(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    from dianfei.db.lists import rows_in

    return {str(k): int(i) for k, i in rows_in(
        conn, "SELECT key, flag_id FROM contact_flags WHERE {member}", "key", keys)}


def overdue_unescalated(conn: Connection, now: Any) -> pl.DataFrame:
    """Open tasks due before ``now`` not yet escalated (locked: two runs escalate each once):
    task_id, account_id, customer_id, kind, department, owner, due_at."""
    import polars as pl

    lock = " FOR UPDATE" if conn.dialect.name == "postgresql" else ""
    return read_frame(
        conn, "SELECT task_id, account_id, customer_id, kind, coalesce(department, 'collections') "
        "AS department, owner, due_at FROM collection_tasks WHERE status = 'open' AND "
        f"due_at < :now AND escalated_at IS NULL ORDER BY task_id{lock}", {"now": now},
        instants=("due_at",),
        schema={"task_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String, "department": pl.String, "owner": pl.String})
