"""Open items in the database: load a :class:`~dianfei.ledger.posting.Book`, write its posting.

Everything here runs in the caller's transaction (``conn``) and never commits: the ledger rows,
clearings, open-item changes and events of one posting are one transaction, so the open items
can never disagree with the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

from dianfei.audit import service as audit
from dianfei.db.lists import any_of, pg_array
from dianfei.events import service as events
from dianfei.ledger.posting import Book, Item, NetClearing, Posting, Release

if TYPE_CHECKING:
    import polars as pl

_COLUMNS = ("reference", "account_id", "customer_id", "item_kind", "bill_id", "due_on", "amount",
            "open_amount")


def _naive(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"instants must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).replace(tzinfo=None)


def _sqlite_ts(at: datetime) -> str:
    """An instant as SQLAlchemy stores it in SQLite (naive UTC text with microseconds), so text
    comparisons with rows written by the ORM or by bulk writes order correctly."""
    return _naive(at).strftime("%Y-%m-%d %H:%M:%S.%f")


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _item(r: Any) -> Item:
    return Item(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], _day(r[5]), int(r[6]),
                int(r[7]))


def load(conn: Connection, accounts: Sequence[str], *, references: Sequence[str] = (),
         lock: bool = False) -> list[Item]:
    """The accounts' items that are open (or credit), plus the named references even when
    cleared. ``lock`` takes the rows FOR UPDATE on PostgreSQL (the account rows should be
    locked first by the caller, in account order)."""
    cols = ", ".join(_COLUMNS)
    suffix = " FOR UPDATE" if lock and conn.dialect.name == "postgresql" else ""
    member, params = any_of(conn, "account_id", "a", sorted(set(accounts)))
    out = [_item(r) for r in conn.execute(text(
        f"SELECT {cols} FROM open_items WHERE {member} AND open_amount <> 0{suffix}"), params)]
    have = {i.reference for i in out}
    refs = sorted(set(references) - have)
    if refs:
        member, params = any_of(conn, "reference", "r", refs)
        out += [_item(r) for r in conn.execute(text(
            f"SELECT {cols} FROM open_items WHERE {member}{suffix}"), params)]
    return out


def configured_order(conn: Connection) -> str:
    """The allocation rule this database is configured with (``[payments] allocation``), carried
    by each connection (see ``db.engine``); ``oldest_first`` when none is set."""
    return str(conn.info.get("allocation_order", "oldest_first"))


def book(conn: Connection, accounts: Sequence[str], *, order: str | None, now: datetime,
         references: Sequence[str] = (), lock: bool = False) -> Book:
    """A Book of the accounts' open items; ``order`` None means the configured rule."""
    return Book(load(conn, accounts, references=references, lock=lock),
                order=configured_order(conn) if order is None else order, now=now)


#: a bill item's period (``open_items.period``): its stored bill's, looked up in the statement
#: that writes the row (``{r}``, ``{k}``: the new row's reference and item kind); None for
#: other items and for a bill not stored. An existing row keeps its period (a bill's period
#: never changes); one written before its bill gets it with its next change
_PERIOD = "(SELECT bp.period FROM bills bp WHERE bp.bill_id = {r} AND {k} = 'bill')"
_KEEP_PERIOD = "period = COALESCE(open_items.period, excluded.period)"

_UPSERT_SQLITE = (
    "INSERT INTO open_items (reference, account_id, customer_id, item_kind, bill_id, due_on, "
    "amount, open_amount, updated_at, period) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    + _PERIOD.format(r="?1", k="?4") + ") "
    "ON CONFLICT (reference) DO UPDATE SET "
    "open_amount = open_items.open_amount + excluded.open_amount, "
    f"updated_at = excluded.updated_at, {_KEEP_PERIOD}")


#: each bill item's clearing state derived from its clearings (``{member}``: which bills): the
#: sum, the latest instant and the instant of the last clearing that brought the running sum
#: (in (allocated_at, id) order) from below the item's amount to at least it
_BILL_STATE = (
    "SELECT bill_id, CAST(SUM(amount) AS BIGINT) AS cleared, MAX(at) AS last_at, "
    "MAX(CASE WHEN cum >= due AND cum - amount < due THEN at END) AS full_at "
    "FROM (SELECT pa.bill_id AS bill_id, pa.amount AS amount, pa.allocated_at AS at, "
    "o.amount AS due, SUM(pa.amount) OVER (PARTITION BY pa.bill_id ORDER BY pa.allocated_at, "
    "pa.id ROWS UNBOUNDED PRECEDING) AS cum FROM payment_allocations pa JOIN open_items o "
    "ON o.reference = pa.bill_id AND o.item_kind = 'bill' "
    "WHERE pa.allocated_to = 'bill' AND {member}) w GROUP BY bill_id")
_SET_BILL_STATE = (
    "UPDATE open_items SET cleared = s.cleared, last_cleared_at = s.last_at, "
    "paid_in_full_at = s.full_at FROM (" + _BILL_STATE + ") s "
    "WHERE open_items.reference = s.bill_id")
#: SQLite binds at most 32,766 parameters; a posting's bills are passed in slices
_SLICE = 10_000


def _cleared_bills(posting: Posting) -> list[str]:
    return sorted({str(c["bill_id"]) for c in posting.clearings
                   if c["allocated_to"] == "bill" and c["bill_id"] is not None})


def refresh_bill_states(conn: Connection, bill_ids: Sequence[str] | None = None) -> None:
    """Set the kept clearing state of the bill items ``bill_ids`` (None: every bill item) from
    their clearings, in the caller's transaction (what :func:`write` does for the bills a
    posting cleared; the bench and repairs call it for many at once)."""
    if bill_ids is None:
        conn.execute(text(_SET_BILL_STATE.format(member="1 = 1")))
        return
    ids = sorted(set(bill_ids))
    for i in range(0, len(ids), _SLICE):
        member, params = any_of(conn, "pa.bill_id", "b", ids[i:i + _SLICE])
        conn.execute(text(_SET_BILL_STATE.format(member=member)), params)


def bill_state_mismatches(conn: Connection) -> tuple[int, str | None]:
    """Bill items whose kept clearing state differs from what their clearings derive: how many,
    and one reference (``ledger check``)."""
    derived = _BILL_STATE.format(member="1 = 1")
    row = conn.execute(text(
        "SELECT count(*), min(o.reference) FROM open_items o LEFT JOIN (" + derived + ") s "
        "ON s.bill_id = o.reference WHERE o.item_kind = 'bill' AND ("
        "o.cleared <> COALESCE(s.cleared, 0) "
        "OR (o.last_cleared_at IS NULL) <> (s.last_at IS NULL) "
        "OR o.last_cleared_at <> s.last_at "
        "OR (o.paid_in_full_at IS NULL) <> (s.full_at IS NULL) "
        "OR o.paid_in_full_at <> s.full_at)")).one()
    return int(row[0]), row[1]


def write(conn: Connection, posting: Posting, *, now: datetime) -> None:
    """Write what a Book planned: ledger rows, clearings, open-item changes, events. On
    PostgreSQL each kind of row is one ``unnest`` statement (the callback writer sends them in
    its pipeline with the COMMIT)."""
    # every touched item is written, a net change of 0 included: a new debit that credit cleared
    # in the same posting nets to 0 but still needs its row (the upsert adds 0 to an old one)
    changes = list(posting.changes.values())
    # every ledger write is covered by an audit record carrying the digest of its rows, in this
    # transaction; the rows carry the record's batch number
    batch = audit.ledger_batch() if posting.entries else None
    if conn.dialect.name == "postgresql":
        driver: Any = conn.connection.driver_connection
        _pg_write(driver, posting, changes, now, batch)
        bills = _cleared_bills(posting)
        if bills:  # after the items' upsert: a bill debited in this posting has its row now
            driver.execute(_SET_BILL_STATE.format(member="pa.bill_id = ANY(%s::text[])"),
                           (pg_array(bills),))
        if batch is not None:  # the head row last: see audit.record_ledger_batch
            audit.record_ledger_batch(conn, batch, posting.entries)
        if posting.events:
            events.pg_publish(conn.connection.driver_connection, posting.events)
        return
    # SQLite: the driver's executemany on tuples (no per-row parameter dicts to compile); the
    # instants of one posting are a handful of values, each formatted once
    stamps: dict[datetime, str] = {}

    def ts(at: datetime) -> str:
        out = stamps.get(at)
        if out is None:
            out = stamps[at] = _sqlite_ts(at)
        return out

    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        if posting.entries:
            cur.executemany(
                "INSERT INTO ledger_entries (account_id, customer_id, kind, amount, posted_at, "
                "business_date, due_on, reference, reverses_entry_id, reason, audit_batch) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e["account_id"], e["customer_id"], e["kind"], e["amount"], ts(e["posted_at"]),
                  _iso(e["business_date"]), _iso(e["due_on"]), e["reference"],
                  e["reverses_entry_id"], e["reason"], batch) for e in posting.entries])
        if posting.clearings:
            cur.executemany(
                "INSERT INTO payment_allocations (payment_id, account_id, allocated_to, bill_id, "
                "item_reference, amount, allocated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(c["payment_id"], c["account_id"], c["allocated_to"], c["bill_id"],
                  c["item_reference"], c["amount"], ts(c["allocated_at"]))
                 for c in posting.clearings])
        if changes:
            updated = ts(now)
            cur.executemany(_UPSERT_SQLITE, [
                (it.reference, it.account_id, it.customer_id, it.item_kind, it.bill_id,
                 _iso(it.due_on), it.amount, delta, updated) for it, delta in changes])
        bills = _cleared_bills(posting)
        for i in range(0, len(bills), _SLICE):  # after the items' upsert (see the PostgreSQL path)
            part = bills[i:i + _SLICE]
            cur.execute(_SET_BILL_STATE.format(
                member=f"pa.bill_id IN ({', '.join('?' * len(part))})"), part)
    finally:
        cur.close()
    if batch is not None:
        audit.record_ledger_batch(conn, batch, posting.entries)
    if posting.events:
        events.publish(conn, posting.events)


def _iso(day: date | str | None) -> str | None:
    """A date as SQLAlchemy stores it in SQLite (what the driver's date adapter wrote before)."""
    return day.isoformat() if isinstance(day, date) else day


_PG_LEDGER = (
    "INSERT INTO ledger_entries (account_id, customer_id, kind, amount, posted_at, business_date, "
    "due_on, reference, reverses_entry_id, reason, audit_batch) SELECT u.*, %s::bigint FROM "
    "unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamp[], %s::date[], "
    "%s::date[], %s::text[], %s::bigint[], %s::text[]) AS u")
_PG_CLEARINGS = (
    "INSERT INTO payment_allocations (payment_id, account_id, allocated_to, bill_id, "
    "item_reference, amount, allocated_at) SELECT * FROM unnest(%s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::text[], %s::bigint[], %s::timestamp[])")
_PG_ITEMS = (
    "INSERT INTO open_items (reference, account_id, customer_id, item_kind, bill_id, due_on, "
    "amount, open_amount, updated_at, period) SELECT r, a, c, k, b, d, m, o, %s::timestamp, "
    + _PERIOD.format(r="u.r", k="u.k") + " FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::date[], %s::bigint[], "
    "%s::bigint[]) AS u(r, a, c, k, b, d, m, o) ON CONFLICT (reference) DO UPDATE SET "
    "open_amount = open_items.open_amount + excluded.open_amount, "
    f"updated_at = excluded.updated_at, {_KEEP_PERIOD}")


def _pg_write(raw: Any, posting: Posting, changes: list[tuple[Item, int]], now: datetime,
              batch: int | None) -> None:
    # every array as one literal (db.lists.pg_array: psycopg's list adaptation is Python per
    # element, and the callback writer sends these in every batch)
    e, c, a = posting.entries, posting.clearings, pg_array
    if e:
        raw.execute(_PG_LEDGER, (
            batch, a([r["account_id"] for r in e]), a([r["customer_id"] for r in e]),
            a([r["kind"] for r in e]), a([r["amount"] for r in e]),
            a([_naive(r["posted_at"]) for r in e]), a([r["business_date"] for r in e]),
            a([r["due_on"] for r in e]), a([r["reference"] for r in e]),
            a([r["reverses_entry_id"] for r in e]), a([r["reason"] for r in e])))
    if c:
        raw.execute(_PG_CLEARINGS, (
            a([r["payment_id"] for r in c]), a([r["account_id"] for r in c]),
            a([r["allocated_to"] for r in c]), a([r["bill_id"] for r in c]),
            a([r["item_reference"] for r in c]), a([r["amount"] for r in c]),
            a([_naive(r["allocated_at"]) for r in c])))
    if changes:
        its = [it for it, _ in changes]
        raw.execute(_PG_ITEMS, (
            _naive(now), a([i.reference for i in its]), a([i.account_id for i in its]),
            a([i.customer_id for i in its]), a([i.item_kind for i in its]),
            a([i.bill_id for i in its]), a([i.due_on for i in its]), a([i.amount for i in its]),
            a([d for _, d in changes])))


def releases(conn: Connection, reference: str) -> list[Release]:
    """Net money per payment on one debit (what a reversal of that debit gives back)."""
    rows = conn.execute(text(
        "SELECT pa.payment_id, CAST(SUM(pa.amount) AS BIGINT), MAX(p.paid_at) "
        "FROM payment_allocations pa JOIN payments p ON p.payment_id = pa.payment_id "
        "WHERE pa.item_reference = :r GROUP BY pa.payment_id HAVING SUM(pa.amount) > 0"),
        {"r": reference}).all()
    out = []
    for pid, fen, paid_at in rows:
        at = paid_at if isinstance(paid_at, datetime) else datetime.fromisoformat(str(paid_at))
        out.append(Release(str(pid), int(fen), at.replace(tzinfo=UTC)))
    return out


def net_clearings(conn: Connection, payment_id: str) -> list[NetClearing]:
    """Net clearing of one payment per target (what a refund negates)."""
    rows = conn.execute(text(
        "SELECT allocated_to, bill_id, item_reference, CAST(SUM(amount) AS BIGINT) "
        "FROM payment_allocations WHERE payment_id = :p "
        "GROUP BY allocated_to, bill_id, item_reference HAVING SUM(amount) <> 0 "
        "ORDER BY allocated_to, item_reference"), {"p": payment_id}).all()
    return [NetClearing(str(r[0]), r[1], r[2], int(r[3])) for r in rows]


#: up to how many accounts :func:`credit_accounts` asks about them by name; more, it reads every
#: credit holder and keeps theirs (a bill run's whole book)
CREDIT_NAMED = 5_000


def credit_accounts(conn: Connection, accounts: Sequence[str] | None = None) -> list[str]:
    """Accounts holding credit (read through the partial index of credit items), of
    ``accounts`` or all. A few accounts are looked up by name: every prepaid customer holds
    credit, so reading all holders for one posting cost more than the posting."""
    if accounts is not None and len(accounts) <= CREDIT_NAMED:
        wanted = sorted(set(accounts))
        if not wanted:
            return []
        member, params = any_of(conn, "account_id", "a", wanted)
        return sorted({str(r[0]) for r in conn.execute(text(
            f"SELECT DISTINCT account_id FROM open_items WHERE open_amount < 0 AND {member}"),
            params)})
    rows = conn.execute(text(
        "SELECT DISTINCT account_id FROM open_items WHERE open_amount < 0")).all()
    found = {str(r[0]) for r in rows}
    if accounts is not None:
        found &= set(accounts)
    return sorted(found)


def insert_debits(conn: Connection, debits: pl.DataFrame, *, now: datetime) -> int:
    """Open items for debits just written to the ledger in bulk (the bill run, late fees).
    Columns: account_id, customer_id, kind, amount, due_on, reference (+ bill_id optional;
    + period optional: each bill's period, which the caller wrote with the bills in this
    transaction). A bill item keeps its stored bill's period (``open_items.period``): without
    the column it is looked up in ``bills`` here; other items have none."""
    import polars as pl

    from dianfei.db.bulk import write_frame

    if debits.height == 0:
        return 0
    bill_id = (pl.col("bill_id") if "bill_id" in debits.columns else
               pl.when(pl.col("kind") == "late_fee")
               .then(pl.col("reference").str.split(":").list.get(1, null_on_oob=True))
               .otherwise(pl.col("reference")))
    if "period" not in debits.columns:
        debits = debits.join(_bill_periods(conn, debits.filter(pl.col("kind") == "bill")
                                           ["reference"].to_list()),
                             on="reference", how="left")
    period = pl.when(pl.col("kind") == "bill").then(pl.col("period"))
    return write_frame(conn, "open_items", debits.select(
        "reference", "account_id", "customer_id", pl.col("kind").alias("item_kind"),
        bill_id.alias("bill_id"), "due_on", "amount", pl.col("amount").alias("open_amount"),
        pl.lit(_naive(now)).alias("updated_at"), period.cast(pl.String).alias("period")))


def _bill_periods(conn: Connection, bill_ids: list[str]) -> pl.DataFrame:
    """reference (bill id), period of the stored bills among ``bill_ids``."""
    import polars as pl

    from dianfei.db.frames import read_frame

    schema = {"reference": pl.String, "period": pl.String}
    if not bill_ids:
        return pl.DataFrame(schema=schema)
    member, params = any_of(conn, "bill_id", "b", sorted(set(bill_ids)))
    return read_frame(conn, f"SELECT bill_id AS reference, period FROM bills WHERE {member}",
                      params, schema=schema)


def open_frame(conn_or_engine: Any, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """Open debits and credit as they stand (open_amount ≠ 0): account_id, customer_id,
    item_kind, reference, bill_id, due_on, amount, open_amount (of ``accounts``, or all)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    schema = {"account_id": pl.String, "customer_id": pl.String, "item_kind": pl.String,
              "reference": pl.String, "bill_id": pl.String, "due_on": pl.Date,
              "amount": pl.Int64, "open_amount": pl.Int64}
    sql = ("SELECT account_id, customer_id, item_kind, reference, bill_id, due_on, amount, "
           "open_amount FROM open_items WHERE open_amount <> 0")
    if accounts is None:
        return read_frame(conn_or_engine, sql, dates=("due_on",), schema=schema)
    if not isinstance(conn_or_engine, Connection):
        with conn_or_engine.connect() as conn:
            return open_frame(conn, accounts)
    member, params = any_of(conn_or_engine, "account_id", "a", sorted(set(accounts)))
    return read_frame(conn_or_engine, f"{sql} AND {member}", params, dates=("due_on",),
                      schema=schema)


def overdue_frame(conn_or_engine: Any, day: date) -> pl.DataFrame:
    """The open debits due before ``day`` (bills and posted late fees past their due date,
    open_amount > 0), same columns as :func:`open_frame`: what a day of collections works on.
    An account with an overdue debit holds no credit (credit clears every debit it meets, see
    ``ledger check``), so these items never net against credit.

    A bill's overdue late fees come as **one row** (item_kind ``late_fee``, its bill_id, the
    smallest reference — the earliest fee's, ``LF:{bill}:{day}`` — and due date, the amounts
    summed): each month end posts a fee per bill still overdue, so an account two years in
    arrears holds some three hundred of them (the demo's county: 64,000 fee items against
    10,800 overdue bills by its 24th month), while the day needs what each account owes per
    bill and since when. Grouped here, by Polars, where the daily run reads them on the second
    core: the main thread's snapshot, late fees and worklists get a third of the rows."""
    import polars as pl

    from dianfei.db.frames import read_frame, sqlite_columns

    # ``open_amount <> 0`` is the condition of the partial index of open items: with it SQLite
    # reads that index (the items still open), without it every item ever billed
    sql = ("SELECT account_id, customer_id, item_kind, reference, bill_id, due_on, amount, "
           "open_amount FROM open_items WHERE open_amount <> 0 AND open_amount > 0 AND due_on < :d")
    schema: dict[str, Any] = {"account_id": pl.String, "customer_id": pl.String,
                              "item_kind": pl.String, "reference": pl.String,
                              "bill_id": pl.String, "due_on": pl.Date, "amount": pl.Int64,
                              "open_amount": pl.Int64}
    frame = None
    if not isinstance(conn_or_engine, Connection):
        # SQLite: the rows as one text parsed by Polars (ids and references hold no separator)
        frame = sqlite_columns(conn_or_engine, sql, {"d": day}, schema)
    if frame is None:
        frame = read_frame(conn_or_engine, sql, {"d": day}, dates=("due_on",), schema=schema)
    fee = pl.col("item_kind") == "late_fee"
    fees = frame.filter(fee).group_by("account_id", "bill_id").agg(
        pl.col("customer_id").min(), pl.col("reference").min(), pl.col("due_on").min(),
        pl.col("amount").sum(), pl.col("open_amount").sum())
    return pl.concat([frame.filter(~fee), fees.with_columns(pl.lit("late_fee").alias("item_kind"))
                      .select(frame.columns)]).cast(pl.Schema(schema))
