"""CLI: ``late-fee``, ``collect run|events|tasks|commands|approve|complete-task``, ``plan``, ``waiver``.

Thin shells over ``dianfei.collections``. ``dianfei late-fee`` imports only the standard library
and the late-fee rule so that it answers in well under half a second.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.core.errors import ValidationError

collect_app = typer.Typer(help="Collections (催费): late fees, dunning, notices, suspension.",
                          no_args_is_help=True)
plan_app = typer.Typer(help="Payment plans (分期缴费协议).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("late-fee")(late_fee_cmd)
    app.command("waiver")(waiver_cmd)
    app.add_typer(collect_app, name="collect")
    app.add_typer(plan_app, name="plan")


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


@handle_errors
def late_fee_cmd(
    customer_class: Annotated[str, typer.Option("--customer-class", help="residential, commercial, "
                                                "industrial, large_industry, agricultural")],
    amount: Annotated[str, typer.Option("--amount", help="overdue amount, yuan")],
    due_date: Annotated[str, typer.Option("--due-date", help="YYYY-MM-DD")],
    paid_date: Annotated[str, typer.Option("--paid-date", help="YYYY-MM-DD")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The late payment fee (电费违约金) on an amount paid late, per the configured rule."""
    from dianfei.collections.late_fees import late_fee
    from dianfei.core.money import parse_decimal, to_fen

    principal = to_fen(parse_decimal(amount, "--amount", places=2, allow_negative=False))
    fee = late_fee(customer_class, principal, _day(due_date, "--due-date"),
                   _day(paid_date, "--paid-date"))
    out = fee.to_json()
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{out['days']} days × {out['rate_per_day']}/day → {out['amount']} yuan")


@collect_app.command("run")
@handle_errors
def collect_run(
    day: Annotated[str, typer.Option("--date", help="the business day YYYY-MM-DD")],
    no_meter_control: Annotated[bool, typer.Option(
        "--no-meter-control", help="run without remote meter control: owed suspensions and "
        "reconnections go to the field-crew worklist (collect tasks)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One day of collections: payments seen, late fees, dunning, notices, stops, reconnections,
    prepay balances. Idempotent: running the same day again does nothing new.

    Refuses to run (exit 2) when meter control ([metering.dlt645] / DIANFEI_DLT645_*) is missing
    or unusable, unless --no-meter-control says to work without it."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.service import run_day
    from dianfei.collections.suspension import FieldCrew
    from dianfei.metering.control import RemoteSwitch, checked_remote_switch

    d = _day(day, "--date")
    db, clock = database(), clock_from_env()
    switch: RemoteSwitch
    if no_meter_control:
        switch = FieldCrew()
    else:
        try:
            switch = checked_remote_switch(db, clock=clock)
        except ValidationError as exc:
            raise ValidationError(
                f"{exc}. Nothing was done. Fix the meter-control settings (docs/metering-live.md), "
                "or pass --no-meter-control to run without it: owed suspensions and reconnections "
                "then go to the field-crew worklist") from None
    report = run_day(db, d, clock=clock, switch=switch)
    out = {**report.to_json(), "meter_control": not no_meter_control}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{out['day']}: {out['payments']} payments, {out['late_fees']} late fees "
                   f"({out['late_fee_amount']} yuan), {out['dunning_changes']} dunning steps, "
                   f"{out['notices']} notices, {out['suspended']} suspended, "
                   f"{out['reconnected']} reconnected")
        if no_meter_control:
            typer.echo("no meter control: owed stops and reconnections are field_stop / "
                       "field_reconnect tasks (dianfei collect tasks)")


@collect_app.command("events")
@handle_errors
def collect_events(
    account: Annotated[str | None, typer.Option("--account", help="one account")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The collection events, oldest first."""
    from dianfei.cli.context import database
    from dianfei.collections.service import events_json

    events = events_json(database(), account)
    if json_out:
        print_json(events)
    else:
        for e in events:
            rest = {k: v for k, v in e.items() if k not in ("account", "type", "at")}
            typer.echo(f"{e['at']}  {e['account']}  {e['type']}  {rest if rest else ''}")


@collect_app.command("tasks")
@handle_errors
def collect_tasks(
    status: Annotated[str, typer.Option(help="open, done, cancelled or all")] = "open",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The worklist: collector visits, field stops/reconnections, approvals, failed commands."""
    from dianfei.cli.context import database
    from dianfei.collections.service import tasks_json

    tasks = tasks_json(database(), None if status == "all" else status)
    if json_out:
        print_json(tasks)
    else:
        for t in tasks:
            typer.echo(f"{t['task_id']}  {t['account']}  {t['kind']}  {t['status']}  due {t['due_at']}")


@collect_app.command("approve")
@handle_errors
def collect_approve(
    case_id: int,
    approver: Annotated[str | None, typer.Option(
        "--approver", "--as", help="the user approving the suspension order (default: "
        "DIANFEI_USER); needs approvals:decide:suspension")] = None,
) -> None:
    """Approve a suspension order (where the policy requires approval): the approval request
    the dunning ladder raised for the case (dianfei approvals), approved as this user."""
    from dianfei.approvals import service
    from dianfei.cli.approvals import acting_user
    from dianfei.cli.context import clock_from_env, database

    db, clock = database(), clock_from_env()
    service.housekeeping(db, clock)
    request_id = service.pending_suspension(db, case_id)
    out = service.approve(db, request_id, checker=acting_user(approver), clock=clock)
    typer.echo(f"stop case {case_id} approved by {out['decided_by']} (request {request_id})")


@collect_app.command("complete-task")
@handle_errors
def collect_complete(
    task_id: int,
    done_by: Annotated[str, typer.Option("--by", help="who did it")],
) -> None:
    """Report a worklist task done (a field stop is re-checked against the balance first)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.rules import policy
    from dianfei.collections.suspension import complete_task

    with database().session() as s:
        task = complete_task(s, task_id, done_by=done_by, clock=clock_from_env(), policy_=policy())
    typer.echo(f"task {task_id}: {task.status}")


@plan_app.command("agree")
@handle_errors
def plan_agree(
    account: Annotated[str, typer.Option(help="the account")],
    instalment: Annotated[list[str], typer.Option(help="DATE:AMOUNT (yuan), repeat per instalment")],
    requested_by: Annotated[str, typer.Option("--requested-by")],
    approved_by: Annotated[str | None, typer.Option("--approved-by")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Agree a payment plan: dunning pauses while it is kept, a stopped supply is reconnected."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.plans import agree_plan
    from dianfei.core.money import parse_decimal, to_fen

    parts = []
    for item in instalment:
        d, _, a = item.partition(":")
        parts.append((_day(d, "--instalment"),
                      to_fen(parse_decimal(a, "--instalment amount", places=2, allow_negative=False))))
    with database().session() as s:
        plan = agree_plan(s, account_id=account, instalments=parts, requested_by=requested_by,
                          approved_by=approved_by, clock=clock_from_env())
        out = {"plan_id": plan.plan_id, "account": account, "status": plan.status}
    print_json(out) if json_out else typer.echo(f"plan {out['plan_id']} agreed for {account}")


@handle_errors
def waiver_cmd(
    bill: Annotated[str, typer.Option(help="the bill whose late fees are waived")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    requested_by: Annotated[str | None, typer.Option(
        "--requested-by", "--as", help="the user asking (default: DIANFEI_USER)")] = None,
    approved_by: Annotated[str | None, typer.Option(
        "--approved-by", help="a second user who approves it at once (never the requester)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask for a waiver of a bill's late fees (违约金减免): a request a second person approves
    (dianfei approvals approve ID); with --approved-by that person approves it at once."""
    from dianfei.cli.approvals import ask

    req = ask("waiver", {"bill_id": bill}, reason, requested_by, approved_by)
    done = req["state"] == "executed"
    out = {"request_id": req["request_id"], "state": req["state"], "bill_id": bill,
           "amount": req["result"]["amount"] if done else req["amount"]}
    if json_out:
        print_json(out)
    elif done:
        typer.echo(f"waived {out['amount']} yuan on {bill} (request {out['request_id']})")
    else:
        typer.echo(f"request {out['request_id']}: waiver of {out['amount']} yuan on {bill} awaits "
                   f"a second person (dianfei approvals approve {out['request_id']})")
