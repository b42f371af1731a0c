"""The daily run's watch over active payment plans (step 2 of ``service.run_day``).

Each day, per active plan:

1. an instalment that rides on a bill (``instalment`` plans) takes that bill's id and due date
   as soon as the bill is issued (billing service ``bills_of_accounts``);
2. what the customer owes under the plan by today is the instalments due before today plus the
   bills issued after the agreement that fell due before today (keeping a plan means paying the
   new bills too); what they paid is every payment posted since the agreement up to the run's
   clock (payments service ``paid_since``: by time, never by ledger ids);
3. paid ≥ total + the new bills due by the last instalment → ``completed`` (a new bill paid
   before it is due is that bill's, not an instalment paid ahead); paid short of what is due
   by today → the earliest obligation not covered is *missed*: within the plan's grace days it
   is noted once (``instalment_missed``) and the plan stands; after them the plan is
   ``broken`` and the dunning ladder resumes (levels match only accounts without an active
   plan).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dianfei.collections import repository
from dianfei.collections.context import Context, event_frame, write_events
from dianfei.core.money import fmt_yuan


def _bind(ctx: Context, conn: Any, plans: Any, inst: Any) -> Any:
    """Instalments of ``instalment`` plans take their issued bill's id and due date."""
    import polars as pl

    from dianfei.billing.service import bills_of_accounts

    unbound = inst.filter(pl.col("period").is_not_null() & pl.col("bill_id").is_null())
    if unbound.height == 0:
        return inst
    acct = plans.select("plan_id", "account_id")
    bills = bills_of_accounts(conn, unbound.join(acct, on="plan_id")["account_id"].unique()
                              .to_list()).filter(pl.col("status") != "cancelled")
    # the latest live bill of the period (a rebill replaces a cancelled one)
    bills = bills.sort("issued_on", "bill_id").group_by("account_id", "period").last()
    found = (unbound.join(acct, on="plan_id")
             .join(bills.select("account_id", "period", pl.col("bill_id").alias("new_bill"),
                                pl.col("due_on").alias("bill_due")),
                   on=["account_id", "period"], how="inner"))
    repository.bind_instalments(conn, found.select(
        "plan_id", "seq", pl.col("new_bill").alias("bill_id"),
        pl.col("bill_due").alias("due_on")).to_dicts())
    if found.height == 0:
        return inst
    return (inst.join(found.select("plan_id", "seq", "new_bill", "bill_due"),
                      on=["plan_id", "seq"], how="left")
            .with_columns(pl.coalesce("new_bill", "bill_id").alias("bill_id"),
                          pl.coalesce("bill_due", "due_on").alias("due_on"))
            .drop("new_bill", "bill_due"))


def _new_bills(conn: Any, plans: Any) -> dict[int, list[tuple[Any, int]]]:
    """Per plan, (due_on, amount) of the live bills issued after the day it was agreed."""
    import polars as pl

    from dianfei.billing.service import bills_of_accounts

    bills = bills_of_accounts(conn, plans["account_id"].to_list()).filter(
        pl.col("status") != "cancelled")
    rows = plans.select("plan_id", "account_id", "agreed_on").join(bills, on="account_id")
    out: dict[int, list[tuple[Any, int]]] = {}
    for r in rows.filter(pl.col("issued_on") > pl.col("agreed_on")).iter_rows(named=True):
        out.setdefault(r["plan_id"], []).append((r["due_on"], int(r["amount"])))
    return out


def check_plans(ctx: Context, conn: Any) -> None:
    """Complete, note a missed instalment of, or break each active plan (see the module doc)."""
    import polars as pl

    from dianfei.payments.service import paid_since

    plans = repository.active_plans(conn)
    if plans.height == 0:
        return
    inst = _bind(ctx, conn, plans, repository.instalments(conn))
    paid = paid_since(ctx.db.engine, plans.select("account_id", pl.col("agreed_at").alias("since"))
                      .unique()).rename({"since": "agreed_at"})
    # a replayed day does not see payments posted after its clock's now (only an account with
    # payments since its agreement can have any)
    payers = paid.filter(pl.col("paid") > 0).select("account_id").unique()
    later = paid_since(ctx.db.engine, payers.with_columns(
        pl.lit(ctx.now).cast(pl.Datetime("us", "UTC")).alias("since"))).select(
        "account_id", pl.col("paid").alias("later"))
    plans = (plans.join(paid, on=["account_id", "agreed_at"], how="left")
             .join(later, on="account_id", how="left")
             .with_columns((pl.col("paid").fill_null(0) - pl.col("later").fill_null(0))
                           .alias("paid")))
    new_bills = _new_bills(conn, plans)
    by_plan: dict[int, list[tuple[Any, int, str]]] = {}
    for r in inst.sort("due_on", "seq").iter_rows(named=True):
        by_plan.setdefault(r["plan_id"], []).append((r["due_on"], int(r["amount"]),
                                                    f"instalment {r['seq']}"))
    rows, day = [], ctx.day
    ended: dict[str, list[int]] = {"completed": [], "broken": []}
    for p in plans.iter_rows(named=True):
        pid, paid_fen = p["plan_id"], int(p["paid"])
        bills = [(d, a, "bill") for d, a in new_bills.get(pid, [])]
        due_items = sorted([x for x in by_plan.get(pid, []) + bills if x[0] < day],
                           key=lambda x: x[0])
        # completed when the payments cover every instalment and the new bills falling due
        # by the last one (a bill paid early is the bill's, not an instalment paid ahead)
        last_due = max((d for d, _, _ in by_plan.get(pid, [])), default=day)
        needed = int(p["total"]) + sum(a for d, a, _ in bills if d <= last_due)
        base = {"account_id": p["account_id"], "customer_id": p["customer_id"],
                "at": ctx.now, "business_date": day}
        if paid_fen >= needed:
            ended["completed"].append(pid)
            rows.append({**base, "key": f"plan:{pid}:completed", "type": "plan_completed",
                         "amount": paid_fen, "detail": json.dumps({"plan_id": pid})})
            continue
        cum, missed = 0, None
        for d, a, what in due_items:
            cum += a
            if cum > paid_fen:
                missed = (d, what, cum - paid_fen)
                break
        if missed is None:
            continue
        missed_on, what, short = missed
        grace_until = missed_on + timedelta(days=int(p["grace_days"]))
        detail = {"plan_id": pid, "missed": what, "due_on": missed_on.isoformat(),
                  "shortfall": fmt_yuan(short), "grace_until": grace_until.isoformat(),
                  "due_by_now": fmt_yuan(cum)}
        if day > grace_until:
            ended["broken"].append(pid)
            ctx.report.plans_broken += 1
            rows.append({**base, "key": f"plan:{pid}:broken", "type": "plan_broken",
                         "amount": paid_fen, "detail": json.dumps(detail)})
        else:
            rows.append({**base, "key": f"plan:{pid}:missed:{missed_on.isoformat()}",
                         "type": "instalment_missed", "amount": short,
                         "detail": json.dumps(detail)})
    for status, ids in ended.items():
        repository.end_plans(conn, ids, status, day)
    if rows:
        have = repository.existing_keys(conn, "collection_events", [r["key"] for r in rows])
        write_events(conn, event_frame([r for r in rows if r["key"] not in have]))
