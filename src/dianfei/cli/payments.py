"""``dianfei pay …``: payment orders, an account's payments, refunds and the refusal worklist."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database

pay_app = typer.Typer(help="Payments (缴费): orders for online channels, posted payments, refunds.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pay_app, name="pay")


@pay_app.command("order")
@handle_errors
def pay_order(
    account: Annotated[str, typer.Option("--account", help="account to pay for")],
    amount: Annotated[str, typer.Option("--amount", help="yuan, e.g. 123.45")],
    channel: Annotated[str, typer.Option("--channel", help="alipay, wechatpay or online")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a payment order (out_trade_no) to hand to the payment channel."""
    from dianfei.core.money import parse_decimal, to_fen
    from dianfei.payments.channels.orders import channel_order_fields
    from dianfei.payments.service import create_order, order_summary

    fen = to_fen(parse_decimal(amount, "--amount", places=2))
    db = database()
    with db.session() as s:
        order = create_order(s, account_id=account, amount=fen, channel=channel,
                             clock=clock_from_env())
        out: dict[str, Any] = dict(order_summary(order))
        out["fields"] = channel_order_fields(channel, order_no=order.order_no, amount_fen=fen,
                                             description=f"电费 {account}",
                                             expires_at=order.expires_at)
    if json_out:
        print_json(out)
    else:
        typer.echo(f"order {out['order_no']}: {out['amount']} yuan for {account} via {channel}, "
                   f"expires {out['expires_at']}")


@pay_app.command("list")
@handle_errors
def pay_list(
    account: Annotated[str, typer.Option("--account")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The account's posted payments, oldest first."""
    from dianfei.payments.service import account_payments
    from dianfei.web.payments_api import payment_json

    frame = account_payments(database().engine, account)
    rows = [payment_json(r) for r in frame.iter_rows(named=True)]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['paid_at']}  {r['channel']:<9} {r['amount']:>12}  {r['transaction_id']}"
                   f"  {r['status']}")


@pay_app.command("refund")
@handle_errors
def pay_refund(
    payment_id: Annotated[str, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    returned: Annotated[bool, typer.Option("--returned", help="a bank return, not a refund")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reverse a payment: its ledger entry and exactly what it was allocated to."""
    from dianfei.payments.service import reverse_payment

    with database().session() as s:
        entry = reverse_payment(s, payment_id, reason=reason, clock=clock_from_env(),
                                status="returned" if returned else "refunded")
    if json_out:
        print_json({"payment_id": payment_id, "reversal_entry_id": entry})
    else:
        typer.echo(f"payment {payment_id} reversed (ledger entry {entry})")


@pay_app.command("worklist")
@handle_errors
def pay_worklist(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Refused notifications (bad signature, unknown order, amount mismatch, …) to clarify."""
    from dianfei.payments.inbox import worklist

    clock = clock_from_env()
    rows = [{"id": m.id, "channel": m.channel, "received_at": m.received_at.isoformat(),
             "age_days": (clock.now() - m.received_at).days, "refusal": m.refusal,
             "detail": m.detail, "transaction_id": m.transaction_id, "owner": m.owner}
            for m in worklist(database())]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"#{r['id']} {r['channel']} {r['refusal']} {r['transaction_id'] or '-'} "
                   f"({r['age_days']} d): {r['detail']}")
