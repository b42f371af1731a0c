"""CLI: ``task open|assign|done|list|escalate`` (跨部门工单), ``contact flags|coverage|verify``
(联系方式核实), ``incentives ratings|report`` (信用等级与屡欠惩戒).

Thin shells over ``dianfei.collections.tasks``, ``.contacts`` and ``.incentives`` — the same
functions the REST API (``web/tasks_api.py``) and the daily run call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, operator, print_json
from dianfei.core.errors import ValidationError

task_app = typer.Typer(help="Tasks between departments (跨部门工单): owner, due time, outcome.",
                       no_args_is_help=True)
contact_app = typer.Typer(help="Contact data quality (联系方式核实): flags, coverage, verification.",
                          no_args_is_help=True)
incentives_app = typer.Typer(help="Good-payer rating and repeat-defaulter penalties (信用等级).",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(task_app, name="task")
    app.add_typer(contact_app, name="contact")
    app.add_typer(incentives_app, name="incentives")


def _instant(text: str, flag: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise ValidationError(f"{flag}: needs a UTC offset, e.g. 2026-02-02T18:00:00+08:00")
    return value


def _echo_task(t: dict[str, Any]) -> None:
    typer.echo(f"{t['task_id']}  {t['account_id']}  {t['kind']}  {t['department']}  {t['status']}"
               f"  owner {t['owner'] or '-'}  due {t['due_at']}"
               + (f"  outcome {t['outcome']}" if t["outcome"] else "")
               + (f"  escalated to {t['escalated_to']}" if t["escalated_to"] else ""))


# -- tasks -----------------------------------------------------------------------------------------


@task_app.command("open")
@handle_errors
def task_open(
    account: Annotated[str, typer.Option(help="the account")],
    kind: Annotated[str, typer.Option(help="meter_check, billing_correction, contact_update, "
                                      "plan_approval, … (collections/tasks.toml)")],
    owner: Annotated[str | None, typer.Option(help="who works it (a user name)")] = None,
    due: Annotated[str | None, typer.Option(help="due time, ISO 8601 with offset (default: the "
                                            "kind's due_days)")] = None,
    key: Annotated[str | None, typer.Option(help="idempotency key: a retry opens nothing new")] = None,
    note: Annotated[str | None, typer.Option(help="what to do (kept in the task's detail)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open a task for the kind's department."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tasks import open_task, task_json

    clock = clock_from_env()
    with database().session() as s:
        t = open_task(s, account_id=account, kind=kind, opened_by=operator(), clock=clock, key=key,
                      owner=owner, due_at=_instant(due, "--due") if due else None,
                      detail={"note": note} if note else None)
        out = task_json(t, clock.now())
    print_json(out) if json_out else _echo_task(out)


@task_app.command("assign")
@handle_errors
def task_assign(
    task_id: int,
    owner: Annotated[str, typer.Option(help="who works it")],
    department: Annotated[str | None, typer.Option(
        help="hand it to another department: collections, marketing, customer_service")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give a task to someone (and, with --department, to another department)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tasks import assign_task, task_json

    clock = clock_from_env()
    with database().session() as s:
        out = task_json(assign_task(s, task_id, owner=owner, by=operator(), clock=clock,
                                    department=department), clock.now())
    print_json(out) if json_out else _echo_task(out)


@task_app.command("done")
@handle_errors
def task_done(
    task_id: int,
    outcome: Annotated[str, typer.Option(help="how it ended (the kind's outcomes in tasks.toml)")],
    done_by: Annotated[str, typer.Option("--by", help="who did it")],
    note: Annotated[str | None, typer.Option(help="a remark for the timeline")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Report a task done with its outcome (a contact_update done contact_verified clears the
    account's contact flags; a field stop is re-checked against the balance first)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tasks import complete_task, task_json

    clock = clock_from_env()
    with database().session() as s:
        out = task_json(complete_task(s, task_id, outcome=outcome, by=done_by, clock=clock,
                                      note=note), clock.now())
    print_json(out) if json_out else _echo_task(out)


@task_app.command("list")
@handle_errors
def task_list(
    status: Annotated[str, typer.Option(help="open, done, cancelled or all")] = "open",
    department: Annotated[str | None, typer.Option(help="collections, marketing, "
                                                   "customer_service")] = None,
    owner: Annotated[str | None, typer.Option(help="one owner's tasks")] = None,
    account: Annotated[str | None, typer.Option(help="one account's tasks")] = None,
    kind: Annotated[str | None, typer.Option(help="one kind")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="open and past due only")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tasks, oldest first."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tasks import list_tasks

    with database().session() as s:
        out = list_tasks(s, clock=clock_from_env(), status=None if status == "all" else status,
                         department=department, owner=owner, account_id=account, kind=kind,
                         overdue=overdue)
    if json_out:
        print_json(out)
    else:
        for t in out:
            _echo_task(t)


@task_app.command("escalate")
@handle_errors
def task_escalate(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Escalate every overdue open task to its department's supervisor now (the daily run does
    it too); each task once."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.tasks import escalate_overdue

    with database().session() as s:
        n = escalate_overdue(s, clock=clock_from_env())
    print_json({"escalated": n}) if json_out else typer.echo(f"{n} tasks escalated")


# -- contacts --------------------------------------------------------------------------------------


@contact_app.command("flags")
@handle_errors
def contact_flags(
    status: Annotated[str, typer.Option(help="open, verified or all")] = "open",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Accounts whose phone or e-mail is in doubt: bounced notices, wrong contacts met on visits,
    none on file."""
    from dianfei.cli.context import database
    from dianfei.collections.contacts import flags_json

    out = flags_json(database().engine, None if status == "all" else status)
    if json_out:
        print_json(out)
    else:
        for f in out:
            typer.echo(f"{f['flag_id']}  {f['account_id']}  {f['reason']}  {f['field']}  "
                       f"{f['status']}  task {f['task_id']}  {f['opened_at']}")


@contact_app.command("coverage")
@handle_errors
def contact_coverage(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Share of accounts with a verified phone, by supply station (供电所)."""
    from dianfei.cli.context import database
    from dianfei.collections.contacts import coverage

    out = coverage(database().engine)
    if json_out:
        print_json(out)
    else:
        for r in out:
            typer.echo(f"{r['station_id']}  {r['accounts']} accounts  {r['phone_on_file']} phones  "
                       f"{r['phone_verified']} verified ({r['verified_share']})  "
                       f"{r['flagged']} flagged")


@contact_app.command("verify")
@handle_errors
def contact_verify(
    account: Annotated[str, typer.Option(help="the account")],
    field: Annotated[str, typer.Option(help="phone or email")],
    verified_by: Annotated[str, typer.Option("--by", help="who confirmed it with the customer")],
    value: Annotated[str | None, typer.Option(help="the new phone / e-mail, when it changed")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record a contact confirmed with the customer: the field's open flags close and their
    contact_update tasks are done."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.contacts import verify_contact

    with database().session() as s:
        out = verify_contact(s, account_id=account, field=field, verified_by=verified_by,
                             clock=clock_from_env(), value=value)
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{account}: {field} verified by {verified_by}; flags closed "
                   f"{out['flags_closed'] or 'none'}, tasks done {out['tasks_done'] or 'none'}")


# -- incentives ------------------------------------------------------------------------------------


@incentives_app.command("ratings")
@handle_errors
def incentives_ratings(
    account: Annotated[str | None, typer.Option(help="one account")] = None,
    grade: Annotated[str | None, typer.Option(help="A, B, C or D")] = None,
    repeat_defaulters: Annotated[bool, typer.Option("--repeat-defaulters",
                                                    help="only repeat defaulters (屡欠户)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Credit ratings as the daily run last computed them."""
    from dianfei.cli.context import database
    from dianfei.collections.incentives import rating_of, ratings_json

    engine = database().engine
    out = ([rating_of(engine, account)] if account
           else ratings_json(engine, grade=grade, repeat_defaulters=repeat_defaulters))
    if json_out:
        print_json(out)
    else:
        for r in out:
            typer.echo(f"{r['account_id']}  {r['grade']}  {r['points']} pts  on time {r['on_time']}"
                       f"  late {r['late']}  broken {r['broken']}  stops {r['suspensions']}"
                       + ("  REPEAT DEFAULTER" if r["repeat_defaulter"] else ""))


@incentives_app.command("report")
@handle_errors
def incentives_report(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Ratings and penalty proposals by dunning segment."""
    from dianfei.cli.context import database
    from dianfei.collections.incentives import report

    out = report(database().engine)
    if json_out:
        print_json(out)
    else:
        for r in out:
            grades = " ".join(f"{g}:{n}" for g, n in r["grades"].items())
            props = " ".join(f"{k} {v['open']} open/{v['done']} done"
                             for k, v in r["proposals"].items())
            typer.echo(f"{r['segment']}: {r['accounts']} accounts  {grades}  avg "
                       f"{r['average_points']}  {props}")
