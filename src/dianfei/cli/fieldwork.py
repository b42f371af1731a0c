"""CLI: ``visit record|list`` and ``ticket open|decide|escalate|list|survey`` — thin shells over
``collections.visits``, ``collections.tickets`` and ``collections.surveys`` (the REST API calls
the same functions)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, operator, print_json
from dianfei.core.errors import ValidationError

visit_app = typer.Typer(help="Collector visits and calls (走访/电话催收) and their outcomes.",
                        no_args_is_help=True)
ticket_app = typer.Typer(help="Service tickets (工单): disputes, complaints, SLA, escalation, "
                         "decisions, satisfaction surveys.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(visit_app, name="visit")
    app.add_typer(ticket_app, name="ticket")


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


def _instant(text: str, flag: str) -> datetime:
    """An ISO date-time; without an offset it is Asia/Shanghai time (the business zone)."""
    from dianfei.core.clock import BUSINESS_TZ

    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date-time YYYY-MM-DDTHH:MM[+08:00]: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=BUSINESS_TZ)


def _fen(text: str, flag: str) -> int:
    from dianfei.core.money import parse_decimal, to_fen

    return to_fen(parse_decimal(text, flag, places=2, allow_negative=False))


def _by(by: str | None) -> str:
    return by or operator()


def _show(obj: Any, json_out: bool, line: str) -> None:
    if json_out:
        print_json(obj)
    else:
        typer.echo(line)


@visit_app.command("record")
@handle_errors
def visit_record(
    account: Annotated[str, typer.Option(help="the account visited or called")],
    collector: Annotated[str, typer.Option(help="the collector id (催费员)")],
    outcome: Annotated[str, typer.Option(help="paid, promise, dispute, hardship, wrong_contact, "
                                         "vacant, refused")],
    channel: Annotated[str, typer.Option(help="visit or call")] = "visit",
    at: Annotated[str | None, typer.Option(help="when it took place (default now)")] = None,
    promise_on: Annotated[str | None, typer.Option("--promise-on", help="promise: YYYY-MM-DD")] = None,
    promise_amount: Annotated[str | None, typer.Option("--promise-amount",
                                                       help="promise: yuan")] = None,
    bill: Annotated[str | None, typer.Option(help="dispute: the disputed bill")] = None,
    note: Annotated[str | None, typer.Option(help="what was said")] = None,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", help="retry key: the same id is stored once (default: a new one)")] = None,
    by: Annotated[str | None, typer.Option(help="who records it (default the operator)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record a visit or call and the follow-up its outcome implies (promise watched, dispute
    ticket, plan offer / contact update / meter check task)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.visits import record_visit, visit_json

    clock = clock_from_env()
    with database().session() as s:
        r = record_visit(
            s, request_id=request_id or uuid.uuid4().hex, account_id=account,
            collector_id=collector, channel=channel, outcome=outcome,
            at=_instant(at, "--at") if at else clock.now(), recorded_by=_by(by), clock=clock,
            promise_on=_day(promise_on, "--promise-on") if promise_on else None,
            promise_amount_fen=_fen(promise_amount, "--promise-amount") if promise_amount else None,
            bill_id=bill, note=note)
        out = visit_json(r)
    _show(out, json_out, f"visit {out['visit_id']}  {account}  {outcome}"
          + (" (already recorded)" if out["replayed"] else ""))


@visit_app.command("list")
@handle_errors
def visit_list(
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    collector: Annotated[str | None, typer.Option(help="one collector")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Visits and calls in the order they were recorded."""
    from dianfei.cli.context import database
    from dianfei.collections.visits import list_visits, visit_json

    with database().session() as s:
        out = [visit_json(r) for r in list_visits(s, account_id=account, collector_id=collector)]
    if json_out:
        print_json(out)
        return
    for v in out:
        typer.echo(f"{v['visit_id']}  {v['at']}  {v['account_id']}  {v['collector']}  "
                   f"{v['channel']}  {v['outcome']}")


@ticket_app.command("open")
@handle_errors
def ticket_open(
    account: Annotated[str, typer.Option(help="the account")],
    category: Annotated[str, typer.Option(help="billing_dispute, meter_question, service, "
                                          "notice_complaint, collector_complaint, complaint, "
                                          "inquiry, request, feedback")],
    summary: Annotated[str | None, typer.Option(help="what the customer said")] = None,
    bill: Annotated[str | None, typer.Option(help="the bill it is about")] = None,
    notice: Annotated[str | None, typer.Option(help="the notice (notify key) it is about")] = None,
    visit: Annotated[int | None, typer.Option(help="the visit it is about")] = None,
    sla_days: Annotated[int | None, typer.Option("--sla-days", help="working days to decide "
                                                 "(default: calendar [tickets])")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="retry key")] = None,
    by: Annotated[str | None, typer.Option(help="who opens it (default the operator)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open a ticket with its SLA deadline. A billing_dispute pauses the bill's dunning."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tickets import TicketLinks, open_ticket, ticket_json

    with database().session() as s:
        t = open_ticket(s, request_id=request_id or uuid.uuid4().hex, account_id=account,
                        category=category, opened_by=_by(by), clock=clock_from_env(),
                        summary=summary, links=TicketLinks(bill, notice, visit),
                        sla_working_days=sla_days)
        out = ticket_json(t)
    _show(out, json_out, f"ticket {out['ticket_id']}  {category}  decide by {out['sla_due_at']}")


@ticket_app.command("decide")
@handle_errors
def ticket_decide(
    ticket_id: int,
    decision: Annotated[str, typer.Option(help="what was decided")],
    by: Annotated[str | None, typer.Option(help="who decided (default the operator)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Decide a ticket (a disputed bill is dunned again from the next daily run)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tickets import decide, ticket_json

    with database().session() as s:
        out = ticket_json(decide(s, ticket_id, decision=decision, decided_by=_by(by),
                                 clock=clock_from_env()))
    _show(out, json_out, f"ticket {ticket_id} decided by {out['decided_by']}")


@ticket_app.command("escalate")
@handle_errors
def ticket_escalate(
    ticket_id: int,
    to: Annotated[str, typer.Option(help="the supervisor (a user or role)")] = "supervisor",
    by: Annotated[str | None, typer.Option(help="who escalates (default the operator)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Hand an open ticket to a supervisor now (the daily run does it when the SLA passes)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tickets import escalate, ticket_json

    with database().session() as s:
        out = ticket_json(escalate(s, ticket_id, to=to, by=_by(by), clock=clock_from_env()))
    _show(out, json_out, f"ticket {ticket_id} escalated to {to}")


@ticket_app.command("list")
@handle_errors
def ticket_list(
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    status: Annotated[str | None, typer.Option(help="open, escalated or decided")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tickets, newest first."""
    from dianfei.cli.context import database
    from dianfei.collections.tickets import list_tickets, ticket_json

    with database().session() as s:
        out = [ticket_json(t) for t in list_tickets(s, account_id=account, status=status)]
    if json_out:
        print_json(out)
        return
    for t in out:
        typer.echo(f"{t['ticket_id']}  {t['account_id'] or t['account']}  {t['category']}  "
                   f"{t['status']}  due {t['sla_due_at']}")


@ticket_app.command("survey")
@handle_errors
def ticket_survey(
    score: Annotated[int, typer.Option(help="1 (very dissatisfied) … 5 (very satisfied)")],
    ticket: Annotated[int | None, typer.Option(help="a decided ticket")] = None,
    visit: Annotated[int | None, typer.Option(help="a visit")] = None,
    reconnection: Annotated[int | None, typer.Option(help="a reconnected stop case")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="retry key")] = None,
    by: Annotated[str | None, typer.Option(help="who records it (default the operator)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record a satisfaction survey (回访满意度) after a ticket, a visit or a reconnection."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.surveys import record_survey, survey_json

    given = [(k, v) for k, v in (("ticket", ticket), ("visit", visit),
                                 ("reconnection", reconnection)) if v is not None]
    if len(given) != 1:
        raise ValidationError("a survey is about exactly one of --ticket, --visit, --reconnection")
    subject, subject_id = given[0]
    with database().session() as s:
        out = survey_json(record_survey(s, request_id=request_id or uuid.uuid4().hex,
                                        subject=subject, subject_id=subject_id, score=score,
                                        recorded_by=_by(by), clock=clock_from_env()))
    _show(out, json_out, f"survey {out['survey_id']}: {subject} {subject_id} scored {score}")
