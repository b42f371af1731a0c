"""Maker-checker approvals (四眼原则) over REST: ask for a waiver, write-off, bill correction or
tariff change; list and read requests; approve or refuse someone else's. The same service as
``dianfei approvals`` (docs/approvals.md).

The maker and the checker are the signed-in users, never a name in the body. The route guard
lets in any role that may ask for (decide) some kind; the service then checks the kind at hand
(403 ``approval_forbidden``), four eyes (403 ``maker_is_checker``), a request decided already
(409 ``already_decided``) or expired (409 ``request_expired``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dianfei.approvals import service
from dianfei.core.clock import Clock
from dianfei.db.engine import Database
from dianfei.security.service import APPROVAL_KINDS
from dianfei.web.auth import guard, signed_in

_REQUEST = tuple(f"approvals:request:{k}" for k in APPROVAL_KINDS if k != "suspension")
_DECIDE = tuple(f"approvals:decide:{k}" for k in APPROVAL_KINDS)
_REASON = Field(min_length=1, max_length=2000)


class _Ask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: why (recorded in the request and the audit chain)
    reason: str = _REASON


class WaiverIn(_Ask):
    """Waive every late fee of a bill (违约金减免)."""

    kind: Literal["waiver"]
    bill_id: str = Field(min_length=1, max_length=64)


class WriteOffIn(_Ask):
    """Write off what is open of a bill or a late fee (核销)."""

    kind: Literal["write_off"]
    #: a bill id, or a late fee's ledger reference (LF:…)
    reference: str = Field(min_length=1, max_length=96)


class BillCorrectionIn(_Ask):
    """Cancel a bill (作废) and optionally bill the account again from the current reads."""

    kind: Literal["bill_correction"]
    bill_id: str = Field(min_length=1, max_length=64)
    rebill: bool = False


class TariffChangeIn(_Ask):
    """Put a tariff file (new or changed) in force (电价调整)."""

    kind: Literal["tariff_change"]
    tariff_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    #: the full TOML text of the tariff file (docs/tariffs.md)
    toml: str = Field(min_length=1, max_length=200_000)


class AccountClosureIn(_Ask):
    """Close an account whose supply has been off six months, its arrears written off (销户)."""

    kind: Literal["account_closure"]
    account_id: str = Field(min_length=1, max_length=32)


AskIn = Annotated[WaiverIn | WriteOffIn | BillCorrectionIn | TariffChangeIn | AccountClosureIn,
                  Field(discriminator="kind")]


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = _REASON


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    @app.post("/api/v1/approvals", tags=["approvals"], status_code=201, **guard(*_REQUEST))
    def api_request(body: AskIn, request: Request) -> dict[str, Any]:
        """Ask for a change a second person decides: ``pending`` until approved, refused or
        expired. One pending request per kind and subject (409 ``already_requested``)."""
        who = signed_in(request)
        payload = body.model_dump(exclude={"kind", "reason"})
        with db.session() as s:
            request_id = service.request(s, kind_name=body.kind, payload=payload,
                                         reason=body.reason, maker=who, clock=clock).request_id
        return service.show(db, request_id)

    @app.get("/api/v1/approvals", tags=["approvals"], **guard("approvals:read"))
    def api_list(kind: Annotated[str | None, Query(max_length=24)] = None,
                 state: Annotated[str | None, Query(max_length=10)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50,
                 offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """Requests, newest first: ``{"total", "limit", "offset", "items"}``."""
        service.housekeeping(db, clock)
        return service.list_requests(db, kind_name=kind, state=state, limit=limit,
                                     offset=offset)

    @app.get("/api/v1/approvals/{request_id}", tags=["approvals"], **guard("approvals:read"))
    def api_show(request_id: int) -> dict[str, Any]:
        """One request, its decision and what the change did."""
        return service.show(db, request_id)

    @app.post("/api/v1/approvals/{request_id}/approve", tags=["approvals"], **guard(*_DECIDE))
    def api_approve(request_id: int, request: Request) -> dict[str, Any]:
        """Approve someone else's request: the change is made in the same transaction (its
        error, if any, is answered and the request stays pending)."""
        who = signed_in(request)
        service.housekeeping(db, clock)
        return service.approve(db, request_id, checker=who, clock=clock)

    @app.post("/api/v1/approvals/{request_id}/reject", tags=["approvals"], **guard(*_DECIDE))
    def api_reject(request_id: int, body: RejectIn, request: Request) -> dict[str, Any]:
        """Refuse someone else's request with a reason: nothing is changed."""
        who = signed_in(request)
        service.housekeeping(db, clock)
        with db.session() as s:
            service.reject(s, request_id, checker=who, reason=body.reason, clock=clock)
        return service.show(db, request_id)
