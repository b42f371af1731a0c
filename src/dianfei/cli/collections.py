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
