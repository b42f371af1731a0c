"""The counter clerk's first question — what does this account owe? — answered in one place.

:func:`account_view` composes the money core's open items (ledger service), the late fees accrued
but not yet posted, the payment plan and the supply state (stop case, prepayment stage). The CLI
(``dianfei account show``), the API and the console print it; none of them adds business logic.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from dianfei.collections import repository
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dianfei.db.engine import Database


def account_view(conn: Connection, account_id: str, *, as_of: date) -> dict[str, Any]:
    """Balance, amount due, open items with their ages, credit, late fees (posted and pending),
    the active plan and the supply state of one account, as of a business date."""
    from dianfei.customers.service import customer_of_account, customers_by_id
    from dianfei.ledger.service import aging_bucket
    from dianfei.ledger.service import open_items as ledger_open_items

    customer_id = customer_of_account(conn, account_id)  # NotFoundError: no such account
    customer = customers_by_id(conn, [customer_id]).get(customer_id, {})
    open_items = ledger_open_items(conn, [account_id]).sort("due_on", "reference",
                                                            nulls_last=True)
    rows: list[dict[str, Any]] = []
    owed = credit = overdue = fees_open = 0
    for r in open_items.iter_rows(named=True):
        fen = int(r["open_amount"])
        if r["item_kind"] == "credit":
            credit += -fen
            continue
        owed += fen
        due = r["due_on"]
        days = (as_of - due).days if due is not None else 0
        if days > 0:
            overdue += fen
        if r["item_kind"] == "late_fee":
            fees_open += fen
        rows.append({"reference": r["reference"], "kind": r["item_kind"], "bill_id": r["bill_id"],
                     "due_on": due.isoformat() if due else None, "amount": fmt_yuan(r["amount"]),
                     "open": fmt_yuan(fen), "days_overdue": max(days, 0),
                     "aging": aging_bucket(days)})
    pending = repository.pending_fees(conn, [account_id]).get(account_id, 0)
    balance = owed - credit
    plan = repository.active_plan(conn, account_id)
    case = repository.live_case(conn, account_id)
    prepay = repository.prepay_stage(conn, account_id)
    supply = "connected"
    if case is not None:
        supply = {"suspended": "suspended", "reconnecting": "reconnecting"}.get(
            str(case[2]), "stop_pending")
    return {
        "account": account_id, "customer_id": customer_id, "name": customer.get("name"),
        "customer_class": customer.get("customer_class"),
        "payment_mode": customer.get("payment_mode"), "as_of": as_of.isoformat(),
        "balance": fmt_yuan(balance), "amount_due": fmt_yuan(balance + pending),
        "owed": fmt_yuan(owed), "overdue": fmt_yuan(overdue), "credit": fmt_yuan(credit),
        "late_fees": {"open": fmt_yuan(fees_open), "pending": fmt_yuan(pending)},
        "open_items": rows,
        "plan": None if plan is None else {
            "plan_id": int(plan[0]), "agreed_on": str(plan[1]), "total": fmt_yuan(int(plan[2])),
            "status": plan[3]},
        "supply": {"state": supply, "stop_case": None if case is None else {
            "case_id": int(case[0]), "mode": case[1], "status": case[2], "bill_id": case[3]},
            "prepay": None if prepay is None else {
                "stage": prepay[0], "available": fmt_yuan(int(prepay[1])),
                "as_of": str(prepay[2])}},
    }


def owed(conn: Connection, accounts: list[str]) -> dict[str, int]:
    """What each of ``accounts`` owes (fen; ≤ 0: nothing owed), fresh: the sum of its open
    items (ledger service; ``ledger check`` proves it equal to the ledger balance) and its late
    fees accrued but not yet posted."""
    from dianfei.ledger.service import balances

    out = balances(conn, accounts)
    for a, fen in repository.pending_fees(conn, accounts).items():
        out[a] = out.get(a, 0) + fen
    return out


def account_segment(db: Database, account_id: str, *, as_of: date) -> dict[str, Any] | None:
    """The account's risk segment (客户分类) as of a business date — by the same rules and from
    the same facts as the daily run gives its ladder (collections/segments.py): name, label (zh-CN
    and en) and rule (the rule that matched, in its own words). None for a closed account."""
    from dianfei.collections.segments import account_segments

    got = account_segments(db, as_of, [account_id])
    if got.height == 0:
        return None
    r = got.row(0, named=True)
    return {"name": r["risk_segment"], "label": r["segment_label"], "rule": r["segment_why"]}
