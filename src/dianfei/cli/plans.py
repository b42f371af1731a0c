"""CLI: ``plan propose|approve|cancel|suggest|list|show|report`` (``plan agree`` is in
cli/collections.py). Thin shells over ``dianfei.collections.service``'s plan functions; the
REST API (web/plans_api.py) calls the same ones."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from dianfei.cli.collections import plan_app
from dianfei.cli.common import handle_errors, print_json
from dianfei.core.errors import ValidationError


def register(app: typer.Typer) -> None:
    """The commands join the ``plan`` group that cli/collections.py registers."""


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


def _fen(text: str, flag: str) -> int:
    from dianfei.core.money import parse_decimal, to_fen

    return to_fen(parse_decimal(text, flag, places=2, allow_negative=False))


def _show(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(out)
        return
    typer.echo(f"plan {out['plan_id']} ({out['kind']}) for {out['account_id']}: {out['status']}, "
               f"total {out['total']} yuan, down payment {out['down_payment']}")
    for i in out.get("instalments", []):
        on = f" with the {i['period']} bill" if i["period"] else ""
        typer.echo(f"  {i['seq']:>2}  {i['due_on']}  {i['amount']:>10}{on}")


@plan_app.command("propose")
@handle_errors
def plan_propose(
    account: Annotated[str, typer.Option(help="the account")],
    kind: Annotated[str, typer.Option(help="pay_plan (own dates) or instalment (with the bills)")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="the collector proposing")],
    down_payment: Annotated[str, typer.Option("--down-payment", help="yuan, due first")] = "0",
    instalments: Annotated[int | None, typer.Option(
        help="how many instalments (the rest spread evenly)")] = None,
    instalment: Annotated[list[str] | None, typer.Option(
        help="pay_plan: DATE:AMOUNT; instalment: AMOUNT (yuan); repeat per instalment")] = None,
    suggested: Annotated[bool, typer.Option(
        "--suggested", help="take the policy's suggested schedule")] = False,
    request_key: Annotated[str | None, typer.Option(
        "--request-key", help="idempotency key: a retried proposal is stored once")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Propose a payment plan for what the account owes: refused outside the policy
    (plans.toml) naming the rule; active at once, or awaiting a second person's approval."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.plan_report import show_plan
    from dianfei.collections.service import propose_plan, suggest_schedule

    clock = clock_from_env()
    db = database()
    with db.session() as s:
        down = _fen(down_payment, "--down-payment")
        given = sum(x is not None and x is not False for x in (instalments, instalment or None,
                                                                suggested or None))
        if given != 1:
            raise ValidationError("give exactly one of --instalments N, --instalment (repeated) "
                                  "or --suggested")
        plan_of: Any
        if suggested:
            sug = suggest_schedule(s, account_id=account, kind=kind, clock=clock)
            down = int(sug["down_payment_fen"])
            plan_of = ([(date.fromisoformat(i["due_on"]), int(i["amount_fen"]))
                        for i in sug["instalments"]] if kind == "pay_plan"
                       else [int(i["amount_fen"]) for i in sug["instalments"]])
        elif instalments is not None:
            plan_of = instalments
        elif kind == "pay_plan":
            plan_of = []
            for item in instalment or []:
                d, sep, a = item.partition(":")
                if not sep:
                    raise ValidationError(f"--instalment: DATE:AMOUNT, got {item!r}")
                plan_of.append((_day(d, "--instalment"), _fen(a, "--instalment amount")))
        else:
            plan_of = [_fen(a, "--instalment") for a in instalment or []]
        plan = propose_plan(s, account_id=account, kind=kind, down_payment_fen=down,
                            instalments=plan_of, requested_by=requested_by, clock=clock,
                            request_key=request_key)
        plan_id = plan.plan_id
    _show(show_plan(db.engine, plan_id), json_out)


@plan_app.command("suggest")
@handle_errors
def plan_suggest(
    account: Annotated[str, typer.Option(help="the account")],
    kind: Annotated[str, typer.Option(help="pay_plan or instalment")] = "pay_plan",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A policy-conforming schedule for what the account owes now (nothing is stored)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.service import suggest_schedule

    with database().engine.connect() as conn:
        out = suggest_schedule(conn, account_id=account, kind=kind, clock=clock_from_env())
    if json_out:
        # amounts in yuan strings only (the ``*_fen`` integers are for callers of the service)
        print_json({k: v for k, v in out.items() if not k.endswith("_fen")}
                   | {"instalments": [{k: v for k, v in i.items() if not k.endswith("_fen")}
                                      for i in out["instalments"]]})
        return
    typer.echo(f"{out['account_id']} ({out['policy']}): {out['total']} yuan — down payment "
               f"{out['down_payment']} by {out['down_payment_due_on']}"
               + (", needs approval" if out["approval_required"] else ""))
    for i in out["instalments"]:
        typer.echo(f"  {i['due_on']}  {i['amount']:>10}" + (f"  ({i['period']} bill)"
                                                            if i["period"] else ""))


@plan_app.command("approve")
@handle_errors
def plan_approve(
    plan_id: int,
    approved_by: Annotated[str, typer.Option("--by", help="the approver (not the requester)")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a proposed plan (four-eyes): it becomes active."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.plan_report import show_plan
    from dianfei.collections.service import approve_plan

    db = database()
    with db.session() as s:
        approve_plan(s, plan_id, approved_by, clock_from_env())
    _show(show_plan(db.engine, plan_id), json_out)


@plan_app.command("cancel")
@handle_errors
def plan_cancel(
    plan_id: int,
    cancelled_by: Annotated[str, typer.Option("--by", help="who cancels it")],
    reason: Annotated[str, typer.Option(help="why (recorded)")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a proposed or active plan: dunning resumes with the next daily run."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.plan_report import show_plan
    from dianfei.collections.service import cancel_plan

    db = database()
    with db.session() as s:
        cancel_plan(s, plan_id, cancelled_by=cancelled_by, reason=reason, clock=clock_from_env())
    _show(show_plan(db.engine, plan_id), json_out)


@plan_app.command("list")
@handle_errors
def plan_list(
    status: Annotated[str | None, typer.Option(
        help="proposed, active, completed, broken or cancelled")] = None,
    account: Annotated[str | None, typer.Option(help="one account's plans")] = None,
    requested_by: Annotated[str | None, typer.Option("--requested-by")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Payment plans, newest first."""
    from dianfei.cli.context import database
    from dianfei.collections.plan_report import list_plans

    rows = list_plans(database().engine, status=status, account_id=account,
                      requested_by=requested_by)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['plan_id']:>6}  {r['account_id']:<12} {r['kind']:<10} {r['status']:<9} "
                   f"{r['total']:>10}  {r['requested_by']}")


@plan_app.command("show")
@handle_errors
def plan_show(plan_id: int, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One plan with its instalments (0: the down payment)."""
    from dianfei.cli.context import database
    from dianfei.collections.plan_report import show_plan

    _show(show_plan(database().engine, plan_id), json_out)


@plan_app.command("report")
@handle_errors
def plan_report_cmd(
    from_: Annotated[str, typer.Option("--from", help="first business day YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="last business day YYYY-MM-DD")],
    by: Annotated[str, typer.Option(help="collector or segment")] = "collector",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Plan performance: in force, kept, broken, completed, recovered — by collector or
    segment."""
    from dianfei.cli.context import database
    from dianfei.collections.plan_report import plan_performance

    out = plan_performance(database().engine, _day(from_, "--from"), _day(to, "--to"), by)
    if json_out:
        print_json(out)
        return
    typer.echo(f"{by:<14} {'in force':>8} {'kept':>6} {'broken':>6} {'done':>6} {'recovered':>12}")
    for r in [*out["rows"], {by: "total", **out["total"]}]:
        typer.echo(f"{r[by]:<14} {r['in_force']:>8} {r['kept']:>6} {r['broken']:>6} "
                   f"{r['completed']:>6} {r['recovered']:>12}")
