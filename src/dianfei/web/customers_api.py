"""Customers and accounts over REST: search, one customer (phone and ID number masked unless the
role has ``pii:read``), one account with its balance and status. A customer user reaches only
their own customer and accounts (another's → 404)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request

from dianfei.core.clock import Clock, business_date
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.web.auth import guard, signed_in
from dianfei.web.ownership import may_see_pii, own_account, own_customer
from dianfei.web.paging import Page, envelope, page

_Text = Annotated[str | None, Query(min_length=1, max_length=64)]


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.customers import lookup
    from dianfei.db.pii import cipher_for

    @app.get("/api/v1/customers", tags=["customers"], **guard("customers:read"))
    def api_customer_search(
            request: Request, p: Annotated[Page, Depends(page)],
            customer_id: Annotated[str | None, Query(
                min_length=1, max_length=64, description="customer or account id (prefix)")] = None,
            name: Annotated[str | None, Query(min_length=1, max_length=64,
                                              description="part of the name")] = None,
            phone_suffix: Annotated[str | None, Query(
                min_length=1, max_length=11, description="the phone's last 4 … 11 digits")] = None,
            meter_id: Annotated[str | None, Query(min_length=1, max_length=64,
                                                  description="meter number (prefix)")] = None,
            customer_class: _Text = None, region_id: _Text = None) -> dict[str, Any]:
        """Customers matching every criterion given, by id; phones masked unless ``pii:read``."""
        who = signed_in(request)
        query = lookup.CustomerQuery(customer_id=customer_id, name=name,
                                     phone_suffix=phone_suffix, meter_id=meter_id,
                                     customer_class=customer_class, region_id=region_id)
        query.check()
        with db.engine.connect() as conn:
            rows, total = lookup.search(conn, cipher_for(db), query, limit=p.limit,
                                        offset=p.offset, clear_pii=may_see_pii(who))
        return envelope(rows, total, p)

    @app.get("/api/v1/customers/{customer_id}", tags=["customers"],
             **guard("customers:read", "own:customer"))
    def api_customer(customer_id: str, request: Request) -> dict[str, Any]:
        """One customer with their accounts. Phone and ID number masked unless ``pii:read``."""
        who = own_customer(request, customer_id)
        with db.engine.connect() as conn:
            return lookup.customer(conn, cipher_for(db), customer_id, clear_pii=may_see_pii(who))

    @app.get("/api/v1/accounts/{account_id}", tags=["customers"],
             **guard("customers:read", "own:customer"))
    def api_account(account_id: str, request: Request) -> dict[str, Any]:
        """One account: customer, status, meters, tariffs, and the money — balance (negative:
        credit), open and overdue amounts from the ledger's open items."""
        own_account(db, request, account_id)
        with db.engine.connect() as conn:
            out = lookup.account(conn, account_id)
            out.update(account_money(conn, account_id, business_date(clock.now())))
        return out


def account_money(conn: Any, account_id: str, today: date) -> dict[str, Any]:
    """balance, open (bills and late fees still owed), overdue (of those, past due) — yuan."""
    from dianfei.ledger.service import balance
    from dianfei.payments.service import open_items

    owed = balance(conn, account_id)
    items = open_items(conn, [account_id]).to_dicts()
    open_amount = sum(int(i["open_amount"]) for i in items)
    overdue = sum(int(i["open_amount"]) for i in items
                  if i["due_on"] is not None and i["due_on"] < today)
    return {"as_of": today.isoformat(), "balance": fmt_yuan(owed),
            "open_amount": fmt_yuan(open_amount), "overdue_amount": fmt_yuan(overdue),
            "in_arrears": overdue > 0}
