"""Satisfaction surveys (回访满意度): the customer's score 1–5 after a visit, a ticket or a
reconnection.

Every survey is a row of ``satisfaction_surveys`` (one per subject; a retried request is stored
once) and a ``survey`` event. A ticket's score is also written on the ticket (the register's
``satisfaction``, as the KPIs have always read it); the scores of visits and reconnections reach
the satisfaction KPI through :func:`surveys_between`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from dianfei.collections.fieldwork_models import SURVEY_SUBJECTS, SatisfactionSurvey
from dianfei.collections.models import CollectionEvent, StopCase
from dianfei.collections.ticket_models import Ticket
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import polars as pl


def record_survey(session: Session, *, request_id: str, subject: str, subject_id: int, score: int,
                  recorded_by: str, clock: Clock, at: datetime | None = None) -> SatisfactionSurvey:
    """Record the score (1–5) the customer gave about a visit, a (decided) ticket or a
    reconnection (the stop case that was reconnected)."""
    from dianfei.audit import service as audit

    if not request_id.strip():
        raise ValidationError("a survey needs a request id (the retry key)")
    conn = session.connection()
    same = conn.execute(_SAME, {"request_id": request_id}).first()
    if same is not None:
        if (same[1], same[2]) != (subject, subject_id):
            raise ConflictError(f"request id {request_id!r} was already used for the survey of "
                                f"{same[1]} {same[2]}")
        stored = session.get(SatisfactionSurvey, int(same[0]))
        assert stored is not None
        return stored
    if subject not in SURVEY_SUBJECTS:
        raise ValidationError(f"a survey is about one of {', '.join(SURVEY_SUBJECTS)}, got {subject!r}")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValidationError(f"satisfaction is a score 1..5, got {score!r}")
    if not recorded_by.strip():
        raise ValidationError("a survey names who recorded it")
    now = clock.now()
    at = at or now
    if at.tzinfo is None:
        raise ValidationError(f"the survey time needs a time zone, got {at.isoformat()}")
    account_id, customer_id, ticket = _subject(session, subject, subject_id)
    row = {"request_id": request_id, "customer_id": customer_id, "account_id": account_id,
           "subject": subject, "subject_id": subject_id, "score": score, "at": at,
           "recorded_by": recorded_by}
    # plain statements, not the ORM's unit of work (the demo's collectors record a few dozen a
    # day); a second survey of the same subject, or a concurrent retry, adds no row
    got = conn.execute(_insert(conn), row).first()
    if got is None:
        raise ConflictError(f"{subject} {subject_id} already has a survey")
    survey = SatisfactionSurvey(survey_id=int(got[0]), **row)
    if ticket is not None:
        ticket.satisfaction = score
    if account_id is not None:
        conn.execute(insert(CollectionEvent), {
            "key": f"survey:{survey.survey_id}", "account_id": account_id,
            "customer_id": customer_id, "type": "survey", "at": at,
            "business_date": business_date(at),
            "detail": json.dumps({"subject": subject, "subject_id": subject_id, "score": score})})
    session.flush()
    audit.record(conn, "survey.recorded", account_id or customer_id, {
        "survey_id": survey.survey_id, "subject": subject, "subject_id": subject_id,
        "score": score, "recorded_by": recorded_by})
    return survey


_SAME = text("SELECT survey_id, subject, subject_id FROM satisfaction_surveys "
             "WHERE request_id = :request_id")
_INSERTS: dict[str, Any] = {}


def _insert(conn: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING survey_id (both unique keys: the request and
    the subject), built once per dialect."""
    name = conn.dialect.name
    stmt = _INSERTS.get(name)
    if stmt is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if name == "postgresql" else sqlite
        stmt = _INSERTS[name] = (dialect.insert(SatisfactionSurvey).on_conflict_do_nothing()
                                 .returning(SatisfactionSurvey.survey_id))
    return stmt


_VISIT = text("SELECT account_id, customer_id FROM collection_visits WHERE visit_id = :visit_id")


def _subject(session: Session, subject: str, subject_id: int) -> tuple[str | None, str, Ticket | None]:
    if subject == "visit":
        visit = session.connection().execute(_VISIT, {"visit_id": subject_id}).first()
        if visit is None:
            raise NotFoundError(f"no visit {subject_id}")
        return str(visit[0]), str(visit[1]), None
    if subject == "ticket":
        ticket = session.get(Ticket, subject_id)
        if ticket is None:
            raise NotFoundError(f"no ticket {subject_id}")
        if ticket.status != "decided":
            raise ValidationError(f"ticket {subject_id} is {ticket.status}: the survey follows "
                                  "the decision")
        return ticket.account_id, ticket.customer_id, ticket
    case = session.get(StopCase, subject_id)
    if case is None:
        raise NotFoundError(f"no stop case {subject_id}")
    if case.reconnected_at is None:
        raise ValidationError(f"stop case {subject_id} was not reconnected: the survey follows "
                              "the reconnection")
    return case.account_id, case.customer_id, None


def surveys_between(engine: Any, since: datetime, until: datetime) -> pl.DataFrame:
    """Surveys of visits and reconnections taken in [since, until): customer_id, satisfaction
    (ticket surveys are on the tickets, :func:`tickets.tickets_between`)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine, "SELECT customer_id, score AS satisfaction FROM satisfaction_surveys "
        "WHERE subject != 'ticket' AND at >= :a AND at < :z ORDER BY survey_id",
        {"a": since, "z": until}, schema={"customer_id": pl.String, "satisfaction": pl.Int64})


def survey_json(s: SatisfactionSurvey) -> dict[str, Any]:
    return {"survey_id": s.survey_id, "account": s.customer_id, "account_id": s.account_id,
            "subject": s.subject, "subject_id": s.subject_id, "score": s.score,
            "at": s.at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds"),
            "recorded_by": s.recorded_by}
