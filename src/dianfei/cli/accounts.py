"""CLI: ``account show`` — what an account owes, at a glance."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database

account_app = typer.Typer(help="Accounts: balance, open items, credit, plan, supply state; "
                          "closures due.",
                          no_args_is_help=True)


@account_app.command("show")
@handle_errors
def account_show(
    account: Annotated[str, typer.Argument(help="the account id")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="business date (default today)")]
    = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Balance, amount due, open items with their ages, credit, late fees, plan, supply state
    and the risk segment (客户分类) the dunning ladder reads."""
    from dianfei.collections.account import account_segment, account_view
    from dianfei.core.clock import business_date

    day = date.fromisoformat(as_of) if as_of else business_date(clock_from_env().now())
    db = database()
    with db.engine.connect() as conn:
        view = account_view(conn, account, as_of=day)
    # the risk segment the ladder reads (客户分类): a key of its own, the others unchanged
    view["segment"] = account_segment(db, account, as_of=day)
    if json_out:
        print_json(view)
        return
    typer.echo(f"{view['account']}  {view['name'] or ''}  {view['customer_class'] or ''}  "
               f"({view['payment_mode'] or ''})  as of {view['as_of']}")
    typer.echo(f"  amount due {view['amount_due']:>12}   balance {view['balance']}   "
               f"overdue {view['overdue']}   credit {view['credit']}")
    typer.echo(f"  late fees: open {view['late_fees']['open']}, accrued not yet posted "
               f"{view['late_fees']['pending']}")
    for r in view["open_items"]:
        typer.echo(f"  {r['reference']:<28} {r['kind']:<8} due {r['due_on']}  open {r['open']:>10}"
                   f"  {r['days_overdue']:>4} days overdue")
    if view["plan"]:
        p = view["plan"]
        typer.echo(f"  payment plan {p['plan_id']} agreed {p['agreed_on']}: {p['total']}")
    typer.echo(f"  supply: {view['supply']['state']}")
    if view["segment"]:
        seg = view["segment"]
        typer.echo(f"  segment: {seg['label']}  ({seg['rule']})")


@account_app.command("closures")
@handle_errors
def account_closures(
    as_of: Annotated[str | None, typer.Option("--as-of", help="business date (default today)")]
    = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The accounts due for closure (销户): supply off for six months or more and still off,
    longest first, with what a closure would write off. A clerk asks for each with
    `dianfei approvals request account_closure --payload '{"account_id": …}'`; a supervisor
    decides."""
    from dianfei.collections.service import CLOSE_AFTER_MONTHS, closure_candidates
    from dianfei.core.clock import BUSINESS_TZ, business_date
    from dianfei.core.money import fmt_yuan

    day = date.fromisoformat(as_of) if as_of else business_date(clock_from_env().now())
    found = closure_candidates(database().engine, day)
    rows = [{"account_id": r["account_id"], "customer_id": r["customer_id"],
             "reason": r["reason"],
             "off_since": r["off_at"].astimezone(BUSINESS_TZ).date().isoformat(),
             "owed": fmt_yuan(int(r["owed"]))} for r in found.iter_rows(named=True)]
    if json_out:
        print_json({"as_of": day.isoformat(), "months": CLOSE_AFTER_MONTHS, "accounts": rows})
        return
    typer.echo(f"{len(rows)} account(s) off supply for {CLOSE_AFTER_MONTHS} months or more "
               f"as of {day}")
    for r in rows:
        typer.echo(f"  {r['account_id']:<14} off since {r['off_since']} ({r['reason']})  "
                   f"owes {r['owed']:>12}")


def register(app: typer.Typer) -> None:
    app.add_typer(account_app, name="account")
