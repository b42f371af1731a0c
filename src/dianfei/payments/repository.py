"""Queries of the payments domain (all SQL lives here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

ITEM_COLUMNS = ("account_id", "customer_id", "item_kind", "reference", "bill_id", "due_on", "amount",
                "open_amount")


def _account_filter(accounts: Sequence[str] | None, alias: str, params: dict[str, Any]) -> str:
    if accounts is None:
        return ""
    names = []
    for i, a in enumerate(accounts):
        params[f"a{i}"] = a
        names.append(f":a{i}")
    return f" AND {alias}.account_id IN ({', '.join(names) or 'NULL'})"


def open_items_sql(accounts: Sequence[str] | None, as_of: date | None,
                   params: dict[str, Any]) -> str:
    """Debits (bills, late fees) with what reversals and allocations leave of them.

    A reversed bill with money on it comes out negative: :func:`service.settle` moves that money
    back to credit."""
    acct = _account_filter(accounts, "e", params)
    alloc_acct = _account_filter(accounts, "pa", params)
    day = ""
    if as_of is not None:
        params["as_of"] = as_of
        day = " AND e.business_date <= :as_of"
    return (
        "SELECT e.account_id, e.customer_id, e.kind AS item_kind, e.reference, e.due_on, "
        "e.amount, e.amount + COALESCE(r.amount, 0) - COALESCE(a.allocated, 0) AS open_amount "
        "FROM ledger_entries e "
        "LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id "
        "LEFT JOIN (SELECT pa.item_reference, CAST(SUM(pa.amount) AS BIGINT) AS allocated "
        "  FROM payment_allocations pa WHERE pa.item_reference IS NOT NULL"
        f"{alloc_acct} GROUP BY pa.item_reference) a ON a.item_reference = e.reference "
        f"WHERE e.kind IN ('bill', 'late_fee'){acct}{day}"
    )


def open_items(engine_or_conn: Engine | Connection, accounts: Sequence[str] | None = None,
               as_of: date | None = None, *, include_settled: bool = False) -> pl.DataFrame:
    import polars as pl

    params: dict[str, Any] = {}
    sql = open_items_sql(accounts, as_of, params)
    frame = read_frame(engine_or_conn, sql, params, dates=("due_on",), schema={
        "account_id": pl.String, "customer_id": pl.String, "item_kind": pl.String,
        "reference": pl.String, "amount": pl.Int64, "open_amount": pl.Int64})
    frame = frame.with_columns(
        pl.when(pl.col("item_kind") == "late_fee")
        .then(pl.col("reference").str.split(":").list.get(1, null_on_oob=True))
        .otherwise(pl.col("reference")).alias("bill_id"))
    if not include_settled:
        frame = frame.filter(pl.col("open_amount") != 0)
    return frame.select(ITEM_COLUMNS)


def credits(conn: Connection, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """Unused credit per payment: account_id, source_id (payment id), amount, seq (paid_at)."""
    import polars as pl

    params: dict[str, Any] = {}
    acct = _account_filter(accounts, "pa", params)
    return read_frame(conn, (
        "SELECT pa.account_id, pa.payment_id AS source_id, CAST(SUM(pa.amount) AS BIGINT) AS amount, "
        "MIN(p.paid_at) AS seq "
        "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
        f"WHERE pa.allocated_to = 'credit'{acct} GROUP BY pa.account_id, pa.payment_id "
        "HAVING SUM(pa.amount) > 0"), params, instants=("seq",),
        schema={"account_id": pl.String, "source_id": pl.String, "amount": pl.Int64})


def allocations_on(conn: Connection, references: Sequence[str]) -> pl.DataFrame:
    """Net allocation per (payment, item) for the given item references, newest payment first."""
    import polars as pl

    params: dict[str, Any] = {f"r{i}": r for i, r in enumerate(references)}
    names = ", ".join(f":r{i}" for i in range(len(references))) or "NULL"
    return read_frame(conn, (
        "SELECT pa.account_id, pa.payment_id, pa.item_reference AS reference, pa.allocated_to, "
        "pa.bill_id, CAST(SUM(pa.amount) AS BIGINT) AS amount, MAX(p.paid_at) AS paid_at "
        "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
        f"WHERE pa.item_reference IN ({names}) GROUP BY pa.account_id, pa.payment_id, "
        "pa.item_reference, pa.allocated_to, pa.bill_id HAVING SUM(pa.amount) <> 0"),
        params, instants=("paid_at",),
        schema={"account_id": pl.String, "payment_id": pl.String, "reference": pl.String,
                "allocated_to": pl.String, "bill_id": pl.String, "amount": pl.Int64})


def payment_allocations(conn: Connection, payment_id: str) -> list[tuple[str, str | None,
                                                                          str | None, int]]:
    """Net allocation of one payment per target: (allocated_to, bill_id, item_reference, fen)."""
    rows = conn.execute(text(
        "SELECT allocated_to, bill_id, item_reference, CAST(SUM(amount) AS BIGINT) "
        "FROM payment_allocations WHERE payment_id = :p "
        "GROUP BY allocated_to, bill_id, item_reference HAVING SUM(amount) <> 0 "
        "ORDER BY allocated_to, item_reference"), {"p": payment_id}).all()
    return [(str(r[0]), r[1], r[2], int(r[3])) for r in rows]


def account_payments(engine: Engine, account_id: str) -> pl.DataFrame:
    return read_frame(
        engine,
        "SELECT payment_id, channel, transaction_id, order_no, amount, paid_at, posted_at, "
        "source, status FROM payments WHERE account_id = :a ORDER BY paid_at, payment_id",
        {"a": account_id}, instants=("paid_at", "posted_at"))


def allocation_rows(engine: Engine, period: str | None = None) -> pl.DataFrame:
    """One row per allocation for ``export payments`` (optionally of one bill period); typed
    when there is none (an imported history with bills but no payments yet)."""
    import polars as pl

    params: dict[str, Any] = {}
    where = ""
    if period:
        params["period"] = period
        where = (" WHERE pa.bill_id IN (SELECT bill_id FROM bills WHERE period = :period)")
    return read_frame(
        engine,
        "SELECT pa.id, pa.payment_id, p.customer_id, pa.allocated_at AS paid_at, pa.amount, "
        "p.channel, pa.bill_id, pa.allocated_to FROM payment_allocations pa "
        f"JOIN payments p ON p.payment_id = pa.payment_id{where} ORDER BY pa.id",
        params, instants=("paid_at",),
        schema={"id": pl.Int64, "payment_id": pl.String, "customer_id": pl.String,
                "paid_at": pl.Datetime("us", "UTC"), "amount": pl.Int64, "channel": pl.String,
                "bill_id": pl.String, "allocated_to": pl.String})


def bill_payment_state(engine: Engine, period: str | None = None) -> pl.DataFrame:
    """Per bill: allocations to it over time (bill_id, allocated_at, amount), oldest first."""
    params: dict[str, Any] = {}
    where = " WHERE pa.allocated_to = 'bill'"
    if period:
        params["period"] = period
        where += " AND b.period = :period"
    return read_frame(
        engine,
        "SELECT pa.bill_id, pa.allocated_at, pa.amount FROM payment_allocations pa "
        f"JOIN bills b ON b.bill_id = pa.bill_id{where} ORDER BY pa.bill_id, pa.allocated_at, pa.id",
        params, instants=("allocated_at",))


def posted_since(engine: Engine, accounts: Sequence[str], since: Any) -> pl.DataFrame:
    """account_id, posted_at, amount of the posted (not refunded or returned) payments of
    ``accounts`` at or after ``since`` (500 accounts per read)."""
    import polars as pl

    schema = {"account_id": pl.String, "amount": pl.Int64}
    uniq = sorted(set(accounts))
    frames = []
    for i in range(0, len(uniq), 500):
        params: dict[str, Any] = {"since": since}
        where = _account_filter(uniq[i:i + 500], "y", params)
        frames.append(read_frame(
            engine, "SELECT y.account_id, y.posted_at, y.amount FROM payments y "
            f"WHERE y.status = 'posted' AND y.posted_at >= :since{where}", params,
            instants=("posted_at",), schema=schema))
    if not frames:
        return pl.DataFrame(schema={"account_id": pl.String,
                                    "posted_at": pl.Datetime("us", "UTC"), "amount": pl.Int64})
    return pl.concat(frames, how="vertical_relaxed")


def bill_clearings(engine: Engine, first: str | None = None, last: str | None = None,
                   live_by: date | None = None) -> pl.DataFrame:
    """Clearings to bills (of periods ``first``..``last`` when given, else all; with ``live_by``
    only those to live bills that reached them by the end of that business day): bill_id,
    account_id, payment_id, channel, allocated_at, amount (negative rows undo: refunds, returns,
    cancelled bills)."""
    from datetime import timedelta

    import polars as pl

    from dianfei.core.clock import start_of_day
    from dianfei.db.frames import sqlite_columns

    where = ("AND pa.bill_id IN (SELECT bill_id FROM bills WHERE period BETWEEN :a AND :z) "
             if first is not None and last is not None else "")
    if live_by is not None:
        where = ("AND pa.bill_id IN (SELECT bill_id FROM bills WHERE period BETWEEN :a AND :z "
                 "AND status <> 'cancelled') AND pa.allocated_at < :cut ")
    sql = ("SELECT pa.bill_id, pa.account_id, pa.payment_id, p.channel, pa.allocated_at, pa.amount "
           "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
           f"WHERE pa.allocated_to = 'bill' {where}"
           "ORDER BY pa.bill_id, pa.allocated_at, pa.id")
    params: dict[str, Any] = {"a": first, "z": last} if where else {}
    if live_by is not None:
        params["cut"] = start_of_day(live_by + timedelta(days=1))
    schema = {"bill_id": pl.String, "account_id": pl.String, "payment_id": pl.String,
              "channel": pl.String, "allocated_at": pl.Datetime("us", "UTC"), "amount": pl.Int64}
    fast = sqlite_columns(engine, sql, params, schema)
    if fast is not None:
        return fast
    return read_frame(engine, sql, params, instants=("allocated_at",), schema=schema)


def payments_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """payment_id, channel, business_date, amount, status of the payments paid on business days
    ``first``..``last`` (any status: a refunded payment was still received)."""
    import polars as pl

    return read_frame(
        engine, "SELECT payment_id, channel, business_date, amount, status FROM payments "
        "WHERE business_date BETWEEN :a AND :z ORDER BY payment_id", {"a": first, "z": last},
        dates=("business_date",),
        schema={"payment_id": pl.String, "channel": pl.String, "business_date": pl.Date,
                "amount": pl.Int64, "status": pl.String})


def reports_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """channel, day, settlement_ok, figures (JSON text) of the reconciliation reports of
    ``first``..``last``."""
    import polars as pl

    return read_frame(
        engine, "SELECT channel, day, settlement_ok, figures FROM reconciliation_reports "
        "WHERE day BETWEEN :a AND :z ORDER BY channel, day", {"a": first, "z": last},
        dates=("day",),
        schema={"channel": pl.String, "day": pl.Date, "settlement_ok": pl.Boolean,
                "figures": pl.String})


def discrepancies_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """channel, day, kind, statement_amount, ledger_amount, resolved_at of the worklist rows of
    ``first``..``last`` (open and resolved)."""
    import polars as pl

    return read_frame(
        engine, "SELECT id, channel, day, kind, statement_amount, ledger_amount, resolved_at "
        "FROM reconciliation_discrepancies WHERE day BETWEEN :a AND :z ORDER BY id",
        {"a": first, "z": last}, dates=("day",), instants=("resolved_at",),
        schema={"id": pl.Int64, "channel": pl.String, "day": pl.Date, "kind": pl.String,
                "statement_amount": pl.Int64, "ledger_amount": pl.Int64,
                "resolved_at": pl.Datetime("us", "UTC")})


def shifts_closed_between(engine: Engine, since: Any, until: Any) -> pl.DataFrame:
    """shift_id, opening_float, counted_cash, expected_cash, difference of the counter shifts
    closed in [since, until)."""
    import polars as pl

    return read_frame(
        engine, "SELECT shift_id, opening_float, counted_cash, expected_cash, difference "
        "FROM cashier_shifts WHERE status = 'closed' AND closed_at >= :a AND closed_at < :z "
        "ORDER BY shift_id", {"a": since, "z": until},
        schema={"shift_id": pl.String, "opening_float": pl.Int64, "counted_cash": pl.Int64,
                "expected_cash": pl.Int64, "difference": pl.Int64})


def channels_of(engine: Engine, payment_ids: Sequence[str]) -> pl.DataFrame:
    """payment_id, channel of ``payment_ids``."""
    import polars as pl

    from dianfei.db.lists import any_of

    with engine.connect() as conn:
        member, params = any_of(conn, "payment_id", "ids", sorted(set(payment_ids)))
        return read_frame(conn, f"SELECT payment_id, channel FROM payments WHERE {member}",
                          params, schema={"payment_id": pl.String, "channel": pl.String})


def stored_payments(conn: Connection, payment_ids: Sequence[str]) -> pl.DataFrame:
    """payment_id, customer_id, paid_at (UTC), amount, channel of the named payments that exist."""
    import polars as pl

    from dianfei.db.lists import any_of

    member, params = any_of(conn, "payment_id", "ids", sorted(set(payment_ids)))
    return read_frame(conn, "SELECT payment_id, customer_id, paid_at, amount, channel "
                      f"FROM payments WHERE {member}", params, instants=("paid_at",),
                      schema={"payment_id": pl.String, "customer_id": pl.String,
                              "paid_at": pl.Datetime("us", "UTC"), "amount": pl.Int64,
                              "channel": pl.String})


def _business_day_sql(dialect: str, column: str) -> str:
    """The Asia/Shanghai business date of a stored UTC instant (UTC+8 since 1991, no daylight
    saving: the same fixed shift as ``reporting.kpi.business_day``)."""
    if dialect == "sqlite":
        # whole seconds first: SQLite's date() keeps milliseconds and rounds 23:59:59.999999
        # up to the next day; the fraction never changes the day (days begin on a second)
        return f"date(substr({column}, 1, 19), '+8 hours')"
    return f"CAST({column} + INTERVAL '8 hours' AS DATE)"


#: the clearings to bills of periods :a..:z issued by :d that reached them before :cut (the end
#: of business day D), each with its bill's amount; payment rows only (as ``bill_clearings``)
_CLEARED = (
    "SELECT pa.id AS id, pa.bill_id AS bill_id, pa.amount AS amount, pa.allocated_at AS at, "
    "b.amount AS due "
    "FROM bills b JOIN payment_allocations pa ON pa.bill_id = b.bill_id "
    "JOIN payments p ON p.payment_id = pa.payment_id "
    "WHERE b.period BETWEEN :a AND :z AND b.issued_on <= :d "
    "AND pa.allocated_to = 'bill' AND pa.allocated_at < :cut")


#: the state of each bill at D, PostgreSQL: the running sum of each bill's clearings in clearing
#: order (one window, sorted once, in parallel), folded to one row per bill: the sum and the
#: instant of the last clearing that brought the sum up to the amount (a refund can open a paid
#: bill again). Paid in full: never before the issue date (GREATEST skips a null); a zero-amount
#: bill on issue. (Common table expressions used twice were materialised with poor estimates and
#: spilled: twice as slow on a million accounts.)
_STATE_PG = (
    "SELECT b.bill_id, b.account_id, b.customer_id, b.period, b.issued_on, b.due_on, "
    "b.amount, b.status, b.estimated, b.read_to_at, COALESCE(s.paid, 0) AS paid, "
    "CASE WHEN b.status = 'cancelled' THEN NULL WHEN b.amount <= 0 THEN b.issued_on "
    "WHEN COALESCE(s.paid, 0) >= b.amount THEN GREATEST(b.issued_on, "
    f"{_business_day_sql('postgresql', 's.full_at')}) END AS paid_in_full_on "
    "FROM bills b LEFT JOIN (SELECT bill_id, CAST(SUM(amount) AS BIGINT) AS paid, "
    "MAX(CASE WHEN cum >= due AND cum - amount < due THEN at END) AS full_at "
    f"FROM (SELECT bill_id, amount, at, due, SUM(amount) OVER (PARTITION BY bill_id "
    f"ORDER BY at, id ROWS UNBOUNDED PRECEDING) AS cum FROM ({_CLEARED}) c) w "
    "GROUP BY bill_id) s ON s.bill_id = b.bill_id "
    "WHERE b.period BETWEEN :a AND :z AND b.issued_on <= :d")

#: the same on SQLite, which joins by index lookups and sorts in temporary B-trees: one pass
#: over the window's bills in index order (period, rowid: grouped without a sort) with their
#: clearings, and the running sum only for a bill cleared more than once and paid in full at D
#: (a correlated window over its few rows). A bill paid in full has a crossing (its clearings
#: start below its amount and end at or above it), so the day is never null there. The day is
#: taken of the whole seconds (see :func:`_business_day_sql`).
_STATE_SQLITE = (
    "SELECT bill_id, account_id, customer_id, period, issued_on, due_on, amount, status, "
    "estimated, read_to_at, paid, "
    "CASE WHEN status = 'cancelled' THEN NULL WHEN amount <= 0 THEN issued_on "
    "WHEN paid >= amount THEN max(issued_on, date(substr(CASE WHEN n = 1 THEN last_at ELSE "
    "(SELECT MAX(CASE WHEN w.cum >= q.amount AND w.cum - w.amount < q.amount THEN w.at END) "
    "FROM (SELECT c.allocated_at AS at, c.amount AS amount, SUM(c.amount) OVER (ORDER BY "
    "c.allocated_at, c.id "
    "ROWS UNBOUNDED PRECEDING) AS cum FROM payment_allocations c "
    "JOIN payments cp ON cp.payment_id = c.payment_id WHERE c.bill_id = q.bill_id "
    "AND c.allocated_to = 'bill' AND c.allocated_at < :cut) w) END, 1, 19), '+8 hours')) "
    "END AS paid_in_full_on "
    "FROM (SELECT b.bill_id, b.account_id, b.customer_id, b.period, b.issued_on, b.due_on, "
    "b.amount, b.status, b.estimated, b.read_to_at, "
    "COALESCE(SUM(CASE WHEN p.payment_id IS NOT NULL THEN pa.amount END), 0) AS paid, "
    "COUNT(p.payment_id) AS n, "
    "MAX(CASE WHEN p.payment_id IS NOT NULL THEN pa.allocated_at END) AS last_at "
    "FROM bills b LEFT JOIN payment_allocations pa ON pa.bill_id = b.bill_id "
    "AND pa.allocated_to = 'bill' AND pa.allocated_at < :cut "
    "LEFT JOIN payments p ON p.payment_id = pa.payment_id "
    "WHERE b.period BETWEEN :a AND :z AND b.issued_on <= :d "
    "GROUP BY b.period, b.rowid) q")


def _sums_sql(dialect: str, thresholds: int, by_days: bool, unpaid_only: bool = False) -> str:
    """The sums of the live bills of period :p issued by :d at :cut (the end of business day
    D), in one row: n, billed, paid, unpaid (each bill's never below 0), actual (bills not on
    an estimated read), dated (unpaid of the bills with a due date), le_i (unpaid of the bills
    due on or after :t_i) and, ``by_days``, days: the payment days of each bill paid in full
    (of a positive amount) as one comma-separated text — a histogram without sorting a million
    rows (SQLite sorts to group). ``unpaid_only``: n, billed and unpaid alone. A bill's paid
    amount and paid-in-full instant are the ones its open item keeps (``open_items.cleared``,
    ``paid_in_full_at``) when its last clearing is before the cut; otherwise (cleared after D,
    or no kept state: rows written without the ledger) they are folded from its clearings by
    :cut as :data:`_STATE_PG` does. The open item is looked up under the period too
    (``ix_open_items_period``: the period's items together, covering what is read of them; the
    primary key's pages interleave every period of the history); an item without its bill's
    period (migration 0040) is not found, and its bill is folded from its clearings. One period
    a query: SQLite reads the bills in index order and sums without sorting them. The
    subqueries are fenced (OFFSET 0): each bill's paid amount is computed once, and the running
    sum only for a bill paid in full whose state is not kept."""
    lite = dialect == "sqlite"
    fence = "LIMIT -1 OFFSET 0" if lite else "OFFSET 0"
    kept = ("o.reference IS NOT NULL AND o.amount = b.amount AND (o.last_cleared_at IS NULL "
            "OR o.last_cleared_at < :cut)")
    crossing = (
        "(SELECT MAX(CASE WHEN w.cum >= q.amount AND w.cum - w.amount < q.amount THEN w.at END) "
        "FROM (SELECT c.allocated_at AS at, c.amount AS amount, SUM(c.amount) OVER (ORDER BY "
        "c.allocated_at, c.id ROWS UNBOUNDED PRECEDING) AS cum FROM payment_allocations c "
        "JOIN payments cp ON cp.payment_id = c.payment_id WHERE c.bill_id = q.bill_id "
        "AND c.allocated_to = 'bill' AND c.allocated_at < :cut) w)")
    if lite:
        unpaid = "max(q.amount - q.paid, 0)"
        # the business day (UTC+8) of the stored UTC text: its date, one more from 16:00 on —
        # integer day numbers without date arithmetic per row
        days = ("max(CAST(julianday(substr(m.full_at, 1, 10)) AS INTEGER) "
                "+ (substr(m.full_at, 12, 2) >= '16') - CAST(julianday(m.issued_on) AS INTEGER), 0)")
    else:
        unpaid = "GREATEST(q.amount - q.paid, 0)"
        days = ("GREATEST(m.issued_on, CAST(m.full_at + INTERVAL '8 hours' AS DATE)) "
                "- m.issued_on")
    if unpaid_only:
        # billed and unpaid alone: each bill's paid amount is used once, so the query is flat
        # (no fenced subqueries to stream through): a third cheaper on SQLite
        paid = (f"CASE WHEN {kept} THEN o.cleared ELSE (SELECT COALESCE(SUM(pa.amount), 0) "
                "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
                "WHERE pa.bill_id = b.bill_id AND pa.allocated_to = 'bill' "
                "AND pa.allocated_at < :cut) END")
        greatest = "max" if lite else "GREATEST"
        return (
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(b.amount) AS BIGINT) AS billed, "
            f"CAST(SUM({greatest}(b.amount - {paid}, 0)) AS BIGINT) AS unpaid "
            "FROM bills b LEFT JOIN open_items o ON o.reference = b.bill_id "
            "AND o.item_kind = 'bill' AND o.period = :p WHERE b.period = :p AND b.issued_on <= :d "
            "AND b.status <> 'cancelled'")
    sums = ["COUNT(*) AS n", "SUM(m.amount) AS billed", "SUM(m.paid) AS paid",
            "SUM(m.unpaid) AS unpaid", "SUM(m.actual) AS actual",
            "SUM(CASE WHEN m.due_on IS NOT NULL THEN m.unpaid ELSE 0 END) AS dated",
            *[f"SUM(CASE WHEN m.due_on >= :t{i} THEN m.unpaid ELSE 0 END) AS le_{i}"
              for i in range(thresholds)]]
    listed = "group_concat({}, ',')" if lite else "string_agg(CAST({} AS TEXT), ',')"
    day = (listed.format(f"CASE WHEN m.full_at IS NOT NULL THEN {days} END") if by_days
           else "NULL")
    return (
        f"SELECT {day} AS days, "
        + ", ".join(f"CAST({x.split(' AS ')[0]} AS BIGINT) AS {x.split(' AS ')[1]}"
                    for x in sums)
        + " FROM (SELECT q.issued_on, q.due_on, q.amount, q.paid, "
        f"{unpaid} AS unpaid, CASE WHEN q.estimated THEN 0 ELSE 1 END AS actual, "
        + ("CASE WHEN q.amount > 0 AND q.paid >= q.amount THEN CASE WHEN q.kept = 1 THEN "
           f"q.kept_full ELSE {crossing} END END" if by_days else "NULL")
        + " AS full_at FROM ("
        "SELECT b.bill_id, b.issued_on, b.due_on, b.amount, b.estimated, "
        f"CASE WHEN {kept} THEN 1 ELSE 0 END AS kept, o.paid_in_full_at AS kept_full, "
        f"CASE WHEN {kept} THEN o.cleared ELSE (SELECT COALESCE(SUM(pa.amount), 0) "
        "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
        "WHERE pa.bill_id = b.bill_id AND pa.allocated_to = 'bill' AND pa.allocated_at < :cut) "
        "END AS paid FROM bills b LEFT JOIN open_items o ON o.reference = b.bill_id "
        "AND o.item_kind = 'bill' AND o.period = :p WHERE b.period = :p AND b.issued_on <= :d "
        f"AND b.status <> 'cancelled' {fence}) q {fence}) m")


def _window_joins(conn: Connection) -> None:
    """PostgreSQL, for this transaction: join a period's bills to their open items, clearings
    and payments by index lookups (``open_items`` by ``ix_open_items_period``, index only;
    ``payment_allocations (bill_id)``, ``payments`` by its primary key; in parallel), never by
    hashing or merging them with every row of the history. The planner would hash the period's
    bills and scan all the items, clearings and payments of every period (sequential scans):
    with 24 months of history 8× the three the KPIs read, 2–4× slower (docs/benchmarks.md).
    SQLite already looks them up by index."""
    conn.execute(text("SET LOCAL enable_hashjoin = off"))
    conn.execute(text("SET LOCAL enable_mergejoin = off"))


def bill_state_sums(engine: Engine, period: str, as_of: date, past_due: Sequence[int], *,
                    by_days: bool, unpaid_only: bool = False
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """See :func:`_sums_sql` (``payments.service.bill_state_sums``)."""
    from datetime import timedelta

    import polars as pl

    from dianfei.core.clock import start_of_day

    params: dict[str, Any] = {"p": period, "d": as_of,
                              "cut": start_of_day(as_of + timedelta(days=1))}
    for i, t in enumerate(past_due):
        params[f"t{i}"] = as_of - timedelta(days=t)
    if unpaid_only and (past_due or by_days):
        raise ValueError("unpaid_only sums billed and unpaid alone: no past-due bounds, no days")
    sums = (["n", "billed", "unpaid"] if unpaid_only else
            ["n", "billed", "paid", "unpaid", "actual", "dated",
             *[f"le_{i}" for i in range(len(past_due))]])
    sql = _sums_sql(engine.dialect.name, len(past_due), by_days, unpaid_only)
    schema = {**({} if unpaid_only else {"days": pl.String}), **{c: pl.Int64 for c in sums}}
    if engine.dialect.name == "postgresql":
        # the per-bill subqueries make the planner's cost estimate huge, and PostgreSQL would
        # spend ~0.3–0.5 s compiling the query (JIT) to save nothing on a million rows; and
        # each bill's open item by its primary key (:func:`_window_joins`)
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL jit = off"))
            _window_joins(conn)
            out = read_frame(conn, sql, params, schema=schema)
    else:
        out = read_frame(engine, sql, params, schema=schema)
    if unpaid_only:
        return (out.with_columns(pl.col(c).fill_null(0) for c in sums),
                pl.DataFrame(schema={"days": pl.Int64, "n": pl.Int64}))
    listed = out["days"][0]
    histogram = (pl.Series("days", [listed]).str.split(",").explode().cast(pl.Int64)
                 .value_counts(name="n").with_columns(pl.col("n").cast(pl.Int64)).sort("days")
                 if listed else pl.DataFrame(schema={"days": pl.Int64, "n": pl.Int64}))
    # an empty period: COUNT 0 and null sums
    return out.drop("days").with_columns(pl.col(c).fill_null(0) for c in sums), histogram


def bill_states(engine: Engine, first: str, last: str, as_of: date) -> pl.DataFrame:
    """One row per bill of periods ``first``..``last`` issued by ``as_of``: its columns plus
    ``paid`` and ``paid_in_full_on`` as of that business day, computed by the database."""
    from datetime import timedelta

    import polars as pl

    from dianfei.core.clock import start_of_day
    from dianfei.db.frames import sqlite_columns

    sql = _STATE_SQLITE if engine.dialect.name == "sqlite" else _STATE_PG
    params = {"a": first, "z": last, "d": as_of, "cut": start_of_day(as_of + timedelta(days=1))}
    schema = {"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
              "period": pl.String, "issued_on": pl.Date, "due_on": pl.Date, "amount": pl.Int64,
              "status": pl.String, "estimated": pl.Boolean,
              "read_to_at": pl.Datetime("us", "UTC"), "paid": pl.Int64,
              "paid_in_full_on": pl.Date}
    fast = sqlite_columns(engine, sql, params, schema)
    if fast is not None:
        return fast
    return read_frame(engine, sql, params, dates=("issued_on", "due_on", "paid_in_full_on"),
                      instants=("read_to_at",), schema=schema)


def collected_by_channel(engine: Engine, period: str, as_of: date) -> pl.DataFrame:
    """channel, collected (fen), payments (distinct) of the clearings to the period's live bills
    that reached them by the end of business day ``as_of``."""
    from datetime import timedelta

    import polars as pl

    from dianfei.core.clock import start_of_day

    sql = ("SELECT p.channel AS channel, CAST(SUM(pa.amount) AS BIGINT) AS collected, "
           "COUNT(DISTINCT pa.payment_id) AS payments "
           "FROM bills b JOIN payment_allocations pa ON pa.bill_id = b.bill_id "
           "JOIN payments p ON p.payment_id = pa.payment_id "
           "WHERE b.period = :p AND b.status <> 'cancelled' AND pa.allocated_to = 'bill' "
           "AND pa.allocated_at < :cut GROUP BY p.channel")
    params = {"p": period, "cut": start_of_day(as_of + timedelta(days=1))}
    schema = {"channel": pl.String, "collected": pl.Int64, "payments": pl.Int64}
    if engine.dialect.name != "postgresql":
        return read_frame(engine, sql, params, schema=schema)
    with engine.begin() as conn:  # the period's clearings by index (:func:`_window_joins`)
        _window_joins(conn)
        return read_frame(conn, sql, params, schema=schema)
