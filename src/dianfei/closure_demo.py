"""The demo branch's monthly closure review (销户): on each issue day, before the bill run, a
billing clerk asks for the closure of every account whose supply has been off for six months
(``dianfei account closures``) and a supervisor approves each — the approvals core's maker-checker,
as staff would at the console (docs/collections.md, "Account closure"). What those accounts owed
is written off as bad debt; they leave the bill run and the daily collections.

A request the rules refuse (an active payment plan, credit to refund, a request already
pending from an interrupted run) is left for a person: the review counts it and moves on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.security.service import Principal

#: the demo's staff who review closures (created once, with a password no one knows: they
#: cannot sign in; an operator adds real users with `dianfei users add`)
CLERK, SUPERVISOR = ("demo-clerk", "billing_clerk"), ("demo-supervisor", "supervisor")
REASON = ("supply off for six months, no application to resume (供电营业规则): contract ended, "
          "arrears written off as bad debt")


@dataclass
class Review:
    closed: list[str]
    refused: int


def _staff(db: Database, name: str, role: str, now: datetime) -> Principal:
    from dianfei.security.service import active_user, add_user

    with db.session() as s:
        try:
            return active_user(s, name)
        except NotFoundError:
            add_user(s, username=name, role=role, password=secrets.token_urlsafe(24), now=now)
    with db.session() as s:
        return active_user(s, name)


def monthly_review(db: Database, day: date) -> Review:
    """Close, through maker-checker, every account due for closure on ``day`` (08:30 asked,
    08:45 approved: before the day's bill run and collections)."""
    from dianfei.approvals import service as approvals
    from dianfei.collections.service import closure_candidates

    found = closure_candidates(db.engine, day)
    if found.height == 0:
        return Review([], 0)
    asked = FixedClock(datetime.combine(day, time(8, 30), tzinfo=BUSINESS_TZ))
    decided = FixedClock(datetime.combine(day, time(8, 45), tzinfo=BUSINESS_TZ))
    clerk = _staff(db, *CLERK, asked.now())
    supervisor = _staff(db, *SUPERVISOR, asked.now())
    closed: list[str] = []
    refused = 0
    for account in found["account_id"].to_list():
        try:
            with db.session() as s:
                request_id = approvals.request(
                    s, kind_name="account_closure", payload={"account_id": account},
                    reason=REASON, maker=clerk, clock=asked).request_id
            approvals.approve(db, request_id, checker=supervisor, clock=decided)
        except ConflictError:
            refused += 1  # a plan, credit, a pending request: a person looks at it
            continue
        closed.append(account)
    return Review(closed, refused)
