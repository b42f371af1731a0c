"""The risk segment (客户分类) of an account in arrears, as the daily run gives it to the ladder.

The rules are risk's (``segments.toml``, read through ``risk.service``); what this module does is
give them the facts collections already holds, for the day's accounts only:

- ``overdue_amount``, ``days_overdue`` — the snapshot's own figures (the day's overdue items);
- ``late_12m``, ``late_recent``, ``late_before`` — the run's late-payment history
  (``Context.late_history``: the bills of the last 365 days that accrued a late fee, i.e. were
  paid after their due date or are still unpaid past it; recent = due in the last 92 days);
- ``customer_class``, ``low_income``, ``protected`` — the customers the run read;
- ``theft_score``, ``months_low``, ``usual_kwh``, ``kwh_percentile``, ``bills_12m`` — risk's
  stored consumption facts of the latest billed period (computed once per period, not per day).

So a collections day adds one join and one rule evaluation over the accounts in arrears, whatever
the length of the history. The account page and the worklists ask :func:`account_segments` for
a few accounts and get the same answer from the same facts read for those accounts only.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl

    from dianfei.db.engine import Database

#: the snapshot's columns of the risk segment (the ladder's ``segment`` stays the dunning one)
COLUMNS = ("risk_segment", "segment_label", "segment_why")
#: the late-payment history the rules read, in days before the day
HISTORY_DAYS = 365
RECENT_DAYS = 92


def snapshot_segments(db: Database, day: date, snap: pl.DataFrame,
                      history: pl.DataFrame) -> pl.DataFrame:
    """account_id, risk_segment, segment_label, segment_why of every row of ``snap``
    (account_id, customer_class, low_income, protected, amount_overdue fen, days_overdue), from
    ``history`` (``repository.late_history_of``). An account with no history
    at all is judged on what it owes now: something overdue makes it ``occasionally_late``
    (docs/risk-insight.md)."""
    import polars as pl

    from dianfei.risk.service import (
        SEGMENT_CONSUMPTION_COLUMNS,
        assign_segments,
        segment_consumption_facts,
    )

    hist = history.select("account_id", pl.col("late_count").alias("late_12m"),
                          pl.col("late_recent"))
    usage = segment_consumption_facts(db, day, accounts=snap["account_id"].to_list())
    facts = (snap.select("account_id", "customer_class", "low_income", "protected",
                         pl.col("amount_overdue").alias("overdue_amount"), "days_overdue")
             .join(hist, on="account_id", how="left")
             .with_columns(pl.col("late_12m", "late_recent").fill_null(0))
             .with_columns((pl.col("late_12m") - pl.col("late_recent")).alias("late_before"))
             .join(usage.select("account_id", *SEGMENT_CONSUMPTION_COLUMNS), on="account_id",
                   how="left"))
    return assign_segments(facts).select(
        "account_id", pl.col("segment").alias("risk_segment"),
        pl.col("label").alias("segment_label"), pl.col("why").alias("segment_why"))


def account_segments(db: Database, day: date, accounts: Sequence[str]) -> pl.DataFrame:
    """:func:`snapshot_segments` of a few open accounts (the account page, the worklists), read
    for those accounts only: their overdue items on ``day`` (disputed bills left out, as the
    snapshot does), their late-payment history, their customer facts. An account with nothing
    overdue is judged as owing nothing (``on_time`` unless its history or usage says more)."""
    import polars as pl

    from dianfei.collections import repository
    from dianfei.collections.tickets import disputed_bills
    from dianfei.customers.service import open_account_facts
    from dianfei.ledger.service import open_items

    wanted = sorted(set(accounts))
    cust = open_account_facts(db.engine, wanted)
    if cust.height == 0:
        return pl.DataFrame(schema={"account_id": pl.String, **dict.fromkeys(COLUMNS, pl.String)})
    with db.engine.connect() as conn:
        items = open_items(conn, cust["account_id"].to_list())
    disputed = disputed_bills(db.engine)
    owed = (items.filter((pl.col("item_kind") != "credit") & (pl.col("due_on") < day)
                         & (pl.col("open_amount") > 0)
                         & ~pl.col("bill_id").is_in(disputed).fill_null(False))
            .group_by("account_id").agg(
                pl.col("open_amount").sum().cast(pl.Int64).alias("amount_overdue"),
                (pl.lit(day) - pl.col("due_on").min()).dt.total_days().cast(pl.Int64)
                .alias("days_overdue")))
    snap = (cust.join(owed, on="account_id", how="left")
            .with_columns(pl.col("amount_overdue").fill_null(0),
                          pl.col("days_overdue").fill_null(0)))
    history = repository.late_history_of(db.engine, cust["account_id"].to_list(),
                                         day - timedelta(days=HISTORY_DAYS),
                                         day - timedelta(days=RECENT_DAYS), day)
    return snapshot_segments(db, day, snap, history)


def summary(snapshot: pl.DataFrame) -> dict[str, dict[str, int]]:
    """The snapshot's accounts in arrears and their overdue amount (fen) by risk segment, in the
    rules' order: what the day's report (``collect run --json``) and the monthly report show."""
    import polars as pl

    from dianfei.risk.service import RISK_SEGMENTS

    if "risk_segment" not in snapshot.columns or snapshot.height == 0:
        return {}
    per = {r["risk_segment"]: r for r in snapshot.group_by("risk_segment").agg(
        pl.len().alias("accounts"), pl.col("amount_overdue").sum().alias("arrears"))
        .iter_rows(named=True)}
    return {s: {"accounts": int(per[s]["accounts"]), "arrears": int(per[s]["arrears"])}
            for s in RISK_SEGMENTS if s in per}


def arrears_by_segment(db: Database, as_of: date) -> tuple[date, dict[str, dict[str, int]]] | None:
    """The latest daily run on or before ``as_of`` and its accounts in arrears by risk segment
    (:func:`summary`, fen); None when no run has recorded them."""
    import json

    from dianfei.collections import repository
    from dianfei.core.money import parse_decimal, to_fen

    found = repository.latest_run_report(db.engine, as_of)
    if found is None:
        return None
    day, text = found
    segments = json.loads(text).get("segments")
    if segments is None:  # a run from before risk segments reached the snapshot
        return None
    return day, {k: {"accounts": int(v["accounts"]),
                     "arrears": to_fen(parse_decimal(v["arrears"], f"run {day} segment {k}",
                                                     places=2, allow_negative=False))}
                 for k, v in segments.items()}
