"""Service tickets (工单): recording them, the workflow, and reading them for KPIs.

The register (:mod:`ticket_models`) began as what the KPIs count; the workflow here adds:

- :func:`open_ticket` — an account's ticket about a bill, a notice or a visit, with its SLA
  deadline (decided within N working days of the collections calendar, ``[tickets]``); a
  retried request (same ``request_id``) is stored once;
- :func:`escalate_overdue` — the daily run's step: every undecided ticket past its deadline goes
  to a supervisor (``ticket_escalated``); :func:`escalate` does it by hand;
- :func:`decide` — the decision and who made it (``ticket_decided``, and the audit chain);
- :func:`disputed_bills` — the bills of undecided ``billing_dispute`` tickets: the dunning
  snapshot leaves them out (a disputed bill is not dunned until the dispute is decided).

:func:`record_ticket`, :func:`decide_ticket` and :func:`tickets_between` keep the register's
contract for the KPI code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.collections.ticket_models import TICKET_CATEGORIES, Ticket
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.fieldwork_rules import FieldworkPolicy


def _aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None:
        raise ValidationError(f"{what} needs a time zone, got {at.isoformat()}")
    return at


def record_ticket(session: Session, *, customer_id: str, category: str, opened_at: datetime,
                  summary: str | None = None, decided_at: datetime | None = None,
                  satisfaction: int | None = None) -> int:
    """Open a ticket (and decide it at once when ``decided_at`` is given); returns its id."""
    _check_category(category)
    _check_score(satisfaction)
    opened_at = _aware(opened_at, "opened_at")
    if decided_at is not None and _aware(decided_at, "decided_at") < opened_at:
        raise ValidationError(f"a ticket cannot be decided ({decided_at.isoformat()}) before it "
                              f"was opened ({opened_at.isoformat()})")
    if satisfaction is not None and decided_at is None:
        raise ValidationError("a satisfaction score is given after the ticket is decided")
    row = session.execute(insert(Ticket).values(
        customer_id=customer_id, category=category, summary=summary, opened_at=opened_at,
        decided_at=decided_at, satisfaction=satisfaction,
        status="open" if decided_at is None else "decided").returning(Ticket.ticket_id)).scalar_one()
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
                    .values(decided_at=decided_at, satisfaction=satisfaction, status="decided"))


def _check_category(category: str) -> None:
    if category not in TICKET_CATEGORIES:
        raise ValidationError(
            f"ticket category must be one of {', '.join(TICKET_CATEGORIES)}, got {category!r}")


def _check_score(score: int | None) -> None:
    if score is not None and not (isinstance(score, int) and not isinstance(score, bool)
                                  and 1 <= score <= 5):
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


# -- the workflow ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketLinks:
    """What a ticket is about (any of them may be None)."""

    bill_id: str | None = None
    notice_key: str | None = None
    visit_id: int | None = None


def _event(session: Session, ticket: Ticket, kind: str, at: datetime,
           detail: dict[str, Any]) -> None:
    from dianfei.collections.models import CollectionEvent

    if ticket.account_id is None:  # a customer-level ticket of the old register: no account history
        return
    session.add(CollectionEvent(
        key=f"ticket:{ticket.ticket_id}:{kind.removeprefix('ticket_')}",
        account_id=ticket.account_id, customer_id=ticket.customer_id, type=kind, at=at,
        business_date=business_date(at), bill_id=ticket.bill_id,
        detail=json.dumps({"ticket_id": ticket.ticket_id, "category": ticket.category, **detail},
                          ensure_ascii=False)))


def open_ticket(session: Session, *, request_id: str, account_id: str, category: str,
                opened_by: str, clock: Clock, summary: str | None = None,
                links: TicketLinks | None = None, sla_working_days: int | None = None,
                policy: FieldworkPolicy | None = None) -> Ticket:
    """Open an account's ticket (``ticket_opened``); the SLA deadline is N working days
    (``sla_working_days`` or the calendar's ``[tickets] sla_working_days``). A retried request
    returns the ticket stored the first time. A ``billing_dispute`` names its bill."""
    from dianfei.collections.fieldwork_rules import fieldwork_policy
    from dianfei.customers import service as customers

    links = links or TicketLinks()
    if not request_id.strip():
        raise ValidationError("a ticket needs a request id (the retry key)")
    same = session.execute(select(Ticket).where(Ticket.request_id == request_id)).scalar_one_or_none()
    if same is not None:
        return _same_request(same, request_id, account_id)
    _check_category(category)
    if not opened_by.strip():
        raise ValidationError("a ticket names who opened it")
    if category == "billing_dispute" and not links.bill_id:
        raise ValidationError("a billing_dispute ticket names the disputed bill (bill_id)")
    if sla_working_days is not None and (isinstance(sla_working_days, bool)
                                         or not isinstance(sla_working_days, int)
                                         or sla_working_days < 1):
        raise ValidationError(f"the SLA is at least 1 working day, got {sla_working_days!r}")
    customer_id = customers.customer_of_account(session.connection(), account_id)
    if links.bill_id:
        _check_bill(session, links.bill_id)
    ticket = Ticket(customer_id=customer_id, account_id=account_id, category=category,
                    summary=summary, opened_at=clock.now(), status="open", request_id=request_id,
                    bill_id=links.bill_id, notice_key=links.notice_key, visit_id=links.visit_id,
                    opened_by=opened_by)
    try:
        with session.begin_nested():
            return _open(session, ticket, sla_working_days, policy or fieldwork_policy())
    except IntegrityError:
        # the same request committed by a concurrent retry in the meantime
        same = session.execute(select(Ticket).where(Ticket.request_id == request_id)).scalar_one()
        return _same_request(same, request_id, account_id)


def open_checked_ticket(session: Session, ticket: Ticket, policy: FieldworkPolicy) -> Ticket:
    """Open a ticket whose account, bill and fresh request id the caller has already checked
    in this transaction (a visit's dispute): no second look-up of the same facts."""
    return _open(session, ticket, None, policy)


def _open(session: Session, ticket: Ticket, sla_working_days: int | None,
          pol: FieldworkPolicy) -> Ticket:
    from dianfei.audit import service as audit

    now = ticket.opened_at
    due = pol.sla_due_at(now, sla_working_days)
    ticket.sla_due_at = due
    session.add(ticket)
    session.flush()
    _event(session, ticket, "ticket_opened", now, {
        "sla_due_at": due.astimezone(BUSINESS_TZ).isoformat(timespec="seconds"),
        "visit_id": ticket.visit_id, "notice_key": ticket.notice_key, "by": ticket.opened_by})
    session.flush()
    audit.record(session.connection(), "ticket.opened", ticket.account_id or ticket.customer_id, {
        "ticket_id": ticket.ticket_id, "category": ticket.category, "bill_id": ticket.bill_id,
        "visit_id": ticket.visit_id, "notice_key": ticket.notice_key,
        "opened_by": ticket.opened_by})
    return ticket


def _same_request(ticket: Ticket, request_id: str, account_id: str) -> Ticket:
    if ticket.account_id != account_id:
        raise ConflictError(f"request id {request_id!r} was already used for ticket "
                            f"{ticket.ticket_id} of account {ticket.account_id}")
    return ticket


def _check_bill(session: Session, bill_id: str) -> None:
    from dianfei.ledger import service as ledger

    ledger.entry_id_for(session, "bill", bill_id)  # NotFoundError: "no bill entry for …"


def _locked(session: Session, ticket_id: int) -> Ticket:
    ticket = session.execute(select(Ticket).where(Ticket.ticket_id == ticket_id)
                             .with_for_update()).scalar_one_or_none()
    if ticket is None:
        raise NotFoundError(f"no ticket {ticket_id}")
    return ticket


def decide(session: Session, ticket_id: int, *, decision: str, decided_by: str,
           clock: Clock) -> Ticket:
    """Decide a ticket (``ticket_decided``): what was decided and by whom. A disputed bill is
    dunned again from the next daily run."""
    from dianfei.audit import service as audit

    if not decision.strip():
        raise ValidationError("a decision says what was decided")
    if not decided_by.strip():
        raise ValidationError("a decision names who decided")
    ticket = _locked(session, ticket_id)
    if ticket.status == "decided":
        raise ConflictError(f"ticket {ticket_id} is already decided (by {ticket.decided_by}, "
                            f"{ticket.decided_at})")
    now = clock.now()
    ticket.status, ticket.decision, ticket.decided_by, ticket.decided_at = (
        "decided", decision, decided_by, now)
    _event(session, ticket, "ticket_decided", now, {"decision": decision, "by": decided_by,
                                                    "within_sla": ticket.sla_due_at is None
                                                    or now <= ticket.sla_due_at})
    session.flush()
    audit.record(session.connection(), "ticket.decided", ticket.account_id or ticket.customer_id, {
        "ticket_id": ticket_id, "category": ticket.category, "decision": decision,
        "decided_by": decided_by, "bill_id": ticket.bill_id})
    return ticket


def escalate(session: Session, ticket_id: int, *, to: str, by: str, clock: Clock,
             reason: str = "manual") -> Ticket:
    """Hand an undecided ticket to a supervisor (``ticket_escalated``)."""
    from dianfei.audit import service as audit

    if not to.strip():
        raise ValidationError("an escalation names whom it goes to")
    ticket = _locked(session, ticket_id)
    if ticket.status != "open":
        raise ConflictError(f"ticket {ticket_id} is {ticket.status}: only an open ticket is "
                            "escalated")
    now = clock.now()
    ticket.status, ticket.escalated_at, ticket.escalated_to = "escalated", now, to
    _event(session, ticket, "ticket_escalated", now, {"to": to, "by": by, "reason": reason})
    session.flush()
    audit.record(session.connection(), "ticket.escalated", ticket.account_id or ticket.customer_id,
                 {"ticket_id": ticket_id, "to": to, "by": by, "reason": reason})
    return ticket


def escalate_overdue(session: Session, *, clock: Clock,
                     policy: FieldworkPolicy | None = None) -> int:
    """The daily run's step: every open ticket past its SLA deadline goes to the policy's
    supervisor role. Returns how many were escalated (0 on a re-run)."""
    from dianfei.collections.fieldwork_rules import fieldwork_policy

    pol = policy or fieldwork_policy()
    now = clock.now()
    due = session.execute(select(Ticket.ticket_id).where(
        Ticket.status == "open", Ticket.sla_due_at.is_not(None), Ticket.sla_due_at <= now)
        .order_by(Ticket.ticket_id)).scalars().all()
    for ticket_id in due:
        escalate(session, int(ticket_id), to=pol.escalate_to, by="daily-run", clock=clock,
                 reason="sla_passed")
    return len(due)


def disputed_bills(engine: Any) -> list[str]:
    """The bills of undecided ``billing_dispute`` tickets (their dunning pauses)."""
    with engine.connect() as conn:
        rows = conn.execute(select(Ticket.bill_id).distinct().where(
            Ticket.status != "decided", Ticket.category == "billing_dispute",
            Ticket.bill_id.is_not(None))).scalars().all()
    return sorted(str(b) for b in rows)


def ticket_json(t: Ticket) -> dict[str, Any]:
    def instant(v: datetime | None) -> str | None:
        return None if v is None else v.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")

    return {"ticket_id": t.ticket_id, "account": t.customer_id, "account_id": t.account_id,
            "category": t.category, "status": t.status, "summary": t.summary,
            "opened_at": instant(t.opened_at), "opened_by": t.opened_by,
            "sla_due_at": instant(t.sla_due_at), "bill_id": t.bill_id, "notice_key": t.notice_key,
            "visit_id": t.visit_id, "escalated_at": instant(t.escalated_at),
            "escalated_to": t.escalated_to, "decided_at": instant(t.decided_at),
            "decided_by": t.decided_by, "decision": t.decision, "satisfaction": t.satisfaction}


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    """One ticket; NotFoundError when there is none."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFoundError(f"no ticket {ticket_id}")
    return ticket


def _ticket_filter(q: Any, account_id: str | None, status: str | None) -> Any:
    from dianfei.collections.ticket_models import TICKET_STATUSES

    if account_id is not None:
        q = q.where(Ticket.account_id == account_id)
    if status is not None:
        if status not in TICKET_STATUSES:
            raise ValidationError(f"ticket status must be one of {', '.join(TICKET_STATUSES)}, "
                                  f"got {status!r}")
        q = q.where(Ticket.status == status)
    return q


def list_tickets(session: Session, *, account_id: str | None = None, status: str | None = None,
                 limit: int = 500, offset: int = 0) -> list[Ticket]:
    """Tickets, newest first, of one account and/or one status (``offset``: a console page)."""
    q = select(Ticket).order_by(Ticket.ticket_id.desc()).offset(offset).limit(limit)
    return list(session.scalars(_ticket_filter(q, account_id, status)))


def count_tickets(session: Session, *, account_id: str | None = None,
                  status: str | None = None) -> int:
    """How many tickets :func:`list_tickets` pages through."""
    from sqlalchemy import func

    q = _ticket_filter(select(func.count()).select_from(Ticket), account_id, status)
    return int(session.execute(q).scalar_one())
