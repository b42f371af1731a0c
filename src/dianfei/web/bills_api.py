"""Bills and payments over REST: bills by account, customer or period with what is paid, open
and overdue of each; payments of an account or customer by channel, status and date. A customer
user reaches only their own (another customer's id or account → 404; without a filter, their
own customer)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_qty, fmt_yuan
from dianfei.db.engine import Database
from dianfei.web.auth import guard, signed_in
from dianfei.web.ownership import is_customer, own_account, own_customer
from dianfei.web.paging import Page, check_day, page, period_param

_Id = Annotated[str | None, Query(min_length=1, max_length=64)]
BILL_STATES = ("paid", "open", "overdue", "cancelled")


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.billing.service import bills_between, bills_of_accounts
    from dianfei.customers.lookup import customer_accounts
    from dianfei.payments.service import account_payments, open_items, payment_summary

    def accounts_asked(request: Request, account_id: str | None, customer_id: str | None
                       ) -> list[str] | None:
        """The accounts a list is limited to (None: every account, staff only)."""
        who = signed_in(request)
        if customer_id is None and account_id is None and is_customer(who):
            customer_id = who.customer_id or ""
        found: list[str] | None = None
        if customer_id is not None:
            own_customer(request, customer_id)
            with db.engine.connect() as conn:
                found = customer_accounts(conn, customer_id)
        if account_id is not None:
            own_account(db, request, account_id)
            found = [a for a in found if a == account_id] if found is not None else [account_id]
        return found

    @app.get("/api/v1/bills", tags=["billing"], **guard("bills:read", "own:bills"))
    def api_bills(request: Request, p: Annotated[Page, Depends(page)],
                  account_id: _Id = None, customer_id: _Id = None,
                  period: Annotated[str | None, Query(description="YYYY-MM")] = None,
                  state: Annotated[str | None, Query(
                      description="paid, open, overdue or cancelled")] = None,
                  ) -> dict[str, Any]:
        """Bills newest period first, each with paid, open and overdue amounts (yuan) and its
        state: ``paid``, ``open`` (not yet due), ``overdue`` or ``cancelled``. Staff name an
        account, a customer or a period."""
        if state is not None and state not in BILL_STATES:
            raise ValidationError(f"one of {', '.join(BILL_STATES)}", where="state")
        wanted = period_param(period) if period is not None else None
        accounts = accounts_asked(request, account_id, customer_id)
        if accounts is None and wanted is None:
            raise ValidationError("name an account_id, a customer_id or a period",
                                  where="account_id")
        if accounts is not None:
            with db.engine.connect() as conn:
                frame = bills_of_accounts(conn, accounts)
            if wanted is not None:
                frame = frame.filter(frame["period"] == str(wanted))
        else:
            frame = bills_between(db.engine, str(wanted), str(wanted))
        today = business_date(clock.now())
        bills = sorted(frame.iter_rows(named=True), key=lambda b: (b["period"], b["bill_id"]),
                       reverse=True)
        if state is None:
            return p.of(_with_state(bills[p.offset:p.offset + p.limit], today), total=len(bills))
        rows = [b for b in _with_state(bills, today) if b["state"] == state]
        return p.of(rows)

    def _with_state(bills: list[dict[str, Any]], today: date) -> list[dict[str, Any]]:
        with db.engine.connect() as conn:
            items = open_items(conn, sorted({b["account_id"] for b in bills})) if bills else None
        owing = {} if items is None else {
            r["bill_id"]: int(r["open_amount"]) for r in items.iter_rows(named=True)
            if r["item_kind"] == "bill"}
        return [bill_json(b, owing.get(b["bill_id"], 0), today) for b in bills]

    @app.get("/api/v1/payments", tags=["payments"], **guard("payments:read", "own:payments"))
    def api_payments_list(request: Request, p: Annotated[Page, Depends(page)],
                          account_id: _Id = None, customer_id: _Id = None,
                          channel: _Id = None,
                          status: Annotated[str | None, Query(
                              description="posted, refunded or returned")] = None,
                          day_from: Annotated[date | None, Query(alias="from")] = None,
                          day_to: Annotated[date | None, Query(alias="to")] = None,
                          ) -> dict[str, Any]:
        """Payments of an account or a customer, oldest first, filtered by channel, status and
        business day of payment ``from`` … ``to``; amounts in yuan."""
        check_day(day_from, "from")
        check_day(day_to, "to")
        accounts = accounts_asked(request, account_id, customer_id)
        if accounts is None:
            raise ValidationError("name an account_id or a customer_id", where="account_id")
        rows: list[dict[str, Any]] = []
        for acct in accounts:
            for r in account_payments(db.engine, acct).iter_rows(named=True):
                paid_on = business_date(r["paid_at"])
                if ((channel is None or r["channel"] == channel)
                        and (status is None or r["status"] == status)
                        and (day_from is None or paid_on >= day_from)
                        and (day_to is None or paid_on <= day_to)):
                    rows.append({"account_id": acct, **payment_summary(r)})
        rows.sort(key=lambda r: (r["paid_at"], r["payment_id"]))
        return p.of(rows)


def bill_json(b: dict[str, Any], open_fen: int, today: date) -> dict[str, Any]:
    """A bill with what is paid, open and overdue of it (yuan) and its state."""
    amount = int(b["amount"])
    cancelled = b["status"] == "cancelled"
    open_fen = 0 if cancelled else max(open_fen, 0)
    paid = 0 if cancelled else max(amount - open_fen, 0)
    overdue = open_fen if b["due_on"] is not None and b["due_on"] < today else 0
    state = ("cancelled" if cancelled else "overdue" if overdue else "open" if open_fen
             else "paid")
    return {"bill_id": b["bill_id"], "account_id": b["account_id"],
            "customer_id": b["customer_id"], "period": b["period"],
            "issued_on": _iso(b["issued_on"]), "due_on": _iso(b["due_on"]),
            "kwh": fmt_qty(int(b["kwh"])), "amount": fmt_yuan(amount), "status": b["status"],
            "paid_amount": fmt_yuan(paid), "open_amount": fmt_yuan(open_fen),
            "overdue_amount": fmt_yuan(overdue), "state": state}


def _iso(v: date | None) -> str | None:
    return None if v is None else v.isoformat()
