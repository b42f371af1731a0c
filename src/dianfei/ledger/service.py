"""Entry points of the ledger: posting, reversing, balances, aging and the invariant check.

Accounting rules (why the code is shaped this way):
- the ledger only grows; a mistake is corrected by a ``reversal`` that names the entry it undoes;
- a balance is the sum of an account's entries; the open items kept beside them (written in the
  same transaction, see ``posting`` and ``items``) add up to the same sum, and ``check`` proves
  it, so balances are read from the few open items rather than the whole history;
- aging applies the account's credits to its debits oldest due date first (the default
  allocation rule) and buckets what remains by days past the due date, never the issue date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.core.clock import Clock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.bulk import write_frame
from dianfei.db.guards import missing_guards
from dianfei.ledger import items
from dianfei.ledger.models import ENTRY_KINDS
from dianfei.ledger.models import LedgerEntry as LedgerEntry  # what write_off and post_entry return

if TYPE_CHECKING:
    import polars as pl

#: the sign each kind must carry (reversals carry the negated sign of what they reverse)
_SIGN_RULES = {"bill": ">= 0", "late_fee": "> 0", "payment": "< 0", "write_off": "< 0",
               "adjustment": "<> 0"}

AGING_BUCKETS = ("current", "0-30", "31-60", "61-90", ">90")
#: the last day past due of each bucket but the oldest (days ≤ 0 are current)
_BUCKET_ENDS = ((0, "current"), (30, "0-30"), (60, "31-60"), (90, "61-90"))


def aging_ends() -> tuple[tuple[int, str], ...]:
    """Each aging bucket but the oldest with its last day past due (ascending): the bucket
    holds the days after the previous one's last up to its own (days ≤ 0: the first); the
    oldest, :data:`AGING_BUCKETS`' last, everything after."""
    return _BUCKET_ENDS


def aging_bucket(days_past_due: int) -> str:
    """The aging bucket of a debit ``days_past_due`` after its due date (never the issue date)."""
    for last, name in _BUCKET_ENDS:
        if days_past_due <= last:
            return name
    return AGING_BUCKETS[-1]


def post_entry(session: Session, *, clock: Clock, account_id: str, customer_id: str, kind: str,
               amount: int, reference: str, due_on: date | None = None,
               reason: str | None = None, order: str | None = None) -> LedgerEntry:
    """Post one debit (bill or late fee) with its open item; credit the account holds clears it.
    A second entry of the same kind for the same reference is refused. Payments are posted by
    the payments domain through the same posting core."""
    if kind not in ("bill", "late_fee"):
        raise ValidationError(f"post_entry takes a debit (bill, late_fee), got {kind!r}")
    if amount < 0 or (kind == "late_fee" and amount == 0):
        raise ValidationError(f"a {kind} debit must be positive, got {amount} fen")
    now = clock.now()
    session.flush()
    book = items.book(session.connection(), [account_id], order=order, now=now, lock=True)
    book.debit(reference=reference, account_id=account_id, customer_id=customer_id, kind=kind,
               amount=amount, due_on=due_on, reason=reason)
    try:
        with session.begin_nested():
            items.write(session.connection(), book.posting, now=now)
    except IntegrityError:
        raise ConflictError(f"a {kind} entry for {reference} is already posted") from None
    return session.scalars(select(LedgerEntry).where(LedgerEntry.kind == kind,
                                                     LedgerEntry.reference == reference)).one()


def reverse_entry(session: Session, *, clock: Clock, entry_id: int, reason: str,
                  order: str | None = None) -> LedgerEntry:
    """Undo a debit (bill, late fee) with a new entry of the opposite amount. Each entry is
    reversed at most once. Money already on the debit goes back to credit, which then clears the
    account's other open debits (one posting, see :mod:`dianfei.ledger.posting`). Payments are
    reversed by the payments domain (refunds, bank returns) through the same posting core."""
    if not reason.strip():
        raise ValidationError("a reversal needs a reason")
    original = session.get(LedgerEntry, entry_id)
    if original is None:
        raise NotFoundError(f"ledger entry {entry_id} does not exist")
    if original.kind == "reversal":
        raise ConflictError(f"entry {entry_id} is a reversal; post a new entry instead")
    if original.kind not in ("bill", "late_fee"):
        raise ValidationError(f"entry {entry_id} is a {original.kind}: reverse payments with a "
                              "refund")
    session.flush()
    conn = session.connection()
    if conn.execute(select(LedgerEntry.entry_id).where(
            LedgerEntry.reverses_entry_id == entry_id)).first() is not None:
        raise ConflictError(f"ledger entry {entry_id} is already reversed")
    now = clock.now()
    book = items.book(conn, [original.account_id], order=order, now=now,
                      references=[original.reference], lock=True)
    book.reverse_debit(reference=original.reference, entry_id=entry_id,
                       account_id=original.account_id, customer_id=original.customer_id,
                       amount=original.amount, reason=reason,
                       on_item=items.releases(conn, original.reference))
    try:
        with session.begin_nested():
            items.write(session.connection(), book.posting, now=now)
    except IntegrityError:
        raise ConflictError(f"ledger entry {entry_id} is already reversed") from None
    return session.scalars(select(LedgerEntry).where(
        LedgerEntry.reverses_entry_id == entry_id)).one()


def write_off(session: Session, *, clock: Clock, reference: str, reason: str,
              order: str | None = None) -> LedgerEntry:
    """Write off (核销) what is still open of one debit — a bill (its id) or a late fee (its
    ``LF:…`` reference): one ``write_off`` entry of minus the open amount, carrying the debit's
    reference, and the debit's open item closed, in the caller's transaction (with its audit
    record). A debit written off once, reversed, or with nothing open is refused."""
    if not reason.strip():
        raise ValidationError("a write-off needs a reason")
    session.flush()
    conn = session.connection()
    debit = conn.execute(select(LedgerEntry.entry_id, LedgerEntry.account_id,
                                LedgerEntry.customer_id).where(
        LedgerEntry.kind.in_(("bill", "late_fee")), LedgerEntry.reference == reference)).first()
    if debit is None:
        raise NotFoundError(f"no bill or late fee {reference!r} in the ledger")
    if conn.execute(select(LedgerEntry.entry_id).where(
            LedgerEntry.kind == "write_off", LedgerEntry.reference == reference)).first():
        raise ConflictError(f"{reference} is already written off")
    if conn.execute(select(LedgerEntry.entry_id).where(
            LedgerEntry.reverses_entry_id == int(debit[0]))).first():
        raise ConflictError(f"{reference} is reversed (cancelled or waived): nothing to write off")
    now = clock.now()
    book = items.book(conn, [str(debit[1])], order=order, now=now, references=[reference],
                      lock=True)
    if book.write_off(reference=reference, account_id=str(debit[1]),
                      customer_id=str(debit[2]), reason=reason) == 0:
        raise ConflictError(f"{reference} has nothing open to write off")
    try:
        with session.begin_nested():
            items.write(session.connection(), book.posting, now=now)
    except IntegrityError:
        raise ConflictError(f"{reference} is already written off") from None
    return session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "write_off",
                                                     LedgerEntry.reference == reference)).one()


def write_off_account(conn: Connection, *, now: datetime, account_id: str, customer_id: str,
                      reason: str) -> list[tuple[str, int]]:
    """Write off (核销) everything the account still owes — each open bill and late fee, as
    :func:`write_off` would one by one — in one posting in the caller's transaction (an account
    closed with its arrears as bad debt). Returns (reference, fen) written off, oldest due
    first; empty when nothing is open. Credit is not touched: the caller refunds it first."""
    if not reason.strip():
        raise ValidationError("a write-off needs a reason")
    book = items.book(conn, [account_id], order=None, now=now, lock=True)
    debits = sorted((i for i in book.items(account_id) if i.item_kind != "credit"
                     and i.open_amount > 0),
                    key=lambda i: (i.due_on or date.max, i.reference))
    done = [(i.reference, book.write_off(reference=i.reference, account_id=account_id,
                                         customer_id=customer_id, reason=reason))
            for i in debits]
    if done:
        items.write(conn, book.posting, now=now)
    return done


def post_frame(conn: Connection, entries: pl.DataFrame, *, order: str | None = None,
               action: str = "ledger.debits", subject: str = "") -> int:
    """Bulk-post debits (bill run, late fees). Columns: account_id, customer_id, kind (bill or
    late_fee), amount, posted_at (timezone-aware), business_date, due_on, reference (reason
    optional; period optional: the bills' periods for their open items, written with the bills
    in this transaction — looked up when absent, see :func:`items.insert_debits`).

    Their open items are written with them, and credit held by any of these accounts clears
    them in the same transaction (:mod:`dianfei.ledger.posting`). One audit record (``action``,
    ``subject``) carries the digest of the rows."""
    if entries.height == 0:
        return 0
    kinds = set(entries["kind"].unique().to_list())
    if not kinds <= {"bill", "late_fee"}:
        raise ValidationError(f"post_frame takes debits (bill, late_fee), got {sorted(kinds)}")
    import polars as pl

    periods = ["period"] if "period" in entries.columns else []
    debits = entries.select("account_id", "customer_id", "kind", "amount", "due_on", "reference",
                            *periods)
    entries = entries.drop(periods)
    batch = audit.ledger_batch()
    n = write_frame(conn, "ledger_entries",
                    entries.with_columns(pl.lit(batch, pl.Int64).alias("audit_batch")))
    at = entries["posted_at"][0]
    now = at if getattr(at, "tzinfo", None) else at.replace(tzinfo=UTC)
    items.insert_debits(conn, debits, now=now)
    apply_credit(conn, entries["account_id"].unique().to_list(), now=now, order=order)
    # the record last: the chain's head row is the last lock a posting takes
    audit.record_ledger_frame(conn, batch, entries, action=action, subject=subject)
    return n


def apply_credit(conn: Connection, accounts: list[str] | None = None, *, now: datetime,
                 order: str | None = None) -> int:
    """Let credit clear the open debits of these accounts (all accounts when None). Returns the
    clearing rows written. Reads only the accounts that hold credit."""
    holders = items.credit_accounts(conn, accounts)
    if not holders:
        return 0
    book = items.book(conn, holders, order=order, now=now, lock=True)
    for a in holders:
        book.apply_credit(a)
    items.write(conn, book.posting, now=now)
    return len(book.posting.clearings)


def balance(conn: Connection | Session, account_id: str) -> int:
    """What the account owes in fen (negative = credit in the customer's favour): the sum of its
    open items, which ``ledger check`` proves equal to the sum of its ledger entries."""
    return int(conn.execute(text(
        "SELECT COALESCE(SUM(open_amount), 0) FROM open_items WHERE account_id = :a "
        "AND open_amount <> 0"), {"a": account_id}).scalar_one())


def open_amount(conn: Connection | Session, reference: str) -> int | None:
    """What is still open of one debit (fen), or None when no open item has this reference."""
    found = conn.execute(text("SELECT open_amount FROM open_items WHERE reference = :r"),
                         {"r": reference}).scalar_one_or_none()
    return None if found is None else int(found)


def balances(conn: Connection, accounts: list[str]) -> dict[str, int]:
    """What each account owes (fen; negative = credit), from its open items: the sum of the
    items still open, read through the partial index — no scan of the ledger's history."""
    from dianfei.db.lists import any_of

    out = dict.fromkeys(accounts, 0)
    if accounts:
        member, params = any_of(conn, "account_id", "a", accounts)
        sql = (f"SELECT account_id, SUM(open_amount) FROM open_items WHERE {member} "
               "AND open_amount <> 0 GROUP BY account_id")
        if conn.dialect.name == "sqlite":
            # the driver's rows are (text, integer) pairs already: no Row objects, no per-row
            # conversion (hundreds of thousands of accounts a day at a million)
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                out.update(cur.execute(sql, params).fetchall())
            finally:
                cur.close()
        else:
            out.update({str(r[0]): int(r[1]) for r in conn.execute(text(sql), params)})
    return out


def entries(engine: Engine) -> pl.DataFrame:
    """Every ledger entry, typed the same on every database and for any content (an empty
    ledger, one where no entry was ever reversed: ``reverses_entry_id`` all NULL)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine,
        "SELECT entry_id, account_id, customer_id, kind, amount, posted_at, business_date, "
        "due_on, reference, reverses_entry_id, reason FROM ledger_entries ORDER BY entry_id",
        dates=("business_date", "due_on"), instants=("posted_at",),
        schema={"entry_id": pl.Int64, "amount": pl.Int64, "reverses_entry_id": pl.Int64},
    )


def write_offs(engine: Engine) -> pl.DataFrame:
    """Write-offs (核销) still standing (not reversed): reference (the debit written off, a bill
    id or a late-fee reference), account_id, business_date, amount (fen, positive: what was
    written off)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine,
        "SELECT e.reference, e.account_id, e.business_date, -e.amount AS amount "
        "FROM ledger_entries e LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id "
        "WHERE e.kind = 'write_off' AND r.entry_id IS NULL ORDER BY e.entry_id",
        dates=("business_date",),
        schema={"reference": pl.String, "account_id": pl.String, "business_date": pl.Date,
                "amount": pl.Int64})


def payment_reversals(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """Payments reversed (refunds, bank returns) on business days ``first``..``last``:
    payment_id (the reversed payment entry's reference), business_date, amount (fen, positive:
    what went back)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine,
        "SELECT p.reference AS payment_id, r.business_date, r.amount FROM ledger_entries r "
        "JOIN ledger_entries p ON p.entry_id = r.reverses_entry_id AND p.kind = 'payment' "
        "WHERE r.kind = 'reversal' AND r.business_date BETWEEN :a AND :z ORDER BY r.entry_id",
        {"a": first, "z": last}, dates=("business_date",),
        schema={"payment_id": pl.String, "business_date": pl.Date, "amount": pl.Int64})


def aging(engine: Engine, as_of: date) -> pl.DataFrame:
    """Open debits per account bucketed by days past due as of ``as_of``.

    Columns: account_id, balance, current, 0-30, 31-60, 61-90, >90 (all fen). A debit that is
    due on ``as_of`` or later is ``current``; the first day past due falls in 0-30.
    """
    return aging_frame(entries(engine), as_of)


def _bucket_expr(days: pl.Expr) -> pl.Expr:
    """:func:`aging_bucket` as a column expression."""
    import polars as pl

    (first_end, first), *rest = _BUCKET_ENDS
    expr: Any = pl.when(days <= first_end).then(pl.lit(first))
    for last, name in rest:
        expr = expr.when(days <= last).then(pl.lit(name))
    out: pl.Expr = expr.otherwise(pl.lit(AGING_BUCKETS[-1]))
    return out


def aging_bucket_column(days_past_due: pl.Expr) -> pl.Expr:
    """:func:`aging_bucket` as a column expression (the same buckets for every report)."""
    return _bucket_expr(days_past_due)


def aging_frame(all_entries: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """:func:`aging` on a frame of entries (entry_id, account_id, kind, amount, business_date,
    due_on, reverses_entry_id): a pure function, property-tested."""
    import polars as pl

    e = all_entries.filter(pl.col("business_date") <= as_of)
    reversed_ids = e.filter(pl.col("kind") == "reversal").select(
        pl.col("reverses_entry_id").alias("entry_id"))
    live = e.filter(pl.col("kind") != "reversal").join(reversed_ids, on="entry_id", how="anti")
    debits = live.filter(pl.col("amount") > 0).with_columns(
        pl.col("due_on").fill_null(pl.col("business_date")))
    credits = (live.filter(pl.col("amount") < 0).group_by("account_id")
               .agg((-pl.col("amount").sum()).alias("pool")))
    opened = (
        debits.sort("account_id", "due_on", "entry_id")
        .join(credits, on="account_id", how="left")
        .with_columns(pl.col("pool").fill_null(0))
        .with_columns(pl.col("amount").cum_sum().over("account_id").alias("cum"))
        .with_columns(
            pl.min_horizontal(pl.col("amount"),
                              pl.max_horizontal(pl.col("cum") - pl.col("pool"), pl.lit(0)))
            .alias("open"),
            (pl.lit(as_of) - pl.col("due_on")).dt.total_days().alias("days"),
        )
        .with_columns(
            _bucket_expr(pl.col("days")).alias("bucket")
        )
    )
    wide = (opened.group_by("account_id", "bucket").agg(pl.col("open").sum())
            .pivot(on="bucket", index="account_id", values="open"))
    for b in AGING_BUCKETS:
        if b not in wide.columns:
            wide = wide.with_columns(pl.lit(0, pl.Int64).alias(b))
    balances = live.group_by("account_id").agg(pl.col("amount").sum().alias("balance"))
    return (balances.join(wide, on="account_id", how="left")
            .with_columns([pl.col(b).fill_null(0) for b in AGING_BUCKETS])
            .select("account_id", "balance", *AGING_BUCKETS).sort("account_id"))


@dataclass(frozen=True)
class Violation:
    """One broken ledger invariant: its name, how many records break it, and an example."""

    invariant: str
    count: int
    example: str


_CHECKS: tuple[tuple[str, str], ...] = (
    ("entry kind is known",
     "SELECT count(*), min(entry_id) FROM ledger_entries WHERE kind NOT IN ({kinds})"),
    ("entry amount has the sign of its kind",
     "SELECT count(*), min(entry_id) FROM ledger_entries WHERE " + " OR ".join(
         f"(kind = '{k}' AND NOT amount {rule})" for k, rule in _SIGN_RULES.items())),
    ("a reversal names an entry, of the same account, with the opposite amount",
     "SELECT count(*), min(r.entry_id) FROM ledger_entries r LEFT JOIN ledger_entries o "
     "ON o.entry_id = r.reverses_entry_id WHERE r.kind = 'reversal' AND (o.entry_id IS NULL "
     "OR o.account_id <> r.account_id OR o.amount <> -r.amount OR o.kind = 'reversal')"),
    ("only reversals name a reversed entry",
     "SELECT count(*), min(entry_id) FROM ledger_entries "
     "WHERE kind <> 'reversal' AND reverses_entry_id IS NOT NULL"),
    ("every bill entry books an existing bill of the same account and amount",
     "SELECT count(*), min(e.reference) FROM ledger_entries e LEFT JOIN bills b "
     "ON b.bill_id = e.reference WHERE e.kind = 'bill' AND (b.bill_id IS NULL "
     "OR b.account_id <> e.account_id OR b.amount <> e.amount)"),
    ("every issued bill is debited exactly once and not reversed",
     "SELECT count(*), min(b.bill_id) FROM bills b LEFT JOIN ledger_entries e "
     "ON e.kind = 'bill' AND e.reference = b.bill_id LEFT JOIN ledger_entries r "
     "ON r.reverses_entry_id = e.entry_id "
     "WHERE b.status = 'issued' AND (e.entry_id IS NULL OR r.entry_id IS NOT NULL)"),
    ("every cancelled bill's debit is reversed",
     "SELECT count(*), min(b.bill_id) FROM bills b LEFT JOIN ledger_entries e "
     "ON e.kind = 'bill' AND e.reference = b.bill_id LEFT JOIN ledger_entries r "
     "ON r.reverses_entry_id = e.entry_id "
     "WHERE b.status = 'cancelled' AND (e.entry_id IS NULL OR r.entry_id IS NULL)"),
    ("a bill's amount is the sum of its lines",
     "SELECT count(*), min(b.bill_id) FROM bills b LEFT JOIN "
     "(SELECT bill_id, sum(amount) AS s, count(*) AS n FROM bill_lines GROUP BY bill_id) l "
     "ON l.bill_id = b.bill_id WHERE coalesce(l.s, 0) <> b.amount"),
    ("every debit's open item holds what the ledger and its clearings leave open",
     "SELECT count(*), min(e.reference) FROM ledger_entries e "
     "LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id "
     "LEFT JOIN (SELECT item_reference, SUM(amount) AS s FROM payment_allocations "
     "WHERE item_reference IS NOT NULL GROUP BY item_reference) a ON a.item_reference = e.reference "
     # a write-off (核销) carries the reference of the debit it closes, negative
     "LEFT JOIN (SELECT reference, SUM(amount) AS s FROM ledger_entries WHERE kind = 'write_off' "
     "GROUP BY reference) w ON w.reference = e.reference "
     "LEFT JOIN open_items o ON o.reference = e.reference WHERE e.kind IN ('bill', 'late_fee') "
     "AND (o.reference IS NULL OR o.account_id <> e.account_id OR o.item_kind <> e.kind "
     "OR o.open_amount <> e.amount + COALESCE(r.amount, 0) - COALESCE(a.s, 0) "
     "+ COALESCE(w.s, 0))"),
    ("every payment's credit item holds its unused credit, and no item lacks its ledger entry",
     "SELECT count(*), min(k) FROM ("
     " SELECT 'CR:' || c.payment_id AS k FROM (SELECT payment_id, SUM(amount) AS s "
     "  FROM payment_allocations WHERE allocated_to = 'credit' GROUP BY payment_id) c "
     "  LEFT JOIN open_items o ON o.reference = 'CR:' || c.payment_id "
     "  WHERE COALESCE(o.open_amount, 0) <> -c.s"
     # a credit item names its payment in bill_id: looked up by the payment index
     " UNION ALL SELECT o.reference FROM open_items o WHERE o.item_kind = 'credit' "
     "  AND o.open_amount <> 0 AND NOT EXISTS (SELECT 1 FROM payment_allocations pa "
     "  WHERE pa.payment_id = o.bill_id AND pa.allocated_to = 'credit')"
     " UNION ALL SELECT o.reference FROM open_items o LEFT JOIN ledger_entries e "
     "  ON e.kind = o.item_kind AND e.reference = o.reference "
     "  WHERE o.item_kind IN ('bill', 'late_fee') AND e.entry_id IS NULL) q"),
    ("an account's open items add up to its ledger balance",
     "SELECT count(*), min(account_id) FROM (SELECT account_id FROM (SELECT account_id, amount AS x "
     "FROM ledger_entries UNION ALL SELECT account_id, -open_amount FROM open_items) u "
     "GROUP BY account_id HAVING SUM(x) <> 0) q"),
    ("no account holds credit and an open debit at once (credit clears what it meets)",
     "SELECT count(*), min(account_id) FROM (SELECT account_id FROM open_items "
     "WHERE open_amount <> 0 GROUP BY account_id "
     "HAVING MIN(open_amount) < 0 AND MAX(open_amount) > 0) q"),
    # what ``dianfei kpi`` finds a period's bill items by (``ix_open_items_period``): an item
    # keeps the period of its stored bill, and only a bill item has one
    ("each bill item keeps its bill's period",
     "SELECT count(*), min(o.reference) FROM open_items o LEFT JOIN bills b "
     "ON o.item_kind = 'bill' AND b.bill_id = o.reference "
     "WHERE (b.bill_id IS NULL AND o.period IS NOT NULL) "
     "OR (b.bill_id IS NOT NULL AND (o.period IS NULL OR o.period <> b.period))"),
    ("at most one live bill per account and period",
     "SELECT count(*), min(k) FROM (SELECT account_id || ' ' || period AS k FROM bills "
     "WHERE status <> 'cancelled' GROUP BY account_id, period HAVING count(*) > 1) d"),
)


def check(conn: Connection) -> list[Violation]:
    """Evaluate every invariant; return all violations at once (an empty list when sound)."""
    kinds = ", ".join(f"'{k}'" for k in ENTRY_KINDS)
    found: list[Violation] = []
    for name, sql in _CHECKS:
        count, example = conn.execute(text(sql.replace("{kinds}", kinds))).one()
        if count:
            found.append(Violation(name, int(count), str(example)))
    # each bill's kept clearing state (``open_items.cleared``, ``last_cleared_at``,
    # ``paid_in_full_at``: what ``dianfei kpi`` reads) equals what its clearings derive, and
    # every clearing to a bill names a payment (the KPIs count a bill's clearings with their
    # payment's channel: the kept state may stand for them only if none is without one)
    count, example = items.bill_state_mismatches(conn)
    if count:
        found.append(Violation("each bill's kept clearing state equals its clearings", count,
                               str(example)))
    count, example = conn.execute(text(
        "SELECT count(*), min(pa.payment_id) FROM payment_allocations pa LEFT JOIN payments p "
        "ON p.payment_id = pa.payment_id WHERE pa.allocated_to = 'bill' "
        "AND p.payment_id IS NULL")).one()
    if count:
        found.append(Violation("every clearing to a bill names a stored payment", int(count),
                               str(example)))
    missing = missing_guards(conn)
    if missing:
        found.append(Violation("the database guards every money table (append-only, no TRUNCATE)",
                               len(missing), "; ".join(missing)))
    return found


# -- the money core's public surface for other packages -----------------------------------------
# payments posts through the same planner (``Book``) and open-item store as the ledger itself;
# collections and the account view read open items, clearings and balances. These are the names
# other packages use; ``ledger.items``, ``ledger.posting`` and ``ledger.allocation`` stay inside.

from dianfei.ledger.allocation import ALLOCATION_ORDERS as ALLOCATION_ORDERS  # noqa: E402
from dianfei.ledger.allocation import OpenItem as OpenItem  # noqa: E402
from dianfei.ledger.allocation import allocate as allocate  # noqa: E402
from dianfei.ledger.allocation import allocate_frame as allocate_frame  # noqa: E402
from dianfei.ledger.allocation import check_order as check_order  # noqa: E402
from dianfei.ledger.allocation import sort_items as sort_items  # noqa: E402
from dianfei.ledger.items import net_clearings as net_clearings  # noqa: E402
from dianfei.ledger.posting import Book as Book  # noqa: E402
from dianfei.ledger.posting import Item as Item  # noqa: E402

#: the accounts' open items in a planner (``Book``), optionally locked: plan, then write
open_book = items.book
#: the accounts' open items (and named references) as planner items
load_items = items.load
#: write what a Book planned, in the caller's transaction
write_posting = items.write
#: set the kept clearing state of bill items from their clearings (None: every bill item), in the
#: caller's transaction — what every posting does for the bills it clears
refresh_bill_states = items.refresh_bill_states
#: the allocation rule the database is configured with (carried by each connection)
configured_order = items.configured_order
#: open debits and credit as a frame (account_id, customer_id, item_kind, reference, bill_id,
#: due_on, amount, open_amount), optionally of some accounts
open_items = items.open_frame
overdue_items = items.overdue_frame


def cleared_on_bills_since(engine: Engine, since: datetime) -> pl.DataFrame:
    """bill_id, paid_today: what clearings made at or after ``since`` put on bills."""
    from dianfei.ledger import repository

    return repository.cleared_on_bills_since(engine, since)


def balances_frame(engine: Engine, accounts: list[str]) -> pl.DataFrame:
    """:func:`balances` as columns: account_id, balance (fen; negative = credit) of
    ``accounts`` (each of them, 0 when nothing is open)."""
    import polars as pl

    from dianfei.db.frames import read_frame, sqlite_columns
    from dianfei.db.lists import any_of

    schema = {"account_id": pl.String, "balance": pl.Int64}
    wanted = pl.DataFrame({"account_id": sorted(set(accounts))}, schema={"account_id": pl.String})
    if wanted.height == 0:
        return pl.DataFrame(schema=schema)
    member, params = any_of(engine, "account_id", "a", wanted["account_id"].to_list())
    # typed in SQL: PostgreSQL's SUM of bigint is numeric, which Arrow cannot cast to Int64
    sql = (f"SELECT account_id, CAST(SUM(open_amount) AS BIGINT) AS balance FROM open_items "
           f"WHERE {member} "
           "AND open_amount <> 0 GROUP BY account_id")
    got = sqlite_columns(engine, sql, params, schema)
    if got is None:
        got = read_frame(engine, sql, params, schema=schema)
    return wanted.join(got, on="account_id", how="left").with_columns(
        pl.col("balance").fill_null(0))


def last_entry_id(conn: Connection | Session, account_id: str) -> int:
    """The account's highest ledger entry id (0: none)."""
    from dianfei.ledger import repository

    return repository.last_entry_id(_conn(conn), account_id)


def unreversed_entries(conn: Connection | Session, kind: str,
                       reference_prefix: str) -> list[tuple[int, str, str, int]]:
    """(entry_id, account_id, customer_id, amount) of the not-reversed entries of ``kind`` whose
    reference starts with ``reference_prefix`` (ending in ``:``, e.g. ``LF:{bill}:``)."""
    from dianfei.ledger import repository

    return [(int(r[0]), str(r[1]), str(r[2]), int(r[3]))
            for r in repository.unreversed_entries(_conn(conn), kind, reference_prefix)]


def entry_id_for(conn: Connection | Session, kind: str, reference: str) -> int:
    """The id of the entry of ``kind`` posted for ``reference``."""
    from dianfei.ledger import repository

    found = repository.entry_id_for(_conn(conn), kind, reference)
    if found is None:
        raise NotFoundError(f"no {kind} entry for {reference}")
    return found


def reversal_of(conn: Connection | Session, entry_id: int) -> int | None:
    """The id of the entry that reverses ``entry_id`` (None: not reversed)."""
    from dianfei.ledger import repository

    return repository.reversal_of(_conn(conn), entry_id)


def _conn(conn: Connection | Session) -> Connection:
    return conn.connection() if isinstance(conn, Session) else conn


def entry_count(conn: Connection) -> int:
    """How many ledger entries there are. Entries are only ever appended (a correction is a new
    reversal entry), so while this stays the same no bill, payment or write-off changed: what a
    cache of figures over the ledger is keyed by. A count rather than the highest id, which can
    stay the same while a lower id commits late on PostgreSQL."""
    return int(conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one())
