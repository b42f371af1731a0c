"""``dianfei import payments FILE``: a legacy system's (or a channel's) payment history
(历史缴费导入) posted through the one posting core, as of the moments the customers paid.

payments.csv: payment_id, customer_id, paid_at, amount (yuan), channel, bill_id (optional);
extra columns ignored; CSV UTF-8 or GBK, or Parquet. Every row is accepted, rejected with a reason
(quarantine table and ``FILE.rejected.csv``) or counted as a duplicate of a payment already stored
with the same content: importing the same file again changes nothing.

How a payment is posted (the same planner, ``ledger.Book``, as every channel):
- ``payments`` row: payment_id and transaction id = the file's payment_id, the file's channel,
  ``source`` = ``import``, ``paid_at`` and ``posted_at`` = when the customer paid, so "posted
  since" and every as-of reading see it at its historical time;
- its ledger entry (``posted_at`` = paid_at, business date = its Asia/Shanghai date), clearings
  (``allocated_at`` = paid_at), open-item changes and its ``payment_posted`` event
  (occurred at paid_at);
- a payment naming a ``bill_id`` clears that bill first; the rest — or all of a payment naming
  no bill — goes by the configured allocation rule (``[payments] allocation``); what no debit
  takes is credit, which clears later bills as they are issued.

Time order, never file order: the file's payments are posted in ``paid_at`` order (then
payment_id), and the accounts' stored open bills join the replay at their issue time (00:00 of
issued_on, before a payment of the same instant), so a payment never clears a bill that was not
yet issued when it was paid — it becomes credit, which meets that bill when it is issued, with
the clearing dated then. A payment naming a bill issued after it was paid (legacy systems record
prepayments against the coming bill) clears that bill at paid_at all the same. The result does
not depend on the order of the file's rows. History is replayed against what is stored: import
bills first, then their payments; payments older than payments already posted for the account
are allocated against what is still open then (documented in docs/history-import.md).

Rules (each a rejection reason): amount a positive decimal with at most 2 places; paid_at an
instant (an offset is optional here: legacy exports write local time, read as Asia/Shanghai; a
bare date is 00:00 of that day); channel text up to 12 characters (stored lower-case); the
customer must exist; a named bill must exist, be the same customer's and not be cancelled; the
same payment_id again: same content → duplicate, other content → ``conflicts_with_stored`` /
``conflicts_within_file`` (the first line wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from dianfei.core.clock import Clock, start_of_day
from dianfei.metering import service as metering

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

COLUMNS = ("payment_id", "customer_id", "paid_at", "amount", "channel", "bill_id")
OPTIONAL = ("bill_id",)
SOURCE = "import"
#: payments posted per written slice of the replay (bounded memory for any file size)
SLICE = 50_000


def import_payments(db: Database, path: Path, *, clock: Clock, encoding: str = "utf-8",
                    chunk_bytes: int = 32 << 20) -> metering.IngestResult:
    """Import a payments.csv (or .parquet) history file; see the module docstring."""

    def make(conn: Connection, batch_id: str, sink: metering.RejectSink) -> PaymentsLoader:
        return PaymentsLoader(conn, sink, clock)

    return metering.import_table_file(db, "payments", path, required=COLUMNS,
                                      optional=OPTIONAL, make_loader=make, clock=clock,
                                      encoding=encoding, chunk_bytes=chunk_bytes)


def parse_payments(chunk: pl.DataFrame) -> pl.DataFrame:
    """Column checks of a chunk of payments.csv: each bad row gets its reason; good rows get
    ``_paid_at`` (UTC), ``_amount`` (fen), ``_channel`` and ``_bill`` (null when none named)."""
    import polars as pl

    dtype = chunk.schema["paid_at"]
    if isinstance(dtype, pl.Datetime):  # a typed Parquet column: its instant, or local time
        fmt = "%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else "")
        chunk = chunk.with_columns(pl.col("paid_at").dt.strftime(fmt))
    f = metering.start_reasons(metering.as_text(chunk))
    f = metering.require_text(f, "payment_id", max_len=40)
    f = metering.require_text(f, "customer_id", max_len=32)
    f = metering.require_text(f, "channel", max_len=12)
    f = f.with_columns(pl.col("channel").fill_null("").str.to_lowercase().alias("_channel"),
                       pl.col("bill_id").fill_null("").alias("_bill"))
    f = f.with_columns(pl.col("_bill").replace("", None))
    f = metering.flag(f, pl.col("_bill").str.len_chars() > 64, "value_too_long",
                      pl.lit("bill_id is longer than 64 characters: ") + metering.quoted("bill_id"))
    # legacy exports write local time: no offset means Asia/Shanghai, a bare date its midnight
    text = pl.col("paid_at").fill_null("").str.strip_chars()
    local = (pl.when(text.str.contains(r"^[0-9]{4}[-/][0-9]{2}[-/][0-9]{2}$"))
             .then(text + pl.lit("T00:00:00+08:00"))
             .when(text.str.contains(r"^[0-9]{4}[-/][0-9]{2}[-/][0-9]{2}[T ][0-9:.]+$"))
             .then(text + pl.lit("+08:00")).otherwise(text))
    f = f.with_columns(local.alias("_paid_text"))
    f = metering.parse_instants(f, "_paid_text", "_paid_at")
    f = metering.parse_decimal_units(f, "amount", "_amount", places=2, max_int_digits=12,
                                     allow_negative=True)
    return metering.flag(f, pl.col("_amount") <= 0, "non_positive_amount",
                         pl.lit("a payment must be more than 0.00 (refunds are not imported): ")
                         + metering.quoted("amount"))


@dataclass
class PaymentsLoader:
    """Checks every chunk as columns and keeps the good rows; :meth:`finish` settles what needs
    the whole file (the same payment twice) and replays the payments in time order."""

    conn: Connection
    sink: metering.RejectSink
    clock: Clock
    counts: metering.Counts = field(default_factory=metering.Counts)
    _good: list[pl.DataFrame] = field(default_factory=list)
    _cols: list[str] = field(default_factory=list)

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        from dianfei.billing.service import bills_by_id
        from dianfei.customers.service import accounts_of_customers

        r = metering.REASON
        f = parse_payments(chunk)
        ok = f.filter(pl.col(r).is_null())
        accounts = accounts_of_customers(self.conn, ok["customer_id"].unique().to_list())
        f = f.with_columns(pl.col("customer_id").replace_strict(
            accounts, default=None, return_dtype=pl.String).alias("_account"))
        f = metering.flag(f, pl.col("_account").is_null(), "unknown_customer",
                          pl.lit("no customer ") + metering.quoted("customer_id")
                          + pl.lit(" (import customers.csv first)"))
        named = f.filter(pl.col(r).is_null() & pl.col("_bill").is_not_null())["_bill"]
        bills = bills_by_id(self.conn, named.unique().to_list()).select(
            pl.col("bill_id").alias("_bill"), pl.col("customer_id").alias("_bill_customer"),
            pl.col("status").alias("_bill_status"))
        f = f.join(bills, on="_bill", how="left", maintain_order="left")
        has_bill = pl.col("_bill").is_not_null()
        f = metering.flag(f, has_bill & pl.col("_bill_customer").is_null(), "unknown_bill",
                          pl.lit("no bill ") + metering.quoted("bill_id")
                          + pl.lit(" (import bills.csv first)"))
        f = metering.flag(f, has_bill & (pl.col("_bill_customer") != pl.col("customer_id")),
                          "bill_of_other_customer",
                          pl.lit("bill ") + pl.col("_bill") + pl.lit(" is customer ")
                          + pl.col("_bill_customer") + pl.lit("'s, not ")
                          + pl.col("customer_id") + pl.lit("'s"))
        f = metering.flag(f, has_bill & (pl.col("_bill_status") == "cancelled"),
                          "bill_cancelled", pl.lit("bill ") + pl.col("_bill")
                          + pl.lit(" is cancelled"))
        self._cols = metering.rejected_columns(chunk)
        bad = f.filter(pl.col(r).is_not_null()).select(self._cols)
        self.sink.add(bad)
        self.counts.add(bad.height, 0, bad.height, 0)
        self._good.append(f.filter(pl.col(r).is_null()).select(
            *self._cols, "_account", "_paid_at", "_amount", "_channel", "_bill"))

    def finish(self) -> None:
        import polars as pl

        if not self._good:
            return
        rows = pl.concat(self._good, how="vertical_relaxed").sort(metering.LINE)
        self._good = []
        n = rows.height
        line = metering.LINE
        rows = rows.with_columns(
            pl.col(line).first().over("payment_id").alias("_first"),
            pl.struct("customer_id", pl.col("_paid_at").alias("paid_at"),
                      pl.col("_amount").alias("amount"), pl.col("_channel").alias("channel"),
                      pl.col("_bill").alias("bill_id")).alias("_content"))
        firsts = rows.filter(pl.col(line) == pl.col("_first")).select(
            "payment_id", pl.col("_content").alias("_first_content"))
        later = rows.filter(pl.col(line) != pl.col("_first")).join(
            firsts, on="payment_id", how="left")
        same_later = later.filter(pl.col("_content") == pl.col("_first_content"))
        rejected = [_reject(later.filter(pl.col("_content") != pl.col("_first_content")),
                            "conflicts_within_file",
                            pl.lit("line ") + pl.col("_first").cast(pl.String)
                            + pl.lit(" of this file has other data for payment ")
                            + pl.col("payment_id"))]
        rows = rows.filter(pl.col(line) == pl.col("_first"))
        from dianfei.payments.repository import stored_payments

        stored = stored_payments(self.conn, rows["payment_id"].to_list()).select(
            "payment_id", pl.struct(
                "customer_id", "paid_at", "amount", "channel",
                pl.lit(None, pl.String).alias("bill_id")).alias("_stored"))
        rows = rows.join(stored, on="payment_id", how="left")
        known = rows.filter(pl.col("_stored").is_not_null())
        # the stored payment keeps no bill_id: compared on what it keeps
        same = (pl.col("_stored").struct.field("customer_id") == pl.col("customer_id")) & (
            pl.col("_stored").struct.field("paid_at") == pl.col("_paid_at")) & (
            pl.col("_stored").struct.field("amount") == pl.col("_amount")) & (
            pl.col("_stored").struct.field("channel") == pl.col("_channel"))
        same_stored = known.filter(same)
        rejected.append(_reject(known.filter(~same), "conflicts_with_stored",
                                pl.lit("payment ") + pl.col("payment_id")
                                + pl.lit(" is stored with other data")))
        rows = rows.filter(pl.col("_stored").is_null())
        rej = pl.concat([x.select(self._cols) for x in rejected], how="vertical_relaxed")
        self.sink.add(rej)
        post_history(self.conn, rows, clock=self.clock)
        self.counts.add(n, rows.height, rej.height, same_later.height + same_stored.height)


def _reject(rows: pl.DataFrame, reason: str, detail: pl.Expr) -> pl.DataFrame:
    import polars as pl

    return rows.with_columns(pl.lit(reason).alias(metering.REASON),
                             detail.alias(metering.DETAIL))


def _visible_at(item: Any, issued: dict[str, date]) -> datetime | None:
    """When a stored open item came into being: a bill at 00:00 of its issue date, a late fee at
    00:00 of the day in its reference (``LF:{bill}:{day}``); None for credit and anything else
    (there from the start)."""
    if item.item_kind == "bill" and item.reference in issued:
        return start_of_day(issued[item.reference])
    if item.item_kind == "late_fee":
        try:
            return start_of_day(date.fromisoformat(item.reference.rsplit(":", 1)[1]))
        except ValueError:
            return None
    return None


def post_history(conn: Connection, rows: pl.DataFrame, *, clock: Clock,
                 order: str | None = None) -> int:
    """Write checked payments (payment_id, customer_id, _account, _paid_at, _amount, _channel,
    _bill) and replay them with the accounts' open items in time order through the posting
    core; see the module docstring."""
    import polars as pl

    from dianfei.billing.service import bills_by_id
    from dianfei.db.bulk import write_frame
    from dianfei.ledger import service as ledger

    if rows.height == 0:
        return 0
    pays = rows.sort("_paid_at", "payment_id").select(
        "payment_id", pl.col("_channel").alias("channel"),
        pl.col("payment_id").alias("transaction_id"), pl.lit(None, pl.String).alias("order_no"),
        pl.col("_account").alias("account_id"), "customer_id", pl.col("_amount").alias("amount"),
        pl.col("_paid_at").alias("paid_at"),
        pl.col("_paid_at").dt.convert_time_zone("Asia/Shanghai").dt.date()
        .alias("business_date"),
        pl.col("_paid_at").alias("posted_at"), pl.lit(SOURCE).alias("source"),
        pl.lit("posted").alias("status"), pl.col("_bill").alias("bill_id"))
    write_frame(conn, "payments", pays.drop("bill_id"))

    accounts = pays["account_id"].unique().sort().to_list()
    stored = ledger.load_items(conn, accounts, lock=True)
    bill_refs = [i.reference for i in stored if i.item_kind == "bill"]
    named = pays["bill_id"].drop_nulls().unique().to_list()
    facts = bills_by_id(conn, sorted(set(bill_refs) | set(named)))
    issued = dict(zip(facts["bill_id"].to_list(), facts["issued_on"].cast(pl.Date).to_list(),
                      strict=True))
    first = pays["paid_at"][0]
    start: list[Any] = []
    # (instant, 0 = an item is issued / 1 = a payment, tie-break, what)
    timeline: list[tuple[datetime, int, str, Any]] = []
    for it in stored:
        at = _visible_at(it, issued)
        if at is None or at <= first:
            start.append(it)
        else:
            timeline.append((at, 0, it.reference, it))
    hidden = {t[2]: t[3] for t in timeline}
    for rec in pays.select("paid_at", "payment_id", "account_id", "customer_id", "amount",
                           "channel", "bill_id").iter_rows():
        timeline.append((rec[0], 1, rec[1], rec))
    timeline.sort(key=lambda t: (t[0], t[1], t[2]))
    book = ledger.Book(start, order=ledger.configured_order(conn) if order is None else order,
                       now=first)
    now = clock.now()
    done = 0
    for at, kind, key, what in timeline:
        book.now = at
        if kind == 0:
            if hidden.pop(key, None) is not None:
                book.admit(what)
            continue
        paid_at, pid, acct, cust, fen, channel, bill = what
        if bill is not None and bill in hidden:
            book.admit(hidden.pop(bill))  # named before it was issued: the payer said so
        book.pay(payment_id=pid, account_id=acct, customer_id=cust, amount=fen,
                 paid_at=paid_at, reason=f"{channel} {pid} (history import)",
                 payload={"channel": channel, "source": SOURCE}, settle=bill)
        done += 1
        if done % SLICE == 0:
            ledger.write_posting(conn, book.take_posting(), now=now)
    ledger.write_posting(conn, book.take_posting(), now=now)
    return pays.height
