"""``dianfei demo``: a synthetic county utility run through its monthly cycle.

Each simulated month: the meters' monthly frozen reads arrive at 00:00 on the 1st, and the bill
run is issued two days later at 09:00 (抄表 → 核算 → 发行). Later modules add payments and the
daily collections loop to the same calendar. Running the demo again on the same database with
the same parameters resumes where it stopped: loaded data is kept and bill runs are idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text

from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period, start_of_day
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_qty, fmt_yuan
from dianfei.db.engine import Database
from dianfei.db.pii import cipher_for

if TYPE_CHECKING:
    import polars as pl

DEMO_START = Period(2025, 1)
#: the simulator's channel names → payment channels
SIM_CHANNELS = {"counter": "counter", "bank_withholding": "bank", "alipay": "alipay",
                "wechatpay": "wechatpay", "online_banking": "online", "post_office": "post"}
#: days after the end of a period when the bill run issues its bills
ISSUE_DELAY = timedelta(days=2)
#: the day of the month of the closure review (销户): the day after the issue day, when the
#: month before is billed (its bill is settled with the rest)
REVIEW_DAY = 2 + ISSUE_DELAY.days


def _marker(db: Database) -> dict[str, Any] | None:
    path = db.settings.data_dir / "demo.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_demo(db: Database, *, customers: int, months: int, seed: int,
             show_progress: bool = False, collections: bool = True,
             backend: str = "local") -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dianfei import sim
    from dianfei.billing.service import run_bill_run
    from dianfei.customers.models import Customer
    from dianfei.customers.service import load_population
    from dianfei.metering.models import RegisterRead
    from dianfei.metering.service import store_reads

    bill_backend = None
    if backend == "spark":  # started (or refused) before anything is built
        from dianfei.scale.billing import spark_backend

        bill_backend = spark_backend(db.settings)
    elif backend != "local":
        raise ValidationError(f"backend must be local or spark, got {backend!r}")
    params = {"customers": customers, "seed": seed, "start": str(DEMO_START)}
    with db.engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(Customer)).scalar_one()
    marker = _marker(db)
    if existing and (marker is None or marker != params):
        raise ValidationError(
            f"the database already holds {existing} customers that are not this demo's "
            f"({params}); point DIANFEI_DATABASE_URL and DIANFEI_DATA_DIR elsewhere "
            "or remove var/ to start afresh")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        disable=not show_progress)
    from contextlib import nullcontext

    from dianfei.db.checkpoint import checkpointer_for

    # two years of days commit hundreds of times a simulated month: the embedded database's WAL
    # is copied back into its file on the second core, not inside those commits (db/checkpoint.py)
    with progress, (checkpointer_for(db.engine) or nullcontext()):
        t = progress.add_task("building the utility", total=1)
        utility = sim.build_utility(customers, seed=seed, start=DEMO_START)
        progress.update(t, completed=1)
        if not existing:
            cipher = cipher_for(db)
            with db.engine.begin() as conn:
                load_population(conn, cipher, regions=utility.regions, stations=utility.stations,
                                collectors=utility.collectors, customers=utility.customers,
                                meters=utility.meters)
                store_reads(conn, sim.opening_reads(utility))
            (db.settings.data_dir / "demo.json").write_text(json.dumps(params))
        t = progress.add_task("monthly cycle", total=months)
        period = DEMO_START
        pending: list[pl.DataFrame] = []
        for _ in range(months):
            at = start_of_day(period.end_date)
            with db.engine.begin() as conn:
                have = conn.execute(select(func.count()).select_from(RegisterRead)
                                    .where(RegisterRead.read_at == at)).scalar_one()
                if not have:
                    store_reads(conn, metered(db, utility, sim.monthly_reads(utility, period)))
            issue_at = datetime.combine(period.end_date + ISSUE_DELAY, time(9),
                                        tzinfo=BUSINESS_TZ)
            # credit from overpayments clears the new bills inside the bill run's posting
            run_bill_run(db, period, FixedClock(issue_at), backend=bill_backend)
            pending.append(_payments_for(db, utility, period))
            next_issue = (period.next().end_date + ISSUE_DELAY)
            label = f"monthly cycle {period}"

            def show(day: date, label: str = label) -> None:
                progress.update(t, description=f"{label} · day {day}")

            pending = _run_days(db, pending, issue_at.date(), next_issue,
                                collections=collections, utility=utility, on_day=show)
            progress.update(t, advance=1, description=f"monthly cycle {period}")
            period = period.next()
    last = period.prev()
    # what a bill run's follow-up jobs store: the dashboard the console opens on, and the
    # forecast the latest bills show
    _follow_ups(db, last)
    return _summary(db, DEMO_START, last)


def _follow_ups(db: Database, last: Period) -> None:
    from dianfei.billing.service import latest_billed_period
    from dianfei.reporting.dashboard import refresh
    from dianfei.risk.service import store_forecasts

    if latest_billed_period(db.engine) != str(last):
        return  # nothing billed (every read on the exceptions list): nothing to show
    as_of = last.next().end_date + ISSUE_DELAY - timedelta(days=1)
    clock = FixedClock(datetime.combine(as_of, time(23), tzinfo=BUSINESS_TZ))
    refresh(db, clock=clock, period=last, as_of=as_of)
    store_forecasts(db, last.next(), clock=clock)


def _payments_for(db: Database, utility: Any, period: Period) -> pl.DataFrame:
    """When and how the synthetic customers pay this period's bills (sim behaviour)."""
    import polars as pl

    from dianfei import sim
    from dianfei.billing.service import bills_between

    # through billing's service, in bill order (the simulated customers' draws follow it)
    bills = (bills_between(db.engine, str(period), str(period))
             .filter((pl.col("status") == "issued") & (pl.col("amount") > 0))
             .select("bill_id", "customer_id", "amount", "due_on").sort("bill_id"))
    paid = sim.payment_day_offsets(utility, period, bills).filter(pl.col("paid_on").is_not_null()
                                                                & (pl.col("paid_amount") > 0))
    return paid.select(
        pl.col("paid_on"),
        pl.col("channel").replace_strict(SIM_CHANNELS, return_dtype=pl.String).alias("channel"),
        ("DEMO-" + pl.col("bill_id")).alias("transaction_id"),
        pl.col("customer_id").alias("account_id"),
        pl.col("paid_amount").cast(pl.Int64).alias("amount"),
        (pl.col("paid_amount") >= pl.col("amount")).alias("in_full"))


class SpoolSender:
    """The demo's notice channel: each message appended to ``{data_dir}/spool/{channel}.jsonl``
    (there is no SMS gateway or mail server in a demo; the outbox, quiet hours, rate limits and
    delivery records are the real ones)."""

    idempotent = False

    def __init__(self, channel: str, root: Path) -> None:
        import threading

        self.channel = channel
        self.path = root / f"{channel}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one handle for the run, not an open() per notice: the dispatcher sends a batch from
        # several threads, and two years of a county's notices are a quarter of a million opens
        self._lock = threading.Lock()
        self._fh: Any = None

    def send(self, message: Any) -> Any:
        from dianfei.notify.channels import SendResult

        r = message.rendered
        line = {"outbox_id": message.outbox_id, "key": message.key, "account": message.account_id,
                "at": message.at.isoformat(), "notice": r.notice, "title": r.title,
                "text": r.sms_text or r.text or "\n".join(r.paragraphs)}
        text = json.dumps(line, ensure_ascii=False) + "\n"
        with self._lock:
            if self._fh is None:
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(text)
            # on disk before the delivery is recorded as sent (a killed demo loses no line)
            self._fh.flush()
        return SendResult(provider_ref=f"spool:{message.outbox_id}")

    async def send_async(self, message: Any) -> Any:
        """The same line written on the dispatcher's event loop: a local append needs no thread
        of its own (run in a pool, each dispatch pass started a thread per notice in flight —
        up to 200 — for a write of a few microseconds)."""
        return self.send(message)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class DemoSwitch:
    """The demo's meters answer every remote trip/close (no concentrators in a demo); the
    command outbox, retries, window and balance re-check are the real ones."""

    def trip(self, meter_id: str) -> Any:
        from dianfei.metering.service import CommandResult

        return CommandResult(meter_id, "trip", True, "demo meter tripped", False)

    def close(self, meter_id: str) -> Any:
        from dianfei.metering.service import CommandResult

        return CommandResult(meter_id, "close", True, "demo meter closed", False)


def _run_days(db: Database, pending: list[pl.DataFrame], first: date, stop: date, *,
              collections: bool = True, utility: Any = None,
              on_day: Callable[[date], object] | None = None,
              closures: bool = True) -> list[pl.DataFrame]:
    """Each day from ``first`` until ``stop``: a day of collections at 09:00 (late fees, dunning,
    notices, stops, reconnections), then the day's payments; returns the payments still ahead.
    The day after each issue day, before collections, the branch closes the accounts off supply
    for six months (``closures``, :mod:`dianfei.closure_demo`). ``on_day`` hears which day is
    running (the progress line shows it)."""
    from dianfei.notify.channels import Senders

    spool = db.settings.data_dir / "spool"
    spools = [SpoolSender(c, spool) for c in ("sms", "email", "wechat", "letter")]
    try:
        return _each_day(db, pending, first, stop, Senders(**{s.channel: s for s in spools}),
                         collections=collections, utility=utility, on_day=on_day,
                         closures=closures)
    finally:
        for s in spools:
            s.close()


def _each_day(db: Database, pending: list[pl.DataFrame], first: date, stop: date, senders: Any,
              *, collections: bool, utility: Any,
              on_day: Callable[[date], object] | None, closures: bool) -> list[pl.DataFrame]:
    """The days of :func:`_run_days`, with the month's notice channels."""
    import polars as pl

    from dianfei.closure_demo import monthly_review
    from dianfei.collections.service import pending_late_fees, run_day
    from dianfei.fieldwork_demo import fieldwork_day
    from dianfei.payments.service import open_items, post_payments_frame

    switch = DemoSwitch()
    queue = pl.concat(pending) if pending else None
    day = first
    while day < stop:
        if on_day is not None:
            on_day(day)
        if utility is not None:  # smart prepayment: daily reads first, top-ups with the payments
            topups = _prepaid_day(db, utility, day)
            queue = topups if queue is None else pl.concat([queue, topups])
        if collections and closures and day.day == REVIEW_DAY:
            # the households of accounts closed have gone: nothing more comes from them
            gone = monthly_review(db, day).closed
            if gone and queue is not None:
                queue = queue.filter(~pl.col("account_id").is_in(gone))
        if collections:
            run_day(db, day, clock=FixedClock(datetime.combine(day, time(9), tzinfo=BUSINESS_TZ)),
                    switch=switch, senders=senders)
            if utility is not None:
                cut = _pay_to_reconnect(db, utility, day)
                queue = cut if queue is None else pl.concat([queue, cut])
                # the collectors work the top of their lists (visits, promises, plans, tickets)
                _done, plan_pays = fieldwork_day(db, utility, day, queue)
                if plan_pays.height:
                    queue = plan_pays if queue is None else pl.concat([queue, plan_pays])
        todays = queue.filter(pl.col("paid_on") == day) if queue is not None else None
        if todays is not None and todays.height:
            clock = FixedClock(datetime.combine(day, time(18), tzinfo=BUSINESS_TZ))
            with db.engine.begin() as conn:
                # a customer cut off for arrears pays everything owed then (amount_due)
                todays = _owed_in_full(conn, todays)
                # a customer paying a bill in full also pays the late fees then owed: those
                # posted and still open, and those accrued but not posted yet
                accounts = todays["account_id"].unique().to_list()
                unposted = pending_late_fees(conn, accounts)
                fees = pl.concat([
                    open_items(conn, accounts=accounts).filter(pl.col("item_kind") == "late_fee")
                    .select("account_id", pl.col("open_amount").alias("_fees")),
                    pl.DataFrame({"account_id": list(unposted),
                                  "_fees": list(unposted.values())},
                                 schema={"account_id": pl.String, "_fees": pl.Int64}),
                ]).group_by("account_id").agg(pl.col("_fees").sum())
                todays = todays.join(fees, on="account_id", how="left").with_columns(
                    (pl.col("amount") + pl.when(pl.col("in_full"))
                     .then(pl.col("_fees").fill_null(0)).otherwise(0)).alias("amount"),
                    (pl.lit(datetime.combine(day, time(10), tzinfo=BUSINESS_TZ))
                     + pl.duration(minutes=pl.int_range(pl.len()) % 480)).alias("paid_at"))
                post_payments_frame(conn, todays.select("channel", "transaction_id", "account_id",
                                                        "amount", "paid_at"),
                                    clock=clock, source="demo")
        day += timedelta(days=1)
    return [] if queue is None else [queue.filter(pl.col("paid_on") >= stop)]


def _pay_to_reconnect(db: Database, utility: Any, day: date) -> pl.DataFrame:
    """The postpaid customers whose supply was suspended today and who will pay everything they
    owe to be reconnected (sim behaviour), queued like the other payments with ``amount`` null:
    the amount is what the account owes on the day they pay."""
    import polars as pl

    from dianfei import sim
    from dianfei.collections.service import suspended_on

    cases = suspended_on(db, day).filter(pl.col("mode") == "postpaid")
    paying = sim.pay_after_suspension(utility, cases.select(
        "case_id", "customer_id", "account_id", pl.lit(day).alias("suspended_on"))
    ).filter(pl.col("paid_on").is_not_null())
    return paying.select(
        "paid_on",
        pl.col("channel").replace_strict(SIM_CHANNELS, return_dtype=pl.String),
        pl.format("DEMO-RC-{}", "case_id").alias("transaction_id"), "account_id",
        pl.lit(None, pl.Int64).alias("amount"), pl.lit(False).alias("in_full"))


def _owed_in_full(conn: Any, todays: pl.DataFrame) -> pl.DataFrame:
    """Today's payments with the amount of each reconnection payment (amount null) set to what
    its account owes now, less its other payments of today; one that leaves nothing owed is
    dropped."""
    import polars as pl

    from dianfei.collections.service import amounts_due

    owing = todays.filter(pl.col("amount").is_null())
    if owing.height == 0:
        return todays
    due = amounts_due(conn, owing["account_id"].unique().to_list())
    others = (todays.filter(pl.col("amount").is_not_null()).group_by("account_id")
              .agg(pl.col("amount").sum().alias("_others")))
    return (todays.join(others, on="account_id", how="left")
            .with_columns(pl.coalesce(
                "amount", pl.col("account_id").replace_strict(due, default=0, return_dtype=pl.Int64)
                - pl.col("_others").fill_null(0)))
            .filter(pl.col("amount") > 0).drop("_others"))


def _prepaid_day(db: Database, utility: Any, day: date) -> pl.DataFrame:
    """The prepaid customers' part of ``day`` (smart prepayment), before the day's collections:
    their meters' daily frozen reads (日冻结) of 00:00 arrive (on the 1st that is the monthly
    frozen read, so every meter's monthly reads arrive then; the monthly cycle finds them); on
    the demo's first day their opening credit is posted. Returns the top-ups they make today,
    queued like the other payments (``paid_on`` = ``day``, posted with them after the day's
    collections). A day whose reads are stored was done before (a resumed demo): nothing again.
    """
    import polars as pl

    from dianfei import sim
    from dianfei.metering.models import RegisterRead
    from dianfei.metering.service import store_reads
    from dianfei.payments.service import post_payments_frame

    columns = pl.Schema({"paid_on": pl.Date, "channel": pl.String, "transaction_id": pl.String,
                         "account_id": pl.String, "amount": pl.Int64, "in_full": pl.Boolean})
    at = start_of_day(day)
    with db.engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(RegisterRead)
                        .where(RegisterRead.read_at == at)).scalar_one():
            return pl.DataFrame(schema=columns)
        this = Period(day.year, day.month)
        store_reads(conn, metered(db, utility, sim.monthly_reads(utility, this.prev())
                                  if day.day == 1 else sim.daily_reads(utility, day)))
        if day == DEMO_START.end_date + ISSUE_DELAY:
            morning = datetime.combine(day, time(8), tzinfo=BUSINESS_TZ)
            post_payments_frame(conn, sim.prepaid_opening_credit(utility).select(
                pl.col("channel").replace_strict(SIM_CHANNELS, return_dtype=pl.String),
                ("DEMO-PP-" + pl.col("customer_id") + "-OPEN").alias("transaction_id"),
                pl.col("customer_id").alias("account_id"), "amount",
                pl.lit(morning).alias("paid_at")), clock=FixedClock(morning), source="demo")
    # the last bill's reads closed on the 1st of the month before the last issue day
    billed = this.prev() if day >= this.prev().end_date + ISSUE_DELAY else this.prev().prev()
    from dianfei.customers.service import closed_accounts

    with db.engine.connect() as conn:
        gone = closed_accounts(conn)
    balances = _balances(db, sim.prepay_profile(utility)["customer_id"].to_list())
    topups = sim.prepaid_topups(utility, day, balances, billed.end_date)
    if gone:  # a household whose account was closed (six months off supply) tops up no more
        topups = topups.filter(~pl.col("customer_id").is_in(list(gone)))
    return topups.select(
        pl.lit(day).alias("paid_on"),
        pl.col("channel").replace_strict(SIM_CHANNELS, return_dtype=pl.String),
        ("DEMO-PP-" + pl.col("customer_id") + day.strftime("-%Y%m%d")).alias("transaction_id"),
        pl.col("customer_id").alias("account_id"), "amount",
        pl.lit(False).alias("in_full")).cast(columns)


def metered(db: Database, utility: Any, reads: pl.DataFrame) -> pl.DataFrame:
    """``reads`` (one instant) as the demo's meters show them: a meter registers nothing while
    its account's supply is off (``sim.as_metered``), from the supply interruptions the stop
    cases keep with the accounts — a house cut off for arrears and never reconnected is billed
    no more energy, and a prepaid meter cut off stops running up charges until its top-up."""
    import polars as pl

    from dianfei import sim
    from dianfei.customers.service import supply_interruptions

    spans = supply_interruptions(db.engine)
    if spans.height == 0:
        return reads
    tz = str(BUSINESS_TZ)
    return sim.as_metered(utility, reads, spans.select(
        # the demo's accounts are its customers (one account each, the same id)
        pl.col("account_id").alias("customer_id"),
        pl.col("off_at").dt.convert_time_zone(tz).dt.date().alias("off_from"),
        pl.col("on_at").dt.convert_time_zone(tz).dt.date().alias("off_until")))


def _balances(db: Database, accounts: list[str]) -> pl.DataFrame:
    """customer_id, balance (fen; negative = credit) of the demo's ``accounts`` (= customers),
    from their open items (the ledger service: no scan of the ledger's history)."""
    from dianfei.ledger.service import balances_frame

    return balances_frame(db.engine, accounts).rename({"account_id": "customer_id"})


def _summary(db: Database, first: Period, last: Period) -> dict[str, Any]:
    from dianfei.billing.service import open_exceptions
    from dianfei.fieldwork_demo import fieldwork_summary

    with db.engine.connect() as conn:
        customers = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        closed = conn.execute(text(
            "SELECT count(*) FROM accounts WHERE closed_on IS NOT NULL")).scalar_one()
        written_off = conn.execute(text(
            "SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE kind = 'write_off'")
        ).scalar_one()
        rows = conn.execute(text(
            "SELECT c.customer_class, count(*), coalesce(sum(b.kwh), 0), "
            "coalesce(sum(b.amount), 0) FROM bills b JOIN customers c "
            "ON c.customer_id = b.customer_id WHERE b.status = 'issued' "
            "AND b.period BETWEEN :a AND :z GROUP BY c.customer_class ORDER BY 1"),
            {"a": str(first), "z": str(last)}).all()
    by_class = {r[0]: {"bills": r[1], "kwh": fmt_qty(int(r[2])), "amount": fmt_yuan(int(r[3]))}
                for r in rows}
    return {
        "customers": customers,
        "periods": f"{first}..{last}",
        "bills": sum(r[1] for r in rows),
        "kwh": fmt_qty(sum(int(r[2]) for r in rows)),
        "amount_billed": fmt_yuan(sum(int(r[3]) for r in rows)),
        "unbilled_exceptions": open_exceptions(db).height,
        "by_class": by_class,
        "kpis": _last_period_kpis(db, last) if rows else None,
        "fieldwork": fieldwork_summary(db),
        # accounts closed after six months off supply, and the arrears written off with them
        "closures": {"accounts_closed": int(closed), "written_off": fmt_yuan(int(written_off))},
    }


def _last_period_kpis(db: Database, last: Period) -> dict[str, Any]:
    """The KPIs of the last billed period as of the demo's last simulated day (the day before
    the next bill run): what a newcomer should see the platform is for."""
    from dianfei.reporting.kpi import period_kpis

    as_of = last.next().end_date + ISSUE_DELAY - timedelta(days=1)
    return period_kpis(db, last, as_of)


def summary_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"dianfei demo — {summary['customers']} customers, "
                        f"periods {summary['periods']}")
    for col in ("class", "bills", "kWh", "amount billed (yuan)"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for cls, v in summary["by_class"].items():
        table.add_row(cls, str(v["bills"]), v["kwh"], v["amount"])
    table.add_row("total", str(summary["bills"]), summary["kwh"], summary["amount_billed"],
                  style="bold")
    console.print(table)
    console.print(f"accounts on the exceptions list (not billed): "
                  f"{summary['unbilled_exceptions']} — see `dianfei bill exceptions --period …`")
    work = summary.get("fieldwork") or {}
    if any(work.values()):
        console.print("collectors' field work (催费外勤): " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in work.items() if v)
            + " — `dianfei worklist --date D`, `dianfei visit list`, `dianfei ticket list`")
    closures = summary.get("closures") or {}
    if closures.get("accounts_closed"):
        console.print(f"accounts closed after six months off supply (销户): "
                      f"{closures['accounts_closed']}, arrears written off "
                      f"{closures['written_off']} yuan — `dianfei approvals list --kind "
                      "account_closure`, `dianfei account closures`")
    if summary.get("kpis"):
        from dianfei.reporting.report import kpi_table

        kpi_table(summary["kpis"])
        console.print(f"definitions: docs/kpi.md — `dianfei kpi --period {summary['kpis']['period']} "
                      "--trend 12 --json` for the trend, "
                      "`--by region|collector|channel|segment` for the split")
