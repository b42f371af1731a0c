"""Reading payment plans: one plan, the list, the instalments due with a bill (the bill
document's hook) and plan performance (kept, broken, completed, recovered) by collector or
segment over a date range. What the CLI, the REST API and the demo print; no business rules
beyond the counting defined here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from dianfei.collections import repository
from dianfei.core.clock import BUSINESS_TZ, Period, start_of_day
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Connection, Engine

STATUSES = ("proposed", "active", "completed", "broken", "cancelled")
REPORT_BY = ("collector", "segment")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value.isoformat()
    return str(value.astimezone(BUSINESS_TZ).isoformat(timespec="seconds"))


def _plan_row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"plan_id": r["plan_id"], "account": r["customer_id"], "account_id": r["account_id"],
            "kind": r["kind"], "status": r["status"], "segment": r["segment"],
            "customer_class": r["customer_class"], "total": fmt_yuan(r["total"]),
            "down_payment": fmt_yuan(r["down_payment"]), "grace_days": r["grace_days"],
            "agreed_at": _iso(r["agreed_at"]), "requested_by": r["requested_by"],
            "approved_by": r["approved_by"], "approved_at": _iso(r["approved_at"]),
            "ended_on": _iso(r["ended_on"]), "ended_by": r["ended_by"],
            "end_reason": r["end_reason"]}


def list_plans(source: Engine | Connection, *, status: str | None = None,
               account_id: str | None = None, requested_by: str | None = None,
               limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Plans, newest first (``requested_by``: a collector's own; ``limit``/``offset``: a page)."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    return [_plan_row(r) for r in repository.plans(
        source, status=status, account_id=account_id, requested_by=requested_by, limit=limit,
        offset=offset).iter_rows(named=True)]


def count_plans(source: Engine | Connection, *, status: str | None = None,
                account_id: str | None = None, requested_by: str | None = None) -> int:
    """How many plans :func:`list_plans` pages through."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    return repository.count_plans(source, status=status, account_id=account_id,
                                  requested_by=requested_by)


def show_plan(source: Engine | Connection, plan_id: int) -> dict[str, Any]:
    """One plan with its instalments (seq 0: the down payment; ``period``/``bill_id``: the bill
    an instalment falls due with)."""
    found = repository.plans(source, plan_id=plan_id)
    if found.height == 0:
        raise NotFoundError(f"payment plan {plan_id} does not exist")
    out = _plan_row(found.row(0, named=True))
    out["instalments"] = [
        {"seq": r["seq"], "due_on": r["due_on"].isoformat(), "amount": fmt_yuan(r["amount"]),
         "period": r["period"], "bill_id": r["bill_id"]}
        for r in repository.instalments(source, [plan_id]).iter_rows(named=True)]
    return out


def bill_document_instalments(engine: Engine, accounts: Sequence[str],
                              period: Period) -> dict[str, list[dict[str, Any]]]:
    """The bill document's instalment hook (``billing.documents.INSTALMENT_HOOK``): per account,
    the instalments of its ``instalment`` plan that fall due with ``period``'s bill — of an
    active plan, or a completed one (a bill shows what fell due with it, also when drawn again
    later); a broken or cancelled plan no longer stands, so its instalments are not shown."""
    with engine.connect() as conn:
        rows = repository.instalments_due(conn, list(accounts), str(period))
    out: dict[str, list[dict[str, Any]]] = {}
    for account_id, plan_id, seq, amount, of in rows:
        if not of:  # a plan without numbered instalments (its down payment alone): nothing due
            continue
        out.setdefault(str(account_id), []).append({
            "plan_id": int(plan_id), "instalment": int(seq), "of": int(of),
            "amount": fmt_yuan(int(amount))})
    return out


# -- performance ---------------------------------------------------------------------------------


def _paid_between(engine: Engine, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (plan_id, account_id, start, end instants) with ``recovered``: payments posted
    in [start, end) — two reads of the payments service's ``paid_since``."""
    import polars as pl

    from dianfei.payments.service import paid_since

    starts = frame.select("account_id", pl.col("start").alias("since")).unique()
    ends = frame.select("account_id", pl.col("end").alias("since")).unique()
    a = paid_since(engine, starts).rename({"since": "start", "paid": "from_start"})
    b = paid_since(engine, ends).rename({"since": "end", "paid": "from_end"})
    return (frame.join(a, on=["account_id", "start"], how="left")
            .join(b, on=["account_id", "end"], how="left")
            .with_columns(pl.when(pl.col("end") > pl.col("start"))
                          .then(pl.col("from_start") - pl.col("from_end")).otherwise(0)
                          .fill_null(0).alias("recovered")))


def plan_performance(engine: Engine, first: date, last: date, by: str) -> dict[str, Any]:
    """Plans in force at some time in ``first``..``last`` (business days), grouped ``by``
    collector (the customer's assigned collector) or segment:

    - ``in_force``: plans active at some point of the range;
    - ``kept``: of those, the ones not broken or cancelled by ``last`` (still active, or
      completed);
    - ``completed`` / ``broken``: plans that ended so within the range;
    - ``recovered``: payments posted on their accounts within the range while the plan stood.
    """
    import polars as pl

    from dianfei.customers.service import account_profiles, customer_dimensions

    if by not in REPORT_BY:
        raise ValidationError(f"--by must be one of {', '.join(REPORT_BY)}, got {by!r}")
    if last < first:
        raise ValidationError(f"--to {last} is before --from {first}")
    plans = repository.plans(engine).filter(pl.col("status") != "proposed")
    # the day a plan came into force: approval for a proposed one, else the agreement
    plans = plans.with_columns(
        pl.coalesce(pl.col("approved_at"), pl.col("agreed_at")).alias("in_force_at"))
    plans = plans.with_columns(
        pl.col("in_force_at").dt.convert_time_zone(str(BUSINESS_TZ)).dt.date().alias("from_day"))
    # a plan never in force (cancelled while proposed) counts nowhere
    plans = plans.filter(pl.col("plan_id").is_in(list(repository.agreed_plan_ids(engine))))
    live = plans.filter((pl.col("from_day") <= last)
                        & (pl.col("ended_on").is_null() | (pl.col("ended_on") >= first)))
    ended_in = pl.col("ended_on").is_not_null() & (pl.col("ended_on") >= first) & (
        pl.col("ended_on") <= last)
    live = live.with_columns(
        (~(pl.col("status").is_in(["broken", "cancelled"]) & pl.col("ended_on").is_not_null()
           & (pl.col("ended_on") <= last))).alias("kept"),
        ((pl.col("status") == "broken") & ended_in).alias("broke"),
        ((pl.col("status") == "completed") & ended_in).alias("done"),
        pl.max_horizontal(pl.col("in_force_at"), pl.lit(start_of_day(first))).alias("start"),
        pl.min_horizontal(
            pl.lit(start_of_day(last + timedelta(days=1))),
            # through the end of the day the plan ended (the payment that completed it counts)
            pl.when(pl.col("ended_on").is_null()).then(pl.lit(start_of_day(last + timedelta(days=1))))
            .otherwise(pl.col("ended_on").map_elements(
                lambda d: start_of_day(d + timedelta(days=1)),
                return_dtype=pl.Datetime("us", "UTC")))).alias("end"))
    if live.height:
        live = _paid_between(engine, live)
    else:
        live = live.with_columns(pl.lit(0, pl.Int64).alias("recovered"))
    if by == "collector":
        dims = customer_dimensions(engine).select("customer_id", "collector_id")
        live = live.join(dims, on="customer_id", how="left").with_columns(
            pl.col("collector_id").fill_null("(none)").alias("group"))
    else:
        prof = account_profiles(engine).select("account_id", "low_income")
        live = live.join(prof, on="account_id", how="left").with_columns(
            pl.coalesce(pl.col("segment"),
                        pl.when(pl.col("low_income")).then(pl.lit("low_income"))
                        .otherwise(pl.lit("standard"))).alias("group"))
    groups = (live.group_by("group").agg(
        pl.len().alias("in_force"), pl.col("kept").sum().alias("kept"),
        pl.col("broke").sum().alias("broken"), pl.col("done").sum().alias("completed"),
        pl.col("recovered").sum().alias("recovered")).sort("group")
        if live.height else None)
    rows = []
    totals = {"in_force": 0, "kept": 0, "broken": 0, "completed": 0, "recovered": 0}
    for r in (groups.iter_rows(named=True) if groups is not None else []):
        row = {by: r["group"], "in_force": int(r["in_force"]), "kept": int(r["kept"]),
               "broken": int(r["broken"]), "completed": int(r["completed"]),
               "recovered": fmt_yuan(int(r["recovered"])),
               "kept_rate": _rate(int(r["kept"]), int(r["in_force"]))}
        rows.append(row)
        for k in totals:
            totals[k] += int(r[k])
    return {"from": first.isoformat(), "to": last.isoformat(), "by": by, "rows": rows,
            "total": {"in_force": totals["in_force"], "kept": totals["kept"],
                      "broken": totals["broken"], "completed": totals["completed"],
                      "recovered": fmt_yuan(totals["recovered"]),
                      "kept_rate": _rate(totals["kept"], totals["in_force"])}}


def _rate(part: int, whole: int) -> str | None:
    """A share as a percentage with one decimal, half-up, in integers (no float)."""
    if not whole:
        return None
    tenths = (part * 1000 * 2 + whole) // (2 * whole)
    return f"{tenths // 10}.{tenths % 10}"


def plan_events_json(engine: Engine, first: date, last: date) -> list[dict[str, Any]]:
    """The plan events of the range (what a supervisor reads next to the report)."""
    return [{"account": r["account_id"], "account_id": r["account_id"], "type": r["type"],
             "business_date": r["business_date"].isoformat(),
             "amount": fmt_yuan(r["amount"]) if r["amount"] is not None else None,
             **(json.loads(r["detail"]) if r["detail"] else {})}
            for r in repository.plan_events(engine, first, last).iter_rows(named=True)]
