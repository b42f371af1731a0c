"""An account's timeline (客户催费时间线): everything known about it, oldest first, one line each —
what a collector reads before knocking on the door.

Each source is read through its owner's service: reads (metering), bills (billing), payments
(payments), notices (notify), every collection event (visits, promises, plans, tickets, tasks,
ratings written by other parts of collections arrive as ``collection_events`` rows, so they
show here without this module knowing their tables), collection tasks, the account's worklist
rows, and the reasons of its latest risk score.

Each item: ``at`` (ISO instant, Asia/Shanghai), ``kind``, ``summary`` (one line) and the fields
it came from.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import BUSINESS_TZ, Clock, SystemClock, business_date
from dianfei.core.money import fmt_qty, fmt_yuan

if TYPE_CHECKING:
    from dianfei.db.engine import Database

#: how far back meter reads go (one read a month is kept: the last of each month)
READ_MONTHS = 13


def _iso(value: datetime) -> str:
    return value.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=BUSINESS_TZ)


def _reads(db: Database, account_id: str, now: datetime) -> list[dict[str, Any]]:
    import polars as pl

    from dianfei.metering.service import account_reads

    reads = account_reads(db.engine, account_id, now - timedelta(days=31 * READ_MONTHS))
    if reads.height == 0:
        return []
    monthly = (reads.filter(pl.col("register") == "total")
               .with_columns(pl.col("read_at").dt.convert_time_zone(str(BUSINESS_TZ))
                             .dt.strftime("%Y-%m").alias("_m"))
               .sort("read_at").group_by("meter_id", "_m", maintain_order=True).last())
    return [{"at": _iso(r["read_at"]), "kind": "read",
             "summary": f"meter {r['meter_id']} read {fmt_qty(r['value'])} kWh ({r['source']})",
             "meter_id": r["meter_id"], "value": fmt_qty(r["value"]), "source": r["source"]}
            for r in monthly.iter_rows(named=True)]


def _bills(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.billing.service import bills_of_accounts

    with db.engine.connect() as conn:
        bills = bills_of_accounts(conn, [account_id])
    return [{"at": _iso(_day_start(r["issued_on"])), "kind": "bill",
             "summary": f"bill {r['bill_id']} for {r['period']}: ¥{fmt_yuan(r['amount'])}, "
                        f"due {r['due_on']} ({r['status']})",
             "bill_id": r["bill_id"], "amount": fmt_yuan(r["amount"]),
             "due_on": r["due_on"].isoformat(), "status": r["status"]}
            for r in bills.iter_rows(named=True)]


def _payments(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.payments.service import account_payments

    return [{"at": _iso(r["paid_at"]), "kind": "payment",
             "summary": f"paid ¥{fmt_yuan(int(r['amount']))} via {r['channel']} ({r['status']})",
             "payment_id": r["payment_id"], "amount": fmt_yuan(int(r["amount"])),
             "channel": r["channel"], "status": r["status"]}
            for r in account_payments(db.engine, account_id).iter_rows(named=True)]


def _notices(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.notify.service import timeline

    return [{"at": _iso(d.sent_at or d.queued_at), "kind": "notice",
             "summary": f"{d.notice} by {d.channel}: {d.status}", "notice": d.notice,
             "channel": d.channel, "status": d.status}
            for d in timeline(db, account_id)]


def _event_summary(e: dict[str, Any]) -> str:
    parts = [str(e["type"]).replace("_", " ")]
    for k in ("level", "notice", "amount", "outcome", "status", "reason"):
        if e.get(k) not in (None, ""):
            parts.append(f"{k} {'¥' if k == 'amount' else ''}{e[k]}")
    return "; ".join(parts)


def _events(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.collections.service import events_json

    out = []
    for e in events_json(db, account_id):
        item = {k: v for k, v in e.items() if k not in ("account", "at", "type")}
        out.append({"at": e["at"], "kind": f"event:{e['type']}", "summary": _event_summary(e),
                    **item})
    return out


def _tasks(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.collections.worklist_repository import tasks_of_accounts

    out = []
    for r in tasks_of_accounts(db.engine, [account_id]).iter_rows(named=True):
        detail = json.loads(r["detail"]) if r["detail"] else {}
        level = f" ({detail['level']})" if isinstance(detail, dict) and detail.get("level") else ""
        out.append({"at": _iso(r["created_at"]), "kind": "task",
                    "summary": f"task {r['kind']}{level} opened, {r['status']}",
                    "task_id": r["task_id"], "task_kind": r["kind"], "status": r["status"]})
        if r["done_at"] is not None:
            out.append({"at": _iso(r["done_at"]), "kind": "task_done",
                        "summary": f"task {r['kind']} {r['status']} by {r['done_by'] or '?'}",
                        "task_id": r["task_id"], "task_kind": r["kind"], "status": r["status"]})
    return out


def _worklist(db: Database, account_id: str) -> list[dict[str, Any]]:
    from dianfei.collections.worklist_repository import entries_of_account

    return [{"at": _iso(r["assigned_at"]), "kind": "worklist",
             "summary": f"on collector {r['collector_id']}'s list for {r['day']} "
                        f"({r['rule']}): {r['reason']}",
             "day": r["day"].isoformat(), "collector": r["collector_id"],
             "moved_from": r["moved_from"]}
            for r in entries_of_account(db.engine, account_id).iter_rows(named=True)]


def _risk(db: Database, account_id: str, now: datetime) -> list[dict[str, Any]]:
    """The account's score today, through the same scorer the worklists rank with."""
    import polars as pl

    from dianfei.collections.service import amounts_due, broken_plan_dates
    from dianfei.collections.worklist import risk_features
    from dianfei.risk.service import scorer_for

    day = business_date(now)
    with db.engine.connect() as conn:
        owed = max(0, amounts_due(conn, [account_id]).get(account_id, 0))
    feats = risk_features(db, pl.DataFrame({"account_id": [account_id], "amount_overdue": [owed]},
                                           schema={"account_id": pl.String,
                                                   "amount_overdue": pl.Int64}), day)
    s = scorer_for(db, day, plans=lambda: broken_plan_dates(db)).score(feats).to_dicts()[0]
    reasons = s["reasons"] or "no risk signals"
    return [{"at": _iso(now), "kind": "risk",
             "summary": f"risk score {s['score']} ({s['band']}): {reasons}",
             "score": s["score"], "band": s["band"], "reasons": reasons}]


_ORDER = {"read": 0, "bill": 1, "task": 4, "worklist": 5, "notice": 6, "payment": 7,
          "task_done": 8, "risk": 9}


def account_timeline(db: Database, account_id: str, *,
                     clock: Clock | None = None) -> list[dict[str, Any]]:
    """Everything about ``account_id``, oldest first (see the module docstring); each item also
    carries ``account`` (the customer id) and ``account_id``. Refused for an unknown account."""
    from dianfei.customers.service import customer_of_account

    now = (clock or SystemClock()).now()
    with db.engine.connect() as conn:
        customer = customer_of_account(conn, account_id)  # NotFoundError when unknown
    items = (_reads(db, account_id, now) + _bills(db, account_id) + _payments(db, account_id)
             + _notices(db, account_id) + _events(db, account_id) + _tasks(db, account_id)
             + _worklist(db, account_id) + _risk(db, account_id, now))
    items.sort(key=lambda i: (datetime.fromisoformat(i["at"]), _ORDER.get(i["kind"], 3)))
    return [{"account": customer, "account_id": account_id, **i} for i in items]
