"""Queries of the collections domain (all SQL lives here).

The snapshot a day of collections evaluates is read in a few set-based queries into Polars
frames: open items (from ``payments.service.open_items``, consistent with payment allocation),
customers, payment plans, stop cases. Two reads touch other packages' tables read-only because
their services do not yet offer them in bulk: today's bill allocations (to know the principal at
the start of the day) and the notify outbox's sent times (the lawful notice period runs from
when a stop notice was actually SENT).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    import polars as pl


def open_items(engine: Engine) -> pl.DataFrame:
    """Open bills and late fees (account_id, customer_id, item_kind, reference, bill_id, due_on,
    amount, open_amount) as the money core keeps them: only what is open is read."""
    from dianfei.payments.service import open_items as payments_open_items

    return payments_open_items(engine)


def bill_allocations_since(engine: Engine, since: datetime) -> pl.DataFrame:
    """bill_id, amount: money allocated to bills by payments made at or after ``since``."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT pa.bill_id, CAST(SUM(pa.amount) AS BIGINT) AS paid_today FROM payment_allocations pa "
        "WHERE pa.allocated_to = 'bill' AND pa.allocated_at >= :since GROUP BY pa.bill_id",
        {"since": since}, schema={"bill_id": pl.String, "paid_today": pl.Int64})


def customers(engine: Engine) -> pl.DataFrame:
    """account_id, customer_id, name, customer_class, low_income, protected, payment_mode."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT a.account_id, c.customer_id, c.name, c.customer_class, c.low_income, c.protected, "
        "c.payment_mode FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
        "WHERE a.closed_on IS NULL",
        schema={"account_id": pl.String, "customer_id": pl.String, "name": pl.String,
                "customer_class": pl.String, "low_income": pl.Boolean, "protected": pl.Boolean,
                "payment_mode": pl.String})


def accruals(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(
        engine,
        "SELECT bill_id, account_id, customer_id, customer_class, due_on, through, raw, posted, "
        "waived, closed_on, accrued FROM late_fee_accruals WHERE closed_on IS NULL",
        dates=("due_on", "through", "closed_on"),
        schema={"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "customer_class": pl.String, "raw": pl.Int64, "posted": pl.Int64,
                "waived": pl.Boolean, "accrued": pl.Int64})


def late_history(engine: Engine, since: date) -> pl.DataFrame:
    """Bills due since ``since`` that were paid late (they accrued a fee): account_id, due_on,
    through (the last day accrued) — the payment-history features of the risk score."""
    import polars as pl

    return read_frame(
        engine, "SELECT account_id, due_on, through FROM late_fee_accruals WHERE due_on >= :since",
        {"since": since}, dates=("due_on", "through"), schema={"account_id": pl.String})


def broken_plans(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(
        engine, "SELECT account_id, COUNT(*) AS broken_plans FROM payment_plans "
        "WHERE status = 'broken' GROUP BY account_id",
        schema={"account_id": pl.String, "broken_plans": pl.Int64})


def active_plans(engine: Engine) -> pl.DataFrame:
    """Active plans with what is due by each day and what has been paid since agreement."""
    import polars as pl

    return read_frame(
        engine,
        # payments posted since the plan was agreed and not refunded count towards it — by
        # time, never by a position on ledger ids (ids commit out of order on PostgreSQL)
        "SELECT p.plan_id, p.account_id, p.customer_id, p.total, p.ledger_mark, "
        "COALESCE((SELECT CAST(SUM(y.amount) AS BIGINT) FROM payments y "
        "  WHERE y.account_id = p.account_id AND y.posted_at >= p.agreed_at "
        "  AND y.status = 'posted'), 0) AS paid "
        "FROM payment_plans p WHERE p.status = 'active'",
        schema={"plan_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "total": pl.Int64, "ledger_mark": pl.Int64, "paid": pl.Int64})


def instalments(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(
        engine,
        "SELECT i.plan_id, i.seq, i.due_on, i.amount FROM plan_instalments i "
        "JOIN payment_plans p ON p.plan_id = i.plan_id WHERE p.status = 'active'",
        dates=("due_on",), schema={"plan_id": pl.Int64, "seq": pl.Int64, "amount": pl.Int64})


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
    keys = frame[key].to_list()
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"DELETE FROM {table} WHERE {key} = ANY(:k)"), {"k": keys})
    else:
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ", ".join(f":k{j}" for j in range(len(chunk)))
            conn.execute(text(f"DELETE FROM {table} WHERE {key} IN ({marks})"),
                         {f"k{j}": k for j, k in enumerate(chunk)})
    write_frame(conn, table, frame)


def delete_keys(conn: Connection, table: str, key: str, keys: list[Any]) -> None:
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"DELETE FROM {table} WHERE {key} = ANY(:k)"), {"k": keys})
        return
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = ", ".join(f":k{j}" for j in range(len(chunk)))
        conn.execute(text(f"DELETE FROM {table} WHERE {key} IN ({marks})"),
                     {f"k{j}": k for j, k in enumerate(chunk)})


def existing_keys(conn: Connection, table: str, keys: list[str]) -> set[str]:
    """Which of ``keys`` are already in ``table.key``."""
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        marks = ", ".join(f":k{j}" for j in range(len(chunk)))
        found |= {str(r[0]) for r in conn.execute(
            text(f"SELECT key FROM {table} WHERE key IN ({marks})"),
            {f"k{j}": k for j, k in enumerate(chunk)})}
    return found


def sent_notices(engine: Engine, since: datetime | None, prefix: str) -> pl.DataFrame:
    """Notices of ours (key prefix) the notify outbox has SENT (or failed) since ``since``:
    key, account_id, customer_id, notice, channel, status, sent_at, updated_at."""
    import polars as pl

    where = "" if since is None else " AND updated_at > :since"
    return read_frame(
        engine,
        "SELECT key, account_id, customer_id, notice, channel, status, sent_at, updated_at "
        "FROM notify_outbox WHERE key LIKE :p AND status IN ('sent', 'delivered', 'failed', "
        f"'opted_out', 'suppressed'){where} ORDER BY outbox_id",
        {"p": prefix + "%", **({"since": since} if since else {})},
        instants=("sent_at", "updated_at"),
        schema={"key": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "notice": pl.String, "channel": pl.String, "status": pl.String})


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


def balance_now(conn: Connection, account_id: str) -> int:
    """What the account owes now: its ledger balance and the late fees accrued but not posted."""
    return balances_of(conn, [account_id])[account_id]


def pending_fees(conn: Connection, accounts: list[str] | None = None) -> dict[str, int]:
    """Late fees accrued but not yet posted to the ledger (fen per account): owed all the same,
    they reach the ledger at month end or when the bill's accrual closes."""
    sql = ("SELECT account_id, SUM(accrued - posted) FROM late_fee_accruals "
           "WHERE closed_on IS NULL AND NOT waived AND accrued > posted{filter} "
           "GROUP BY account_id")
    if accounts is None:
        rows = conn.execute(text(sql.replace("{filter}", ""))).all()
    else:
        rows = _in_chunks(conn, sql.replace("{filter}", " AND account_id IN ({keys})"), accounts)
    return {str(r[0]): int(r[1]) for r in rows}


def remote_meter(conn: Connection, account_id: str) -> str | None:
    """The account's active meter with a communication address (remote-capable), if any."""
    row = conn.execute(text(
        "SELECT meter_id FROM meters WHERE account_id = :a AND removed_on IS NULL "
        "AND comm_address IS NOT NULL ORDER BY meter_id LIMIT 1"), {"a": account_id}).first()
    return str(row[0]) if row else None


def any_meter(conn: Connection, account_id: str) -> str | None:
    row = conn.execute(text("SELECT meter_id FROM meters WHERE account_id = :a AND removed_on IS NULL "
                            "ORDER BY meter_id LIMIT 1"), {"a": account_id}).first()
    return str(row[0]) if row else None


# -- smart prepayment (智能交费) ------------------------------------------------------------------

_PREPAID_METERS = (
    "JOIN meters m ON m.meter_id = r.meter_id AND m.removed_on IS NULL "
    "JOIN accounts a ON a.account_id = m.account_id AND a.closed_on IS NULL "
    "JOIN customers c ON c.customer_id = a.customer_id AND c.payment_mode = 'prepaid' ")


def prepaid_accounts(engine: Engine, day: date) -> pl.DataFrame:
    """Open prepaid accounts with their active meter and the tariff assignments that could be in
    force on ``day`` (the caller keeps the latest): account_id, customer_id, name,
    customer_class, low_income, protected, meter_id, multiplier, digits, tariff_id, tariff_from."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT a.account_id, c.customer_id, c.name, c.customer_class, c.low_income, c.protected, "
        "m.meter_id, m.multiplier, m.digits, ta.tariff_id, ta.effective_from AS tariff_from "
        "FROM accounts a JOIN customers c ON c.customer_id = a.customer_id "
        "LEFT JOIN meters m ON m.account_id = a.account_id AND m.removed_on IS NULL "
        "LEFT JOIN tariff_assignments ta ON ta.account_id = a.account_id "
        "  AND ta.effective_from <= :d AND (ta.effective_to IS NULL OR ta.effective_to > :d) "
        "WHERE a.closed_on IS NULL AND c.payment_mode = 'prepaid'",
        {"d": day}, dates=("tariff_from",),
        schema={"account_id": pl.String, "customer_id": pl.String, "name": pl.String,
                "customer_class": pl.String, "low_income": pl.Boolean, "protected": pl.Boolean,
                "meter_id": pl.String, "multiplier": pl.Int64, "digits": pl.Int64,
                "tariff_id": pl.String})


def prepaid_bills(engine: Engine, since_period: str) -> pl.DataFrame:
    """Live bills of prepaid accounts from ``since_period`` on: account_id, period, kwh,
    read_to_at (where the bill's consumption stopped: the accrual since then is not billed)."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT b.account_id, b.period, b.kwh, b.read_to_at FROM bills b "
        "JOIN customers c ON c.customer_id = b.customer_id AND c.payment_mode = 'prepaid' "
        "WHERE b.status = 'issued' AND b.period >= :p",
        {"p": since_period}, instants=("read_to_at",),
        schema={"account_id": pl.String, "period": pl.String, "kwh": pl.Int64})


def prepaid_reads_between(engine: Engine, lo: datetime, hi: datetime) -> pl.DataFrame:
    """Register reads of prepaid accounts' meters in (lo, hi]: meter_id, register, read_at, value."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT r.meter_id, r.register, r.read_at, r.value FROM register_reads r "
        f"{_PREPAID_METERS}WHERE r.read_at > :lo AND r.read_at <= :hi",
        {"lo": lo, "hi": hi}, instants=("read_at",),
        schema={"meter_id": pl.String, "register": pl.String, "value": pl.Int64})


def prepaid_reads_at(engine: Engine, instants: list[datetime]) -> pl.DataFrame:
    """Register reads of prepaid accounts' meters taken exactly at one of ``instants`` (the
    opening reads: where the last bill stopped, or the monthly frozen read)."""
    import polars as pl

    schema = {"meter_id": pl.String, "register": pl.String, "value": pl.Int64}
    frames = []
    for i in range(0, len(instants), 200):
        chunk = instants[i:i + 200]
        marks = ", ".join(f":t{j}" for j in range(len(chunk)))
        frames.append(read_frame(
            engine,
            "SELECT r.meter_id, r.register, r.read_at, r.value FROM register_reads r "
            f"{_PREPAID_METERS}WHERE r.read_at IN ({marks})",
            {f"t{j}": t for j, t in enumerate(chunk)}, instants=("read_at",), schema=schema))
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema={**schema, "read_at": pl.Datetime("us", "UTC")}).select(
            "meter_id", "register", "read_at", "value")
    return pl.concat(frames, how="vertical_relaxed")


def prepaid_balances(engine: Engine) -> pl.DataFrame:
    """Balance of every prepaid account (fen; negative = money in hand), from the open items
    (equal to the ledger balance, see ``ledger check``): no scan of the ledger's history."""
    import polars as pl

    return read_frame(
        engine,
        "SELECT o.account_id, CAST(SUM(o.open_amount) AS BIGINT) AS balance FROM open_items o "
        "JOIN customers c ON c.customer_id = o.customer_id AND c.payment_mode = 'prepaid' "
        "WHERE o.open_amount <> 0 GROUP BY o.account_id",
        schema={"account_id": pl.String, "balance": pl.Int64})


def prepay_state(engine: Engine) -> pl.DataFrame:
    import polars as pl

    return read_frame(engine, "SELECT account_id, stage, accrued FROM prepay_state",
                      schema={"account_id": pl.String, "stage": pl.String, "accrued": pl.Int64})


def prepay_accrued(conn: Connection, account_id: str) -> int | None:
    """The charges accrued since the last bill as last computed (None: never computed)."""
    row = conn.execute(text("SELECT accrued FROM prepay_state WHERE account_id = :a"),
                       {"a": account_id}).first()
    return None if row is None or row[0] is None else int(row[0])


def _in_chunks(conn: Connection, sql: str, keys: list[str], size: int = 500) -> list[Any]:
    """Run ``sql`` (with ``{keys}`` standing for an IN list) over ``keys`` in chunks."""
    rows: list[Any] = []
    uniq = sorted(set(keys))
    for i in range(0, len(uniq), size):
        chunk = uniq[i:i + size]
        marks = ", ".join(f":k{j}" for j in range(len(chunk)))
        rows.extend(conn.execute(text(sql.replace("{keys}", marks)),
                                 {f"k{j}": k for j, k in enumerate(chunk)}).all())
    return rows


def balances_of(conn: Connection, accounts: list[str]) -> dict[str, int]:
    """What each of ``accounts`` owes (fen; ≤ 0: nothing owed), fresh: the sum of its open
    items (which ``ledger check`` proves equal to its ledger balance) and its pending late fees."""
    from dianfei.ledger.service import balances

    out = balances(conn, accounts)
    for a, fen in pending_fees(conn, accounts).items():
        out[a] = out.get(a, 0) + fen
    return out


def protected_customers(conn: Connection, customers: list[str]) -> set[str]:
    return {str(r[0]) for r in _in_chunks(
        conn, "SELECT customer_id FROM customers WHERE protected AND customer_id IN ({keys})",
        customers)}


def accounts_with_plan(conn: Connection, accounts: list[str]) -> set[str]:
    return {str(r[0]) for r in _in_chunks(
        conn, "SELECT account_id FROM payment_plans WHERE status = 'active' "
              "AND account_id IN ({keys})", accounts)}


def prepay_accrued_of(conn: Connection, accounts: list[str]) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in _in_chunks(
        conn, "SELECT account_id, accrued FROM prepay_state WHERE accrued IS NOT NULL "
              "AND account_id IN ({keys})", accounts)}


def live_case_balances(conn: Connection) -> dict[str, int]:
    """What every account with a live postpaid stop case owes (see :func:`balances_of`)."""
    accounts = [str(r[0]) for r in conn.execute(text(
        "SELECT DISTINCT account_id FROM stop_cases WHERE status != 'closed' "
        "AND mode = 'postpaid'")).all()]
    return balances_of(conn, accounts)


def case_notice_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Which of ``keys`` already opened a stop case (in any status): one case per (account,
    oldest bill), since its stop notice can be given only once."""
    return {str(r[0]) for r in _in_chunks(
        conn, "SELECT notice_key FROM stop_cases WHERE notice_key IN ({keys})", keys)}
