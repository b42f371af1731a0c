"""The REST API's shared conventions: paging and the error envelope.

- **Paging**: list routes take ``?limit=&offset=`` (:class:`Page`, ``limit`` 1 … :data:`MAX_LIMIT`,
  default :data:`DEFAULT_LIMIT`) and answer ``{"items": [...], "total": n, "limit": l,
  "offset": o}`` (:func:`envelope`); ``total`` counts every match of the filters, not the page.
- **Errors**: every refusal is ``{"error": code, "message": ..., "field": where}``; a request
  FastAPI cannot parse (a wrong type, a missing field) answers 422 ``"invalid"`` naming the field
  (:func:`validation_envelope`, installed in ``web.app``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, Field

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError

#: the largest page a list route answers
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int

    def of(self, rows: Sequence[Any], total: int | None = None) -> dict[str, Any]:
        """The page of an already filtered list (every match in ``rows``), or — with
        ``total`` — ``rows`` already cut to the page, of ``total`` matches in all."""
        if total is not None:
            return envelope(list(rows), total, self)
        return envelope(list(rows[self.offset:self.offset + self.limit]), len(rows), self)


def page(limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}")]
         = DEFAULT_LIMIT,
         offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Page:
    """The ``?limit=&offset=`` of a list route (a FastAPI dependency)."""
    return Page(limit, offset)


def envelope(items: list[Any], total: int, p: Page) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": p.limit, "offset": p.offset}


def validation_envelope(exc: RequestValidationError) -> dict[str, Any]:
    """FastAPI's parse errors in the API's envelope: the first problem's field path (e.g.
    ``query.limit``) and every problem in ``problems``."""
    errors = list(exc.errors())
    problems = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
                for e in errors]
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return {"error": "invalid", "message": message, "field": first["field"],
            "problems": problems}


def _field(loc: Sequence[Any]) -> str | None:
    return ".".join(str(part) for part in loc) or None


#: the business days a query may name: outside them no data exists, and date arithmetic on the
#: extremes (0001-01-01, 9999-12-31) would overflow
FIRST_DAY, LAST_DAY = date(1990, 1, 1), date(2099, 12, 31)


def check_day(day: date | None, name: str) -> date | None:
    """``day`` when it is a plausible business day, else a 422 naming the parameter."""
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationError(f"{day} is outside {FIRST_DAY} … {LAST_DAY}", where=name)
    return day


def period_param(text: str, name: str = "period") -> Period:
    """A ``YYYY-MM`` parameter of a plausible year, or a 422 naming it."""
    try:
        p = Period.parse(text)
    except ValidationError as exc:
        raise ValidationError(exc.message, where=name) from None
    if not FIRST_DAY.year <= p.year <= LAST_DAY.year:
        raise ValidationError(f"period {p} is outside {FIRST_DAY.year} … {LAST_DAY.year}",
                              where=name)
    return p


#: the largest integer a BIGINT column holds: a larger id cannot exist, and would overflow the
#: database driver (a 500) before the query could answer "not found"
MAX_ID = 2**63 - 1
#: a stored row's integer id in a path
RowId = Annotated[int, Path(ge=0, le=MAX_ID)]
#: an integer of a request body that reaches a BIGINT column
BigInt = Annotated[int, Field(ge=-MAX_ID, le=MAX_ID)]


def _plausible_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is outside {FIRST_DAY} … {LAST_DAY}")
    return day


def _plausible_instant(at: datetime) -> datetime:
    _plausible_day(at.date())
    return at


#: a business day of a request (query or body): the extremes of the calendar (0001-01-01,
#: 9999-12-31) answer 422 instead of overflowing date arithmetic further in
Day = Annotated[date, AfterValidator(_plausible_day)]
#: an instant of a request, likewise
Instant = Annotated[datetime, AfterValidator(_plausible_instant)]


@dataclass(frozen=True)
class ListWindow:
    """``?limit=&offset=`` on a route whose documented answer is a bare JSON array: without
    them the whole list, as before; with them a slice, the full count in ``X-Total-Count``."""

    limit: int | None
    offset: int

    def cut(self, rows: Sequence[Any], response: Response) -> list[Any]:
        response.headers["X-Total-Count"] = str(len(rows))
        end = None if self.limit is None else self.offset + self.limit
        return list(rows[self.offset:end])


def list_window(
        limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT,
                                           description="default: the whole list")] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ListWindow:
    """The optional window of a bare-list route (a FastAPI dependency)."""
    return ListWindow(limit, offset)
