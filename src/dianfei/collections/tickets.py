"""Recording service tickets and reading them for KPIs (see :mod:`ticket_models`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from dianfei.collections.ticket_models import TICKET_CATEGORIES, Ticket
from dianfei.core.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    import polars as pl


def _aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None:
        raise ValidationError(f"{what} needs a time zone, got {at.isoformat()}")
    return at


def record_ticket(session: Session, *, customer_id: str, category: str, opened_at: datetime,
                  summary: str | None = None, decided_at: datetime | None = None,
                  satisfaction: int | None = None) -> int:
    """Open a ticket (and decide it at once when ``decided_at`` is given); returns its id."""
    if category not in TICKET_CATEGORIES:
        raise ValidationError(
            f"ticket category must be one of {', '.join(TICKET_CATEGORIES)}, got {category!r}")
    _check_score(satisfaction)
    opened_at = _aware(opened_at, "opened_at")
    if decided_at is not None and _aware(decided_at, "decided_at") < opened_at:
        raise ValidationError(f"a ticket cannot be decided ({decided_at.isoformat()}) before it "
                              f"was opened ({opened_at.isoformat()})")
    if satisfaction is not None and decided_at is None:
        raise ValidationError("a satisfaction score is given after the ticket is decided")
    row = session.execute(insert(Ticket).values(
        customer_id=customer_id, category=category, summary=summary, opened_at=opened_at,
        decided_at=decided_at, satisfaction=satisfaction).returning(Ticket.ticket_id)).scalar_one()
    return int(row)


def decide_ticket(session: Session, ticket_id: int, *, decided_at: datetime,
                  satisfaction: int | None = None) -> None:
    """Close a ticket, with the survey score when the customer gave one."""
    _check_score(satisfaction)
    opened = session.execute(select(Ticket.opened_at).where(Ticket.ticket_id == ticket_id)
                             ).scalar_one_or_none()
    if opened is None:
        raise NotFoundError(f"no ticket {ticket_id}")
    if _aware(decided_at, "decided_at") < opened:
        raise ValidationError(f"ticket {ticket_id} cannot be decided before it was opened")
    session.execute(update(Ticket).where(Ticket.ticket_id == ticket_id)
                    .values(decided_at=decided_at, satisfaction=satisfaction))


def _check_score(score: int | None) -> None:
    if score is not None and not (isinstance(score, int) and 1 <= score <= 5):
        raise ValidationError(f"satisfaction is a score 1..5, got {score!r}")


def tickets_between(engine: Any, since: datetime, until: datetime) -> pl.DataFrame:
    """Tickets opened in [since, until): ticket_id, customer_id, category, opened_at,
    decided_at, satisfaction (null when no survey)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine, "SELECT ticket_id, customer_id, category, opened_at, decided_at, satisfaction "
        "FROM service_tickets WHERE opened_at >= :a AND opened_at < :z ORDER BY ticket_id",
        {"a": since, "z": until}, instants=("opened_at", "decided_at"),
        schema={"ticket_id": pl.Int64, "customer_id": pl.String, "category": pl.String,
                "opened_at": pl.Datetime("us", "UTC"), "decided_at": pl.Datetime("us", "UTC"),
                "satisfaction": pl.Int64})
