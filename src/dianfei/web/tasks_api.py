"""REST for collector operations: tasks between departments, contact data, credit ratings.

Every route is guarded (``security/roles.py``): supervisors see and change every task; a
collector (``tasks:own``) lists and completes only the tasks they own — another's task answers
404, as one that does not exist; customers see nothing of this. Each route calls the same
service function as the CLI (``dianfei task|contact|incentives``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field

from dianfei.core.clock import Clock
from dianfei.db.engine import Database
from dianfei.security.service import allows
from dianfei.web.auth import guard, signed_in
from dianfei.web.paging import Instant, RowId


class TaskIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=32)
    kind: str = Field(min_length=1, max_length=24)
    owner: str | None = Field(default=None, max_length=64)
    due_at: Instant | None = None
    note: str | None = Field(default=None, max_length=2000)


class AssignIn(BaseModel):
    owner: str = Field(min_length=1, max_length=64)
    department: str | None = Field(default=None, max_length=20)


class DoneIn(BaseModel):
    outcome: str = Field(min_length=1, max_length=40)
    note: str | None = Field(default=None, max_length=2000)


class VerifyIn(BaseModel):
    field: str = Field(min_length=1, max_length=8)
    value: str | None = Field(default=None, max_length=254)


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.collections import contacts, incentives, tasks

    def _own_only(request: Request) -> str | None:
        """The owner a caller is limited to: their user name, unless they may read every task."""
        who = signed_in(request)
        return None if allows(who.role, "tasks:read") else who.username

    @app.get("/api/v1/tasks", tags=["tasks"], **guard("tasks:read", "tasks:own"))
    def api_tasks(request: Request, status: str = "open", department: str | None = None,
                  owner: str | None = None, account_id: str | None = None,
                  kind: str | None = None, overdue: bool = False) -> list[dict[str, Any]]:
        """Tasks, oldest first (``status=all`` for every status). A collector gets their own."""
        mine = _own_only(request)
        with db.session() as s:
            return tasks.list_tasks(s, clock=clock, status=None if status == "all" else status,
                                    department=department, owner=mine or owner,
                                    account_id=account_id, kind=kind, overdue=overdue)

    @app.post("/api/v1/tasks", tags=["tasks"], status_code=201, **guard("tasks:write"))
    def api_open_task(body: TaskIn, request: Request,
                      idempotency_key: Annotated[str | None, Header(max_length=100)] = None
                      ) -> dict[str, Any]:
        """Open a task for the kind's department; ``Idempotency-Key`` makes a retry open nothing new."""
        who = signed_in(request)
        with db.session() as s:
            t = tasks.open_task(s, account_id=body.account_id, kind=body.kind,
                                opened_by=who.username, clock=clock,
                                key=f"api:{idempotency_key}" if idempotency_key else None,
                                owner=body.owner, due_at=body.due_at,
                                detail={"note": body.note} if body.note else None)
            return tasks.task_json(t, clock.now())

    @app.post("/api/v1/tasks/{task_id}/assign", tags=["tasks"], **guard("tasks:write"))
    def api_assign_task(task_id: RowId, body: AssignIn, request: Request) -> dict[str, Any]:
        """Give a task to an owner, or hand it to another department."""
        who = signed_in(request)
        with db.session() as s:
            return tasks.task_json(tasks.assign_task(s, task_id, owner=body.owner,
                                                     by=who.username, clock=clock,
                                                     department=body.department), clock.now())

    @app.post("/api/v1/tasks/{task_id}/done", tags=["tasks"], **guard("tasks:write", "tasks:own"))
    def api_task_done(task_id: RowId, body: DoneIn, request: Request) -> dict[str, Any]:
        """Report a task done with its outcome. A collector may complete only their own."""
        who = signed_in(request)
        with db.session() as s:
            if not allows(who.role, "tasks:write"):
                owner = tasks.get_task(s, task_id).owner
                if owner != who.username:
                    raise HTTPException(status_code=404, detail=f"task {task_id} does not exist")
            return tasks.task_json(tasks.complete_task(s, task_id, outcome=body.outcome,
                                                       by=who.username, clock=clock,
                                                       note=body.note), clock.now())

    @app.post("/api/v1/tasks/escalate", tags=["tasks"], **guard("tasks:write"))
    def api_escalate() -> dict[str, int]:
        """Escalate every overdue open task to its department's supervisor (once each)."""
        with db.session() as s:
            return {"escalated": tasks.escalate_overdue(s, clock=clock)}

    @app.get("/api/v1/contacts/flags", tags=["contacts"], **guard("contacts:read"))
    def api_contact_flags(status: str = "open") -> list[dict[str, Any]]:
        """Contact flags (``status`` open, verified or all)."""
        return contacts.flags_json(db.engine, None if status == "all" else status)

    @app.get("/api/v1/contacts/coverage", tags=["contacts"], **guard("contacts:read"))
    def api_contact_coverage() -> list[dict[str, Any]]:
        """Share of accounts with a verified phone, by supply station."""
        return contacts.coverage(db.engine)

    @app.get("/api/v1/contacts/status", tags=["contacts"], **guard("contacts:read"))
    def api_contact_status(account_id: Annotated[list[str], Query(max_length=500)]
                           ) -> list[dict[str, Any]]:
        """Per account: its open flags' reasons and whether its phone is verified."""
        return contacts.contact_status(db.engine, account_id).to_dicts()

    @app.post("/api/v1/contacts/{account_id}/verify", tags=["contacts"],
              **guard("contacts:verify"))
    def api_contact_verify(account_id: str, body: VerifyIn, request: Request) -> dict[str, Any]:
        """Record the phone or e-mail confirmed with the customer (``value`` when it changed)."""
        who = signed_in(request)
        with db.session() as s:
            return contacts.verify_contact(s, account_id=account_id, field=body.field,
                                           verified_by=who.username, clock=clock,
                                           value=body.value)

    @app.get("/api/v1/incentives/ratings", tags=["incentives"], **guard("ratings:read"))
    def api_ratings(grade: str | None = None, repeat_defaulters: bool = False
                    ) -> list[dict[str, Any]]:
        """Credit ratings (信用等级), filtered by grade or to repeat defaulters."""
        return incentives.ratings_json(db.engine, grade=grade, repeat_defaulters=repeat_defaulters)

    @app.get("/api/v1/incentives/ratings/{account_id}", tags=["incentives"],
             **guard("ratings:read"))
    def api_rating(account_id: str) -> dict[str, Any]:
        """One account's rating."""
        return incentives.rating_of(db.engine, account_id)

    @app.get("/api/v1/incentives/report", tags=["incentives"], **guard("ratings:read"))
    def api_incentives_report() -> list[dict[str, Any]]:
        """Ratings and deposit / prepayment proposals by dunning segment."""
        return incentives.report(db.engine)
