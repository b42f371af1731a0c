"""The fund-flow audit of a period (资金流向稽核): where the month's money came from and went.

For the calendar month of the period (business days, Asia/Shanghai):

- **billed**: the period's live bills (what the customers were charged);
- **collected** per channel: payments received on the month's days (gross: a payment refunded
  later was still received), **refunded** per channel: payments reversed on the month's days
  (refunds, bank returns), **net** = collected − refunded;
- **settled** per channel: what the channel's statements say it settled on the reconciled days
  (the stored reconciliation reports: matched + missing in the ledger + amount mismatches, the
  statement's side);
- **deposited**: cash the counter shifts closed in the month handed in (counted − opening
  float), with the till differences (长款/短款);
- **written off**: standing write-offs posted in the month.

The tie (勾稽): on each reconciled day, ``settled − collected`` must equal the worklist's signed
discrepancies of that channel and day (missing in the ledger +statement amount, missing in the
statement −ledger amount, amount mismatch statement − ledger; open and resolved, since resolving
a row explains a difference, it does not remove it). Whatever is left is ``unexplained``: a
payment posted after the reconciliation ran (run it again) or a worklist row closed by a re-run
whose money moved — a finding for a person, never hidden. Days with payments but no
reconciliation are listed as not reconciled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

#: worklist kinds that are differences of payment money, with the sign of their amount
TIE_KINDS = ("missing_in_ledger", "missing_in_statement", "amount_mismatch")


def signed_difference() -> pl.Expr:
    """What a worklist row explains of ``settled − collected`` (fen)."""
    import polars as pl

    s, led = pl.col("statement_amount").fill_null(0), pl.col("ledger_amount").fill_null(0)
    return (pl.when(pl.col("kind") == "missing_in_ledger").then(s)
            .when(pl.col("kind") == "missing_in_statement").then(-led)
            .when(pl.col("kind") == "amount_mismatch").then(s - led)
            .otherwise(0)).alias("explains")


def channel_ties(payments: pl.DataFrame, refunds: pl.DataFrame, reports: pl.DataFrame,
                 worklist: pl.DataFrame) -> pl.DataFrame:
    """Per channel: payments, collected, refunded, reconciled/not reconciled days, collected on
    reconciled days, settled, worklist (explains), unexplained — fen, pure."""
    import polars as pl

    daily = payments.group_by("channel", "business_date").agg(
        pl.len().alias("payments"), pl.col("amount").sum().alias("collected"))
    rep = reports.select("channel", pl.col("day").alias("business_date"), "settled",
                         pl.lit(True).alias("reconciled"))
    work = (worklist.filter(pl.col("kind").is_in(TIE_KINDS))
            .with_columns(signed_difference())
            .group_by("channel", pl.col("day").alias("business_date"))
            .agg(pl.col("explains").sum(), pl.len().alias("worklist_rows"),
                 pl.col("resolved_at").is_null().sum().alias("worklist_open")))
    days = (daily.join(rep, on=["channel", "business_date"], how="full", coalesce=True)
            .join(work, on=["channel", "business_date"], how="left")
            .with_columns(pl.col("reconciled").fill_null(False),
                          *[pl.col(c).fill_null(0) for c in ("payments", "collected", "settled",
                                                             "explains", "worklist_rows",
                                                             "worklist_open")]))
    rec = pl.col("reconciled")
    out = days.group_by("channel").agg(
        pl.col("payments").sum(),
        pl.col("collected").sum(),
        rec.sum().alias("reconciled_days"),
        pl.col("business_date").filter(~rec & (pl.col("payments") > 0)).sort()
        .alias("not_reconciled_days"),
        pl.col("collected").filter(~rec).sum().alias("not_reconciled"),
        pl.col("collected").filter(rec).sum().alias("collected_on_reconciled_days"),
        pl.col("settled").sum(),
        pl.col("explains").sum().alias("worklist"),
        pl.col("worklist_rows").sum(),
        pl.col("worklist_open").sum(),
    )
    back = refunds.group_by("channel").agg(pl.col("amount").sum().alias("refunded"))
    return (out.join(back, on="channel", how="full", coalesce=True)
            .with_columns(*[pl.col(c).fill_null(0) for c in (
                "payments", "collected", "refunded", "reconciled_days", "not_reconciled",
                "collected_on_reconciled_days", "settled", "worklist", "worklist_rows",
                "worklist_open")])
            .with_columns((pl.col("settled") - pl.col("collected_on_reconciled_days")
                           - pl.col("worklist")).alias("unexplained"))
            .sort("channel"))


def audit(db: Database, period: Period) -> dict[str, Any]:
    """The fund-flow audit of ``period`` (the JSON of ``dianfei audit funds``)."""
    import polars as pl

    from dianfei.billing.service import bills_between
    from dianfei.core.clock import start_of_day
    from dianfei.ledger.service import write_offs
    from dianfei.payments.service import (
        discrepancies_between,
        payments_between,
        reconciliations_between,
        refunds_between,
        shifts_closed_between,
    )

    first, last = period.first_day, period.last_day
    bills = bills_between(db.engine, str(period), str(period)).filter(
        pl.col("status") != "cancelled")
    ties = channel_ties(payments_between(db.engine, first, last),
                        refunds_between(db.engine, first, last),
                        reconciliations_between(db.engine, first, last),
                        discrepancies_between(db.engine, first, last))
    shifts = shifts_closed_between(db.engine, start_of_day(first), start_of_day(period.end_date))
    deposited = int((shifts["counted_cash"].fill_null(0) - shifts["opening_float"].fill_null(0))
                    .sum() or 0) if shifts.height else 0
    till = int(shifts["difference"].fill_null(0).sum() or 0) if shifts.height else 0
    written = write_offs(db.engine).filter(pl.col("business_date").is_between(first, last))
    channels = []
    for r in ties.iter_rows(named=True):  # one row per channel
        channels.append({
            "channel": r["channel"],
            "payments": int(r["payments"]),
            "collected": fmt_yuan(int(r["collected"])),
            "refunded": fmt_yuan(int(r["refunded"])),
            "net": fmt_yuan(int(r["collected"]) - int(r["refunded"])),
            "reconciled_days": int(r["reconciled_days"]),
            "not_reconciled_days": [d.isoformat() for d in (r["not_reconciled_days"] or [])],
            "not_reconciled": fmt_yuan(int(r["not_reconciled"])),
            "collected_on_reconciled_days": fmt_yuan(int(r["collected_on_reconciled_days"])),
            "settled": fmt_yuan(int(r["settled"])),
            "difference": fmt_yuan(int(r["settled"]) - int(r["collected_on_reconciled_days"])),
            "worklist": fmt_yuan(int(r["worklist"])),
            "worklist_rows": int(r["worklist_rows"]),
            "worklist_open": int(r["worklist_open"]),
            "unexplained": fmt_yuan(int(r["unexplained"])),
            "ties": int(r["unexplained"]) == 0,
        })
    collected = int(ties["collected"].sum() or 0)
    refunded = int(ties["refunded"].sum() or 0)
    return {
        "period": str(period),
        "from": first.isoformat(),
        "to": last.isoformat(),
        "bills": bills.height,
        "billed": fmt_yuan(int(bills["amount"].sum() or 0)),
        "collected": fmt_yuan(collected),
        "refunded": fmt_yuan(refunded),
        "net_collected": fmt_yuan(collected - refunded),
        "settled": fmt_yuan(int(ties["settled"].sum() or 0)),
        "deposited": fmt_yuan(deposited),
        "counter_shifts": shifts.height,
        "till_difference": fmt_yuan(till),
        "written_off": fmt_yuan(int(written["amount"].sum() or 0)),
        "channels": channels,
        "worklist_open": int(ties["worklist_open"].sum() or 0),
        "ties": all(c["ties"] for c in channels),
        # every day with payments reconciled (the counter reconciles by its shifts instead)
        "fully_reconciled": all(not c["not_reconciled_days"] for c in channels
                                if c["channel"] != "counter"),
    }
