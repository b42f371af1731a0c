"""Collections benchmark: days of collections for N accounts of which a tenth are in arrears.

    python -m bench.collections --accounts 1000000 --backend sqlite|postgresql [--profile F]

Builds the synthetic utility, posts one overdue bill for a tenth of the accounts (spread over
1–90 days past due), gives every prepaid account (~18%) daily frozen reads since 1 March and a
top-up (some end above, some below the warning threshold, some at or below zero), then times
``run_day`` for three days in a row:

- the first (cold: every arrears account enters the ladder, every prepaid account is evaluated
  for the first time);
- the second: the first day's echo — the accruals it opened move every arrears account's late
  count, so the whole tenth is rated again (a live book never has this day);
- then three days of a live book: before each, a day's business arrives (``DAILY_PAYERS`` of
  the accounts in arrears pay what they owe, ``DAILY_NEWLY_OVERDUE`` more accounts' bills fall
  due unpaid, the prepaid meters' frozen read of the day) and the day works through it. The
  last of them is the **steady state** (``steady_day_s``): by then the first day's mass (its
  180,000 notices, which the notices' three-day window re-reads) is behind every window.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import resource
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop

#: share of the accounts in arrears who pay what they owe between two days of the steady state
#: (a bill a month settles within about a month: a thirtieth a day)
DAILY_PAYERS = 1 / 30
#: accounts whose bill falls due unpaid each day, as a share of all accounts (a month's bills of a
#: tenth of the book falling due over the month's working days)
DAILY_NEWLY_OVERDUE = 0.004
#: the days timed, in order
DAYS = ("first_day_s", "second_day_s", "third_day_s", "fourth_day_s", "steady_day_s")


def run(accounts: int, backend: str, profile: str | None = None) -> dict[str, Any]:
    import numpy as np
    import polars as pl
    from sqlalchemy import text
    from tests.collections.fakes import FakeNotifier, FakeSwitch

    from dianfei import sim
    from dianfei.collections.service import run_day
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.ledger.service import post_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        utility = sim.build_utility(accounts, seed=7)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"k" * 32), regions=utility.regions,
                            stations=utility.stations, collectors=utility.collectors,
                            customers=utility.customers, meters=utility.meters)
        day = date(2026, 3, 18)
        ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
        # exactly a tenth of all accounts in arrears, spread evenly over the postpaid ones
        n = accounts // 10
        arrears = ids.gather((np.arange(n) * (ids.len() / n)).astype(np.int64))
        rng = np.random.default_rng(1)
        due = [day - timedelta(days=int(d)) for d in rng.integers(1, 91, size=n)]
        posted = datetime(2026, 1, 1)
        bills = pl.DataFrame({"account_id": arrears, "customer_id": arrears,
                              "kind": "bill", "amount": rng.integers(2_000, 80_000, size=n),
                              "posted_at": posted, "business_date": date(2026, 1, 1),
                              "due_on": pl.Series(due, dtype=pl.Date)}).with_columns(
            pl.format("{}-202512-1", "account_id").alias("reference"))
        with db.engine.begin() as conn:
            post_frame(conn, bills)
        out["in_arrears"] = n
        out["prepaid"] = _prepaid(db, utility, day, rng)
        with db.engine.begin() as conn:
            # earlier days already saw the payments so far (the steady state of a live system):
            # collections' deliveries of those payment events are handled
            conn.execute(text("UPDATE event_deliveries SET handled_at = :t "
                              "WHERE handled_at IS NULL"), {"t": datetime(2026, 3, 17, 1)})
        notifier, switch = FakeNotifier(), FakeSwitch()
        for i, label in enumerate(DAYS):
            d = day + timedelta(days=i)
            if i >= 2:  # the live days: the day's payments and newly overdue bills first
                out[label.replace("_s", "_input")] = _days_business(db, utility, arrears, d, rng,
                                                                    i)
            clock = FixedClock(datetime.combine(d, dtime(9), tzinfo=BUSINESS_TZ))
            prof = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            report = run_day(db, d, clock=clock, switch=switch, notifier=notifier)
            if prof:
                prof.disable()
                prof.dump_stats(f"{profile}.{label.removesuffix('_s')}")
            out[label] = round(time.perf_counter() - t0, 2)
            out[label.replace("_s", "_timings")] = {k: round(v, 2) for k, v in report.timings.items()}
            out[label.replace("_s", "_counts")] = {"late_fees": report.late_fees,
                                                   "dunning_changes": report.dunning_changes,
                                                   "notices": report.notices,
                                                   "stop_notices": report.stop_notices,
                                                   "prepay_accounts": report.prepay_accounts,
                                                   "prepay_warnings": report.prepay_warnings,
                                                   "prepay_cutoff_notices":
                                                       report.prepay_cutoff_notices}
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        db.engine.dispose()
    finally:
        _drop(pg_name)
        # the SQLite file of a million accounts is ~2 GB: a benchmark leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _days_business(db: Any, utility: Any, arrears: Any, day: date, rng: Any,
                   nth: int) -> dict[str, int]:
    """What reaches the book between the day before ``day`` and ``day`` in a live utility:
    payments in full from ``DAILY_PAYERS`` of the accounts in arrears (through the one posting
    core, paid the evening before), bills of ``DAILY_NEWLY_OVERDUE`` of the accounts not in
    arrears that fell due yesterday unpaid (the ledger's debit, as a bill run posts it)."""
    import numpy as np
    import polars as pl

    from dianfei.core.clock import FixedClock
    from dianfei.ledger.service import balances_frame, post_frame
    from dianfei.payments.service import post_payments_frame

    payers = arrears.sample(n=int(arrears.len() * DAILY_PAYERS), seed=nth).sort()
    owed = balances_frame(db.engine, payers.to_list()).filter(pl.col("balance") > 0)
    paid_at = datetime.combine(day - timedelta(days=1), dtime(11), tzinfo=UTC)  # 19:00 in China
    ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
    fresh = ids.filter(~ids.is_in(arrears.implode()))
    n = min(int(utility.customers.height * DAILY_NEWLY_OVERDUE), fresh.len())
    # other accounts each day (an offset per day along the spread)
    newly = fresh.gather(((np.arange(n) * (fresh.len() / max(n, 1))).astype(np.int64) + nth)
                         % max(fresh.len(), 1))
    bills = pl.DataFrame({"account_id": newly, "customer_id": newly, "kind": "bill",
                          "amount": rng.integers(2_000, 80_000, size=newly.len()),
                          "posted_at": datetime(2026, 2, 1), "business_date": date(2026, 2, 1),
                          "due_on": day - timedelta(days=1)}).with_columns(
        pl.format("{}-202601-{}", "account_id", pl.lit(nth)).alias("reference"))
    with db.engine.begin() as conn:
        post_payments_frame(conn, owed.select(
            pl.lit("wechatpay").alias("channel"), "account_id", pl.col("balance").alias("amount"),
            pl.lit(paid_at).cast(pl.Datetime("us", "UTC")).alias("paid_at"),
            pl.format("PAY-{}-{}", "account_id", pl.lit(nth)).alias("transaction_id")),
            clock=FixedClock(paid_at), source="bench")
        post_frame(conn, bills)
    return {"payments": owed.height, "newly_overdue": newly.len()}


def _prepaid(db: Any, utility: Any, day: date, rng: Any) -> int:
    """Smart-prepayment inputs: for every prepaid meter the monthly frozen read of 1 March and
    daily frozen reads from then through the day after ``day``, and a top-up each so that some
    accounts are above, some below the warning threshold and some at or below zero."""
    import numpy as np
    import polars as pl

    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.payments.service import post_payments_frame

    pre = utility.customers.filter(pl.col("payment_mode") == "prepaid")["customer_id"]
    mf = utility.meters.join(pre.to_frame(), on="customer_id", how="semi")
    meters = mf["meter_id"]
    tou = mf["registers"].str.contains("peak")
    m = meters.len()
    start = date(2026, 3, 1)
    # the monthly frozen read of 1 March and the daily ones around the days measured (the days
    # between are never read: only the latest read counts)
    offsets = [0, *range((day - start).days - 1, (day - start).days + len(DAYS))]
    days = [start + timedelta(days=i) for i in offsets]
    base = rng.integers(100_000, 2_000_000, size=m)  # centi-kWh on the register on 1 March
    per_day = rng.integers(200, 1_500, size=m)  # 2–15 kWh a day
    frames = []
    for i, d in zip(offsets, days, strict=True):
        at = datetime.combine(d, dtime(0), tzinfo=BUSINESS_TZ).astimezone(UTC)
        when = pl.Series([at] * m, dtype=pl.Datetime("us", "UTC"))
        frames.append(pl.DataFrame({"meter_id": meters, "register": "total", "read_at": when,
                                    "value": base + per_day * i, "source": "ami"}))
        # time-of-use meters also freeze their peak and valley registers (60/40 here; the two
        # add up exactly to the total, as a real meter's do)
        total = base + per_day * i
        for reg, value in (("peak", total * 6 // 10), ("valley", total - total * 6 // 10)):
            frames.append(pl.DataFrame({"meter_id": meters, "register": reg, "read_at": when,
                                        "value": value, "source": "ami"}).filter(tou))
    from dianfei.db.bulk import write_frame

    with db.engine.begin() as conn:
        for f in frames:
            write_frame(conn, "register_reads", f.select("meter_id", "read_at", "register", "value",
                                                          "source"))
    # top-ups: what the use since 1 March costs at 0.538 yuan/kWh (fen), plus −8 to +300 yuan:
    # on the first day ~3% are at or below zero and ~20% below the 50-yuan threshold, and each
    # further day a few more cross
    cost = (per_day * (day - start).days * 538) // 1000
    top = np.maximum(cost + rng.integers(-800, 30_000, size=m), 100)
    paid_at = datetime(2026, 2, 28, 7, tzinfo=UTC)
    with db.engine.begin() as conn:  # the top-ups go through the one posting core
        post_payments_frame(conn, pl.DataFrame({
            "channel": "alipay", "account_id": pre, "amount": top,
            "paid_at": pl.Series([paid_at] * m, dtype=pl.Datetime("us", "UTC"))}).with_columns(
            pl.format("TOPUP-{}", "account_id").alias("transaction_id")),
            clock=FixedClock(paid_at), source="bench")
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--profile", help="write cProfile stats of each day to PROFILE.first_day, …")
    args = ap.parse_args()
    print(json.dumps(run(args.accounts, args.backend, args.profile)))


if __name__ == "__main__":
    main()
