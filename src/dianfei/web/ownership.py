"""Who may see which customer's data over the API.

A customer user reaches only their own customer and its accounts: another customer's id — or
an account of another customer — answers 404, exactly as one that does not exist (never a hint
that it does). Staff reach any. Phone and ID numbers are shown in clear only to a role with
``pii:read``; everyone else sees them masked.
"""

from __future__ import annotations

from fastapi import Request

from dianfei.core.errors import NotFoundError
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows
from dianfei.web.auth import signed_in


def may_see_pii(who: Principal) -> bool:
    return allows(who.role, "pii:read")


def is_customer(who: Principal) -> bool:
    return who.role == "customer"


def own_customer(request: Request, customer_id: str) -> Principal:
    """The caller, when they may see ``customer_id``; NotFoundError otherwise."""
    who = signed_in(request)
    if is_customer(who) and who.customer_id != customer_id:
        raise NotFoundError(f"customer {customer_id} does not exist")
    return who


def own_account(db: Database, request: Request, account_id: str) -> tuple[Principal, str]:
    """The caller and the account's customer, when the caller may see ``account_id``;
    NotFoundError otherwise (also for an account that does not exist)."""
    from dianfei.customers.service import customer_of_account

    who = signed_in(request)
    with db.engine.connect() as conn:
        customer_id = customer_of_account(conn, account_id)
    if is_customer(who) and who.customer_id != customer_id:
        raise NotFoundError(f"account {account_id} does not exist")
    return who, customer_id
