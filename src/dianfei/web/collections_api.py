"""REST API of collector operations: daily worklists, reassignment and balancing, the supervisor
view, account timelines. Every route is guarded (``web.auth.guard``); a ``collector`` user
(permission ``worklists:own``) sees only their own list and the timelines of the accounts on
it — the link between the user and the collector is the roster's user name
(``collections.worklist.collector_of``). Each route calls the same service function as the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dianfei.core.clock import Clock
from dianfei.core.errors import NotFoundError
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows
from dianfei.web.auth import caller, guard
from dianfei.web.paging import Day


class ReassignIn(BaseModel):
    date: Day
    to: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=1, max_length=500)
    account_id: str | None = Field(default=None, max_length=32)
    from_collector: str | None = Field(default=None, max_length=32)


class BalanceIn(BaseModel):
    date: Day


def _who(request: Request) -> Principal:
    who = caller(request)
    if who is None:  # the guard already refused; defensive
        raise HTTPException(status_code=401, detail="sign in first")
    return who


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.collections import worklist as wl
    from dianfei.collections.timeline import account_timeline

    def own_collector(who: Principal) -> str | None:
        """None for a caller who may read every list; else the caller's collector id ('' when
        the user is not linked to one: they have no list)."""
        if allows(who.role, "worklists:read"):
            return None
        return wl.collector_of(db, who) or ""

    @app.get("/api/v1/worklists", tags=["collections"],
             **guard("worklists:read", "worklists:own"))
    async def get_worklists(request: Request, day: Annotated[Day, Query(alias="date")],
                            collector: str | None = None) -> list[dict[str, Any]]:
        """The day's worklists, rank 1, 2, … within each collector (built when the day has
        none). A collector sees only their own list."""
        who = _who(request)
        mine = await run_in_threadpool(own_collector, who)
        if mine is not None:
            if collector not in (None, mine):
                raise HTTPException(status_code=403, detail="a collector sees only their own list")
            if not mine:
                return []
            collector = mine
        return await run_in_threadpool(wl.worklists, db, day, collector=collector, clock=clock)

    @app.post("/api/v1/worklists/reassign", tags=["collections"], **guard("worklists:manage"))
    async def post_reassign(request: Request, body: ReassignIn) -> dict[str, Any]:
        """Move one account (account_id) or a collector's whole list (from_collector) of a day
        to another active collector. A repeated request moves nothing more."""
        who = _who(request)
        return await run_in_threadpool(
            lambda: wl.reassign(db, body.date, to=body.to, by=f"user:{who.username}",
                                reason=body.reason, account_id=body.account_id,
                                from_collector=body.from_collector))

    @app.post("/api/v1/worklists/balance", tags=["collections"], **guard("worklists:manage"))
    async def post_balance(request: Request, body: BalanceIn) -> dict[str, Any]:
        """Bring every collector of the day within capacity (lowest-ranked rows move to the
        least-loaded active colleagues of the same station)."""
        who = _who(request)
        return await run_in_threadpool(
            lambda: wl.balance_worklists(db, body.date, by=f"user:{who.username}"))

    @app.get("/api/v1/worklists/supervisor", tags=["collections"], **guard("worklists:read"))
    async def get_supervisor(first: Annotated[Day, Query(alias="from")],
                             last: Annotated[Day | None, Query(alias="to")] = None,
                             collector: str | None = None) -> dict[str, Any]:
        """Per collector, station and region: list size, worked, paid after assignment,
        recovered, for days from..to."""
        return await run_in_threadpool(wl.supervisor_view, db, first, last or first,
                                       collector=collector)

    @app.get("/api/v1/accounts/{account_id}/timeline", tags=["collections"],
             **guard("worklists:read", "worklists:own"))
    async def get_timeline(request: Request, account_id: str) -> list[dict[str, Any]]:
        """Everything about an account, oldest first. A collector sees the timelines of the
        accounts on their own lists only."""
        who = _who(request)
        mine = await run_in_threadpool(own_collector, who)
        if mine is not None and not await run_in_threadpool(wl.ever_listed_for, db, mine,
                                                            account_id):
            # not 403: a collector learns nothing about accounts that are not theirs
            raise NotFoundError(f"account {account_id!r} is on none of your worklists")
        return await run_in_threadpool(lambda: account_timeline(db, account_id, clock=clock))
