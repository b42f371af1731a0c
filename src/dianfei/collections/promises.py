"""Promises to pay (承诺缴费) in the daily run, and what they do to the ladder.

- While a promise is open, the account's ladder pauses: the snapshot's ``open_promise`` is set
  and no level matches (the account leaves ``dunning_state``; a stop case waiting for its order
  waits too).
- :func:`check_promises` (a step of ``run_day`` next to the plans): a promise is **kept** when
  the payments posted from the moment it was made up to the end of its date — by time, never by
  ledger ids (``payments.service.paid_since``) — reach its amount; **broken** when its date has
  passed without that (detected the day after the date).
- A kept promise resets the ladder: the account leaves ``dunning_state`` at once, and for the
  arrears that predate the promise the ladder counts days again from the day it was kept.
- A broken promise puts the account back one level higher than where it stood when the promise
  was made: the ladder reads at least the first day of the next level (``ladder_days``) until
  the arrears' own days pass it. The smallest change to the evaluation: it reads ``ladder_days``
  (when the snapshot has it) instead of ``days_overdue``; levels, files and overlap checks stay.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, bindparam, text

from dianfei.collections.context import event_frame, write_events
from dianfei.core.clock import start_of_day

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.context import Context
    from dianfei.collections.ladder import Ladder


def _promises(source: Any, where: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
    import polars as pl

    from dianfei.db.frames import read_frame

    # sorted here: ORDER BY promise_id makes SQLite walk every promise ever made in id order
    # rather than use the index the condition names
    return read_frame(
        source, "SELECT promise_id, account_id, customer_id, made_at, made_on, due_on, amount, "
        f"ladder_at, level_at, status, closed_on FROM payment_promises WHERE {where}",
        params, instants=("made_at",), dates=("made_on", "due_on", "closed_on"),
        schema={"promise_id": pl.Int64, "account_id": pl.String, "customer_id": pl.String,
                "made_at": pl.Datetime("us", "UTC"), "made_on": pl.Date, "due_on": pl.Date,
                "amount": pl.Int64, "ladder_at": pl.String, "level_at": pl.String,
                "status": pl.String, "closed_on": pl.Date}).sort("promise_id")


def paid_towards(engine: Any, promises: pl.DataFrame, now: Any) -> pl.DataFrame:
    """``promises`` with ``paid``: fen posted from ``made_at`` up to the end of ``due_on`` (or
    ``now`` when that is earlier: a replayed day does not see later payments)."""
    import polars as pl

    from dianfei.payments.service import paid_since

    upto = promises.with_columns(pl.Series("until", [
        min(start_of_day(d + timedelta(days=1)), now) for d in promises["due_on"].to_list()],
        dtype=pl.Datetime("us", "UTC")))
    since = paid_since(engine, upto.select("account_id", pl.col("made_at").alias("since")))
    later = paid_since(engine, upto.select("account_id", pl.col("until").alias("since")))
    # paid_since answers per (account, instant): the difference is what fell in [made_at, until)
    return (upto.join(since.unique(["account_id", "since"]).rename({"since": "made_at", "paid": "_a"}),
                      on=["account_id", "made_at"], how="left")
            .join(later.unique(["account_id", "since"]).rename({"since": "until", "paid": "_b"}),
                  on=["account_id", "until"], how="left")
            .with_columns((pl.col("_a").fill_null(0) - pl.col("_b").fill_null(0)).alias("paid"))
            .drop("_a", "_b", "until"))


def check_promises(ctx: Context, conn: Any) -> None:
    """Mark open promises kept or broken (``promise_kept`` / ``promise_broken``)."""
    import polars as pl

    from dianfei.audit import service as audit

    open_ = _promises(ctx.db.engine, "status = 'open'").filter(pl.col("made_at") <= ctx.now)
    if open_.height == 0:
        return
    p = paid_towards(ctx.db.engine, open_, ctx.now)
    rows: list[dict[str, Any]] = []
    records: list[tuple[str, str, dict[str, Any]]] = []
    for r in p.iter_rows(named=True):
        if r["paid"] >= r["amount"]:
            status = "kept"
        elif ctx.day > r["due_on"]:
            status = "broken"
        else:
            continue
        # the status guard makes a concurrent or repeated run change each promise once (plain
        # statements: a statement built per promise cost more than the day's other work on them)
        done = conn.execute(_CLOSE, {"status": status, "on": ctx.day, "paid": r["paid"],
                                     "promise_id": r["promise_id"]}).rowcount
        if not done:
            continue
        if status == "kept":
            # the ladder resets: the account leaves its level now
            conn.execute(_LEAVE_LADDER, {"account_id": r["account_id"]})
            ctx.report.promises_kept += 1
        else:
            ctx.report.promises_broken += 1
        rows.append({"key": f"promise:{r['promise_id']}:{status}", "account_id": r["account_id"],
                     "customer_id": r["customer_id"], "type": f"promise_{status}", "at": ctx.now,
                     "business_date": ctx.day, "amount": r["paid"],
                     "detail": json.dumps({"promise_id": r["promise_id"],
                                           "promised": r["amount"],
                                           "due_on": r["due_on"].isoformat(),
                                           "level_at": r["level_at"]})})
        records.append((f"promise.{status}", r["account_id"], {
            "promise_id": r["promise_id"], "promised_fen": r["amount"], "paid_fen": r["paid"],
            "due_on": r["due_on"].isoformat(), "day": ctx.day.isoformat()}))
    audit.record_many(conn, records)
    write_events(conn, event_frame(rows))


_CLOSE = text("UPDATE payment_promises SET status = :status, closed_on = :on, paid = :paid "
              "WHERE promise_id = :promise_id AND status = 'open'").bindparams(
                  bindparam("on", type_=Date))
_LEAVE_LADDER = text("DELETE FROM dunning_state WHERE account_id = :account_id")


def next_level_days(ladders: list[Ladder], ladder_id: str | None, level: str | None) -> int | None:
    """The first day of the level one above ``level`` on its ladder (the same level's first
    day at the top); None when the account stood on no level."""
    if ladder_id is None or level is None:
        return None
    for ld in ladders:
        if ld.ladder_id != ladder_id:
            continue
        try:
            stood = ld.level(level)
        except KeyError:
            return None  # the ladder file changed since: no escalation rather than a guess
        above = [lv.min_days for lv in ld.levels if lv.min_days > stood.min_days]
        return min(above) if above else stood.min_days
    return None


def ladder_columns(ctx: Context, snap: pl.DataFrame) -> pl.DataFrame:
    """``snap`` with ``open_promise`` (a promise is open: the ladder pauses) and ``ladder_days``
    (the days the ladder reads: ``days_overdue``, restarted after a kept promise, raised to the
    next level after a broken one — only for arrears older than the promise)."""
    import polars as pl

    accounts = snap["account_id"].to_list()
    if not accounts:
        return snap.with_columns(pl.lit(False).alias("open_promise"),
                                 pl.col("days_overdue").alias("ladder_days"))
    from dianfei.db.lists import any_of

    # the promises of the day's accounts only (the account index), not every promise ever kept
    member, bound = any_of(ctx.db.engine, "account_id", "accts", sorted(set(accounts)))
    open_ = (_promises(ctx.db.engine, f"status = 'open' AND {member}", bound)
             .filter(pl.col("made_at") <= ctx.now)
             .select("account_id", pl.lit(True).alias("open_promise")).unique("account_id"))
    # the latest closed promise of each account decides how the ladder counts: chosen in the
    # database (an account in arrears for years has kept and broken dozens)
    last = _promises(
        ctx.db.engine, "promise_id IN (SELECT promise_id FROM (SELECT promise_id, ROW_NUMBER() "
        "OVER (PARTITION BY account_id ORDER BY closed_on DESC NULLS LAST, promise_id DESC) AS n "
        f"FROM payment_promises WHERE status IN ('kept', 'broken') AND {member} "
        "AND made_at <= :now) AS ranked WHERE n = 1)", {**bound, "now": ctx.now})
    # the next level's days of each (ladder, level) the promises were made at: a handful of
    # pairs, joined back (a Python call per promise was the step's slowest part)
    pairs = last.select("ladder_at", "level_at").unique()
    floors = pairs.with_columns(pl.Series(
        "_floor", [next_level_days(ctx.ladders, a, b) for a, b in pairs.iter_rows()],
        dtype=pl.Int64))
    last = last.join(floors, on=["ladder_at", "level_at"], how="left")
    day = ctx.day
    out = (snap.join(open_, on="account_id", how="left")
           .join(last.select("account_id", pl.col("status").alias("_closed"), "made_on",
                             "closed_on", "_floor"), on="account_id", how="left")
           .with_columns(pl.col("open_promise").fill_null(False)))
    older = pl.col("oldest_due") <= pl.col("made_on")
    restarted = (pl.lit(day) - pl.col("closed_on")).dt.total_days()
    return out.with_columns(
        pl.when(older & (pl.col("_closed") == "kept"))
        .then(pl.min_horizontal("days_overdue", restarted))
        .when(older & (pl.col("_closed") == "broken") & pl.col("_floor").is_not_null())
        .then(pl.max_horizontal("days_overdue", "_floor"))
        .otherwise(pl.col("days_overdue")).cast(pl.Int64).alias("ladder_days")
    ).drop("_closed", "made_on", "closed_on", "_floor")


def open_promise_accounts(engine: Any) -> set[str]:
    return set(_promises(engine, "status = 'open'")["account_id"].to_list())


def promises_json(engine: Any, account_id: str | None = None) -> list[dict[str, Any]]:
    """Promises (oldest first): promise_id, account, account_id, made_on, due_on, amount, status,
    closed_on."""
    from dianfei.core.money import fmt_yuan

    frame = _promises(engine, "1 = 1")
    out = []
    for r in frame.iter_rows(named=True):
        if account_id is not None and r["account_id"] != account_id:
            continue
        out.append({"promise_id": r["promise_id"], "account": r["customer_id"],
                    "account_id": r["account_id"], "made_on": _iso(r["made_on"]),
                    "due_on": _iso(r["due_on"]), "amount": fmt_yuan(r["amount"]),
                    "status": r["status"], "closed_on": _iso(r["closed_on"]),
                    "level_at": r["level_at"]})
    return out


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()
