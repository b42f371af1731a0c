"""What every part of a day of collections shares: the run's :class:`Context`, its
:class:`DayReport`, the ``collection_events`` frame helpers and the notice context of an account
in arrears. Every collections module takes these from here; none imports another's private
names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.ladder import Ladder
    from dianfei.collections.notices import Notice, Notifier
    from dianfei.collections.rules import Policy
    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database
    from dianfei.metering.service import RemoteSwitch

PAY_CHANNELS = "支付宝 Alipay, 微信 WeChat Pay, 营业厅 service counter, 银行代扣 bank debit"


def event_schema() -> Any:
    """The columns of a ``collection_events`` frame, typed."""
    import polars as pl

    return {"key": pl.String, "account_id": pl.String, "customer_id": pl.String, "type": pl.String,
            "at": pl.Datetime("us", "UTC"), "business_date": pl.Date, "amount": pl.Int64,
            "balance_after": pl.Int64, "level": pl.String, "notice": pl.String,
            "channel": pl.String, "bill_id": pl.String, "detail": pl.String}


def event_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Event rows (dicts, missing columns null) as a typed ``collection_events`` frame."""
    import polars as pl

    schema = event_schema()
    full = [{k: r.get(k) for k in schema} for r in rows]
    return pl.DataFrame(full, schema=schema)


def write_events(conn: Any, frame: pl.DataFrame) -> int:
    """Append a ``collection_events`` frame in the caller's transaction."""
    from dianfei.db.bulk import write_frame

    return write_frame(conn, "collection_events", frame)


@dataclass
class DayReport:
    day: date
    payments: int = 0
    late_fees: int = 0
    late_fee_amount: int = 0
    overdue_accounts: int = 0
    dunning_changes: int = 0
    notices: int = 0
    tasks: int = 0
    stop_notices: int = 0
    suspension_orders: int = 0
    suspended: int = 0
    reconnected: int = 0
    plans_broken: int = 0
    promises_kept: int = 0
    promises_broken: int = 0
    tickets_escalated: int = 0
    prepay_accounts: int = 0
    prepay_unrated: int = 0
    #: prepaid accounts whose reads claim more than the meter can register (not evaluated)
    prepay_implausible: list[str] = field(default_factory=list)
    prepay_warnings: int = 0
    prepay_cutoff_notices: int = 0
    #: accounts on the day's collector worklists (collections.worklist)
    worklist_accounts: int = 0
    #: collector operations (C): ratings, contact flags, tasks routed and escalated
    operations: dict[str, int] = field(default_factory=dict)
    #: the accounts in arrears by risk segment: {segment: {"accounts": n, "arrears": fen}}
    segments: dict[str, dict[str, int]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: seconds of the reads made on the second core meanwhile (not part of ``timings``' sum:
    #: the main thread's wait for each is its step's timing)
    background: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("timings", "late_fee_amount")}
        out["day"] = self.day.isoformat()
        out["late_fee_amount"] = fmt_yuan(self.late_fee_amount)
        out["segments"] = {k: {"accounts": v["accounts"], "arrears": fmt_yuan(v["arrears"])}
                           for k, v in self.segments.items()}
        out["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        out["background"] = {k: round(v, 3) for k, v in self.background.items()}
        return out


@dataclass
class Context:
    """What one run needs, passed along instead of globals."""

    db: Database
    day: date
    clock: Clock
    policy: Policy
    ladders: list[Ladder]
    notifier: Notifier
    switch: RemoteSwitch | None
    report: DayReport
    notices: list[Notice] = field(default_factory=list)
    #: the accounts the day works on (those with an overdue item); None: every open account
    accounts: list[str] | None = None
    _customers: Any = None
    _late_history: Any = None
    _history_read: set[str] = field(default_factory=set)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def customers(self) -> pl.DataFrame:
        """The customer facts (customers service) of the day's accounts, read once per run —
        without their names: a name is free text, read a row at a time (a second for the
        100,000 accounts in arrears at a million), and only the accounts the day writes a
        notice to need one (:meth:`with_names`)."""
        if self._customers is None:
            from dianfei.customers.service import open_account_facts

            self._customers = open_account_facts(self.db.engine, self.accounts, names=False)
        return self._customers  # type: ignore[no-any-return]

    def with_names(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` (with customer_id) with each customer's ``name`` for a notice's greeting,
        read for these rows only; a frame that has its names already is returned as it is."""
        import polars as pl

        if "name" in frame.columns:
            return frame
        from dianfei.customers.service import customer_names

        with self.db.engine.connect() as conn:
            names = customer_names(conn, frame["customer_id"].unique().to_list())
        return frame.with_columns(pl.col("customer_id").replace_strict(
            names, default=None, return_dtype=pl.String).alias("name"))

    def late_history(self, accounts: Sequence[str]) -> pl.DataFrame:
        """The last 365 days' late-payment history (the risk features) of ``accounts``, each
        read once per run through the account index: the snapshot and the worklists score from
        it. Only the accounts a step works on are read (was: the whole book's year of accruals
        grouped every day, a read that grew with the book and its history); an account with no
        late bill has no row, as before."""
        import polars as pl

        from dianfei.collections.repository import late_history_of, late_history_schema
        from dianfei.collections.segments import HISTORY_DAYS, RECENT_DAYS

        missing = sorted(set(accounts) - self._history_read)
        if missing:
            # late_recent: the segment rules' recent months (collections.segments); bills due
            # before the day, the only ones that can have accrued a fee by now
            got = late_history_of(self.db.engine, missing, self.day - timedelta(days=HISTORY_DAYS),
                                  self.day - timedelta(days=RECENT_DAYS), self.day)
            self._late_history = (got if self._late_history is None
                                  else pl.concat([self._late_history, got]))
            self._history_read.update(missing)
        if self._late_history is None:  # nothing asked yet
            return pl.DataFrame(schema=late_history_schema())
        wanted = pl.Series(list(accounts), dtype=pl.String).implode()
        return self._late_history.filter(  # type: ignore[no-any-return]
            pl.col("account_id").is_in(wanted))


def arrears_context(row: Mapping[str, Any]) -> dict[str, str]:
    """The template context of a notice to an account in arrears (a snapshot row)."""
    return {"customer_name": str(row.get("name") or ""), "account_id": str(row["account_id"]),
            "amount_due": fmt_yuan(int(row.get("amount_overdue") or 0)),
            "due_on": str(row.get("oldest_due") or ""), "bill_id": str(row.get("oldest_bill") or ""),
            "bill_link": f"/portal/bills/{row.get('oldest_bill') or ''}",
            "balance": fmt_yuan(int(row.get("open_total") or 0)), "pay_channels": PAY_CHANNELS,
            "stop_on": str(row.get("stop_on") or "")}
