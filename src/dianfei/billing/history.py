"""``dianfei import bills FILE``: a legacy system's bill history (历史账单导入) into bills and the
ledger, indistinguishable from bills the bill run issued.

bills.csv: bill_id, customer_id, period (YYYY-MM), issued_on, due_on, amount (yuan), kwh
(extra columns ignored; CSV UTF-8 or GBK, or Parquet). Every row is accepted, rejected with a
reason (quarantine table and ``FILE.rejected.csv``) or counted as a duplicate of a bill already
stored with the same content, so importing the same file again changes nothing.

An imported bill is a ``bills`` row (status issued, no run, no meter: ``tariff_id`` ``legacy``)
with one line carrying its amount (so a bill's amount is still the sum of its lines), and a
``bill`` ledger debit posted *as of its issue date*: ``business_date`` = issued_on, ``posted_at``
= 00:00 of issued_on (Asia/Shanghai), with its open item — through the ledger's bulk debit path
(``ledger.post_frame``), the one the bill run uses. Bills are posted one issue day after another,
oldest first, so credit an account already holds meets them at their issue time, as it would
have met native bills. Import bills before the payments that pay them.

Rules (each a rejection reason):
- amount and kwh are decimals with at most 2 places, never negative (a 0.00 bill is fine);
- due_on must not be before issued_on (``due_before_issue``);
- the customer must exist (``unknown_customer``: import customers.csv first); no meter needed;
- one live bill per customer and period, as for native bills: a period the customer already has
  a bill for, under another bill id (native or imported), is ``period_already_billed``;
- the same bill id again: same content → duplicate; other content → ``conflicts_with_stored`` or,
  within the file, ``conflicts_within_file`` (the first line wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from dianfei.core.clock import Clock
from dianfei.metering import service as metering

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

COLUMNS = ("bill_id", "customer_id", "period", "issued_on", "due_on", "amount", "kwh")
#: what an imported bill carries where a native one names its tariff
LEGACY_TARIFF = "legacy"
LINE_CODE = "legacy_bill"
LINE_TEXT = "历史账单 (legacy bill, imported)"


def import_bills(db: Database, path: Path, *, clock: Clock, encoding: str = "utf-8",
                 chunk_bytes: int = 32 << 20) -> metering.IngestResult:
    """Import a bills.csv (or .parquet) history file; see the module docstring."""

    def make(conn: Connection, batch_id: str, sink: metering.RejectSink) -> BillsLoader:
        return BillsLoader(conn, sink)

    return metering.import_table_file(db, "bills", path, required=COLUMNS, make_loader=make,
                                      clock=clock, encoding=encoding, chunk_bytes=chunk_bytes)


def parse_bills(chunk: pl.DataFrame) -> pl.DataFrame:
    """Column checks of a chunk of bills.csv: each bad row gets its reason; good rows get
    ``_period``, ``_issued_on``, ``_due_on``, ``_amount`` (fen) and ``_kwh`` (0.01 kWh)."""
    import polars as pl

    f = metering.start_reasons(metering.as_text(chunk))
    f = metering.require_text(f, "bill_id", max_len=64)
    f = metering.require_text(f, "customer_id", max_len=32)
    period = pl.col("period").fill_null("").str.replace("/", "-", literal=True)
    f = f.with_columns(period.str.replace(r"^([0-9]{4})-([1-9])$", "${1}-0${2}")
                       .alias("_period"))
    f = metering.flag(f, ~pl.col("_period").str.contains(r"^[0-9]{4}-(0[1-9]|1[0-2])$"),
                      "bad_period", pl.lit("period is not YYYY-MM: ") + metering.quoted("period"))
    f = metering.flag_date(f, "issued_on")
    f = metering.flag_date(f, "due_on")
    f = metering.flag(f, pl.col("_due_on") < pl.col("_issued_on"), "due_before_issue",
                      pl.lit("due_on ") + pl.col("due_on") + pl.lit(" is before issued_on ")
                      + pl.col("issued_on"))
    f = metering.parse_decimal_units(f, "amount", "_amount", places=2, max_int_digits=12,
                                     allow_negative=False)
    f = metering.parse_decimal_units(f, "kwh", "_kwh", places=2, max_int_digits=12,
                                     allow_negative=False)
    return f


@dataclass
class BillsLoader:
    """Checks every chunk as columns and keeps the good rows; :meth:`finish` settles what needs
    the whole file (the same bill twice, one bill per customer and period) and posts the bills
    in issue order."""

    conn: Connection
    sink: metering.RejectSink
    counts: metering.Counts = field(default_factory=metering.Counts)
    _good: list[pl.DataFrame] = field(default_factory=list)
    _cols: list[str] = field(default_factory=list)

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        from dianfei.customers.service import accounts_of_customers

        r = metering.REASON
        f = parse_bills(chunk)
        ids = f.filter(pl.col(r).is_null())["customer_id"].unique().to_list()
        accounts = accounts_of_customers(self.conn, ids)
        f = f.with_columns(pl.col("customer_id").replace_strict(
            accounts, default=None, return_dtype=pl.String).alias("_account"))
        f = metering.flag(f, pl.col("_account").is_null(), "unknown_customer",
                          pl.lit("no customer ") + metering.quoted("customer_id")
                          + pl.lit(" (import customers.csv first)"))
        self._cols = metering.rejected_columns(chunk)
        bad = f.filter(pl.col(r).is_not_null()).select(self._cols)
        self.sink.add(bad)
        self.counts.add(bad.height, 0, bad.height, 0)
        self._good.append(f.filter(pl.col(r).is_null()).select(
            *self._cols, "_account", "_period", "_issued_on", "_due_on", "_amount", "_kwh"))

    def finish(self) -> None:
        import polars as pl

        if not self._good:
            return
        good = pl.concat(self._good, how="vertical_relaxed").sort(metering.LINE)
        self._good = []
        n = good.height
        rows = good
        rejected: list[pl.DataFrame] = []
        # the same bill id twice in the file: the first line wins
        rows = rows.with_columns(pl.col(metering.LINE).first().over("bill_id").alias("_first"),
                                 pl.struct(*_key_exprs()).alias("_content"))
        first_content = rows.filter(pl.col(metering.LINE) == pl.col("_first")).select(
            "bill_id", pl.col("_content").alias("_first_content"))
        later = rows.filter(pl.col(metering.LINE) != pl.col("_first")).join(
            first_content, on="bill_id", how="left")
        same_later = later.filter(pl.col("_content") == pl.col("_first_content"))
        rejected.append(_reject(later.filter(pl.col("_content") != pl.col("_first_content")),
                                "conflicts_within_file",
                                pl.lit("line ") + pl.col("_first").cast(pl.String)
                                + pl.lit(" of this file has other data for bill ")
                                + pl.col("bill_id")))
        rows = rows.filter(pl.col(metering.LINE) == pl.col("_first"))
        # bills already stored under the same id: duplicate or conflict
        from dianfei.billing.repository import bill_facts

        stored = bill_facts(self.conn, "bill_id", rows["bill_id"].to_list())
        stored = stored.select("bill_id", pl.struct(
            pl.col("customer_id"), pl.col("period"), pl.col("issued_on").cast(pl.Date),
            pl.col("due_on").cast(pl.Date), pl.col("amount"), pl.col("kwh")).alias("_stored"))
        rows = rows.join(stored, on="bill_id", how="left")
        known = rows.filter(pl.col("_stored").is_not_null())
        same_stored = known.filter(pl.col("_stored") == pl.col("_content"))
        rejected.append(_reject(known.filter(pl.col("_stored") != pl.col("_content")),
                                "conflicts_with_stored",
                                pl.lit("bill ") + pl.col("bill_id")
                                + pl.lit(" is stored with other data")))
        rows = rows.filter(pl.col("_stored").is_null())
        # one live bill per customer (account) and period: stored ones, then the file's first
        live = bill_facts(self.conn, "account_id", rows["_account"].unique().to_list()).filter(
            pl.col("status") != "cancelled").select(
            pl.col("account_id").alias("_account"), pl.col("period").alias("_period"),
            pl.col("bill_id").alias("_live_bill"))
        rows = rows.join(live, on=["_account", "_period"], how="left")
        rejected.append(_reject(rows.filter(pl.col("_live_bill").is_not_null()),
                                "period_already_billed",
                                pl.lit("customer ") + pl.col("customer_id")
                                + pl.lit(" already has bill ") + pl.col("_live_bill")
                                + pl.lit(" for ") + pl.col("_period")))
        rows = rows.filter(pl.col("_live_bill").is_null())
        rows = rows.with_columns(pl.col(metering.LINE).first().over("_account", "_period")
                                 .alias("_first_period"))
        twice = rows.filter(pl.col(metering.LINE) != pl.col("_first_period"))
        rejected.append(_reject(twice, "period_already_billed",
                                pl.lit("line ") + pl.col("_first_period").cast(pl.String)
                                + pl.lit(" of this file bills customer ") + pl.col("customer_id")
                                + pl.lit(" for ") + pl.col("_period") + pl.lit(" already")))
        rows = rows.filter(pl.col(metering.LINE) == pl.col("_first_period"))
        rej = pl.concat([x.select(self._cols) for x in rejected], how="vertical_relaxed")
        self.sink.add(rej)
        post_bills(self.conn, rows)
        self.counts.add(n, rows.height, rej.height, same_later.height + same_stored.height)


def _key_exprs() -> list[pl.Expr]:
    import polars as pl

    return [pl.col("customer_id"), pl.col("_period").alias("period"),
            pl.col("_issued_on").alias("issued_on"), pl.col("_due_on").alias("due_on"),
            pl.col("_amount").alias("amount"), pl.col("_kwh").alias("kwh")]


def _reject(rows: pl.DataFrame, reason: str, detail: pl.Expr) -> pl.DataFrame:
    import polars as pl

    return rows.with_columns(pl.lit(reason).alias(metering.REASON),
                             detail.alias(metering.DETAIL))


def post_bills(conn: Connection, rows: pl.DataFrame) -> int:
    """Write checked bills (bill_id, customer_id, _account, _period, _issued_on, _due_on,
    _amount, _kwh) with their line and post their debits as of their issue dates, one issue day
    at a time, oldest first (so credit meets each at its issue time)."""
    import polars as pl

    from dianfei.core.clock import start_of_day
    from dianfei.db.bulk import write_frame
    from dianfei.ledger import service as ledger

    if rows.height == 0:
        return 0
    bills = rows.sort("_issued_on", "bill_id").select(
        "bill_id", pl.col("_account").alias("account_id"), "customer_id",
        pl.col("_period").alias("period"), pl.lit(1, pl.Int32).alias("version"),
        pl.lit(None, pl.String).alias("run_id"), pl.col("_issued_on").alias("issued_on"),
        pl.col("_due_on").alias("due_on"), pl.col("_amount").alias("amount"),
        pl.col("_kwh").alias("kwh"), pl.lit(LEGACY_TARIFF).alias("tariff_id"),
        pl.lit("").alias("tariff_version"), pl.lit(False).alias("estimated"),
        pl.lit(None, pl.String).alias("meter_id"), pl.lit(1, pl.Int32).alias("multiplier"),
        pl.lit("issued").alias("status"))
    # one line: 1 bill × the amount (unit price in 0.0001 yuan), so amount = sum of lines
    lines = bills.select(
        "bill_id", pl.lit(1, pl.Int32).alias("line_no"), pl.lit(LINE_CODE).alias("code"),
        pl.lit(LINE_TEXT).alias("description"), pl.lit(100, pl.Int64).alias("quantity"),
        pl.lit("bill").alias("unit"), (pl.col("amount") * 100).alias("unit_price"), "amount")
    write_frame(conn, "bills", bills)
    write_frame(conn, "bill_lines", lines)
    # bills of the same year issued after these were rated on a year without them (they keep no
    # year to date themselves: ytd_kwh null, so the next bill run sums their year)
    from dianfei.billing.repository import stale_year_to_date
    from dianfei.core.clock import Period

    for period, accounts in bills.group_by("period").agg("account_id").iter_rows():
        stale_year_to_date(conn, accounts, Period.parse(period))
    days = bills["issued_on"].unique().sort().to_list()
    stamps = {d: start_of_day(d) for d in days}
    entries = bills.select(
        "account_id", "customer_id", pl.lit("bill").alias("kind"), "amount",
        pl.col("issued_on").replace_strict(stamps, return_dtype=pl.Datetime("us", "UTC"))
        .alias("posted_at"), pl.col("issued_on").alias("business_date"), "due_on",
        pl.col("bill_id").alias("reference"), "period")  # the open items' period
    for day, part in entries.group_by("business_date", maintain_order=True):
        del day
        ledger.post_frame(conn, part)
    return bills.height
