"""Meter reads and the VEE findings over REST. A customer user reads only their own accounts'
reads (another's → 404)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from dianfei.core.clock import BUSINESS_TZ, Clock, start_of_day
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_qty
from dianfei.db.engine import Database
from dianfei.web.auth import guard, signed_in
from dianfei.web.ownership import may_see_pii, own_account
from dianfei.web.paging import FIRST_DAY, Instant, Page, check_day, envelope, page

#: the longest window of the VEE findings route (the rules run over the window's data)
MAX_VEE_DAYS = 92

_Day = Annotated[date | None, Query()]


class HeldReadReview(BaseModel):
    """A person's decision on a read held as implausible (``vee findings --rule
    implausible_read`` lists them): ``release`` (the meter did register it) or ``reject``."""

    meter_id: str = Field(min_length=1, max_length=32)
    read_at: Instant
    decision: str = Field(min_length=1, max_length=10)
    reason: str = Field(min_length=1, max_length=2000)


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.metering.service import account_reads
    from dianfei.metering.vee import service as vee

    @app.get("/api/v1/imports/{batch_id}/quarantine", tags=["metering"], **guard("reads:read"))
    def api_import_quarantine(batch_id: str, request: Request,
                              p: Annotated[Page, Depends(page)]) -> dict[str, Any]:
        """The rejected rows of one import batch, in line order: ``line``, ``reason``, ``detail``,
        ``raw`` (the row) and ``sealed``. Rows of a customers import carry personal data: shown
        masked (王**, 139****5678) unless the role has ``pii:read``, for whom they are opened —
        and the opening is recorded on the audit chain (``pii.revealed``). The batch's kind,
        file and counts come with them; 404 for an unknown batch."""
        from dianfei.db.pii import cipher_for
        from dianfei.metering.quarantine import quarantined

        who = signed_in(request)
        cipher = cipher_for(db) if may_see_pii(who) else None
        out = quarantined(db, batch_id, cipher=cipher, limit=p.limit, offset=p.offset)
        rows = out.pop("rows")
        return {**out, "pii": "clear" if cipher is not None else "masked",
                **envelope(rows, int(out["quarantined"]), p)}

    @app.get("/api/v1/accounts/{account_id}/reads", tags=["metering"],
             **guard("reads:read", "own:reads"))
    def api_account_reads(
            account_id: str, request: Request, p: Annotated[Page, Depends(page)],
            day_from: Annotated[date | None, Query(alias="from")] = None,
            day_to: Annotated[date | None, Query(alias="to")] = None,
            register: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
    ) -> dict[str, Any]:
        """The register reads of every meter the account has had, oldest first, of business
        days ``from`` … ``to`` (both included); value in the register's unit (kWh), 2 places."""
        check_day(day_from, "from")
        check_day(day_to, "to")
        _ordered(day_from, day_to)
        own_account(db, request, account_id)
        frame = account_reads(db.engine, account_id, start_of_day(day_from or FIRST_DAY))
        rows = [r for r in frame.iter_rows(named=True)
                if (day_to is None or r["read_at"] < start_of_day(day_to + timedelta(days=1)))
                and (register is None or r["register"] == register)]
        return p.of([{"meter_id": r["meter_id"], "register": r["register"],
                      "read_at": _instant(r["read_at"]), "value": fmt_qty(int(r["value"])),
                      "source": r["source"]} for r in rows])

    @app.get("/api/v1/vee/findings", tags=["metering"], **guard("reads:read"))
    def api_vee_findings(
            p: Annotated[Page, Depends(page)],
            day_from: Annotated[date, Query(alias="from")],
            day_to: Annotated[date, Query(alias="to")],
            rule: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
            meter_id: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    ) -> dict[str, Any]:
        """The VEE exceptions (gaps, spikes, zero runs, rollovers …) of the data as stored now,
        of business days ``from`` … ``to`` (at most 92 days); value in kWh."""
        check_day(day_from, "from")
        check_day(day_to, "to")
        _ordered(day_from, day_to)
        if (day_to - day_from).days >= MAX_VEE_DAYS:
            raise ValidationError(f"at most {MAX_VEE_DAYS} days at a time", where="to")
        frame = vee.findings(db, rule=rule, meter_id=meter_id, day_from=day_from, day_to=day_to)
        return p.of([{"rule": r["rule"], "meter_id": r["meter_id"], "ts": _instant(r["ts"]),
                      "value": _kwh(r["value_wh"]), "detail": r["detail"], "ref": r["ref"]}
                     for r in frame.iter_rows(named=True)])


    @app.post("/api/v1/vee/held-reads/review", tags=["metering"], **guard("vee:review"))
    def api_review_held_read(body: HeldReadReview, request: Request) -> dict[str, Any]:
        """Release or reject a read held as implausible — the same decision as ``dianfei vee
        review``: recorded once with the caller as ``decided_by`` and an audit record
        (``read.released`` / ``read.rejected``); the same decision again answers
        ``recorded: false``, the other one 409; a read that is not held 404."""
        who = signed_in(request)
        out = vee.review_held_read(db, clock, meter_id=body.meter_id, read_at=body.read_at,
                                   decision=body.decision, by=who.username, reason=body.reason)
        return {**out, "read_at": _instant(out["read_at"])}


def _ordered(day_from: date | None, day_to: date | None) -> None:
    if day_from is not None and day_to is not None and day_to < day_from:
        raise ValidationError(f"{day_to} is before from {day_from}", where="to")


def _instant(value: datetime) -> str:
    return value.astimezone(BUSINESS_TZ).isoformat()


def _kwh(wh: int | None) -> str | None:
    if wh is None:
        return None
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"
