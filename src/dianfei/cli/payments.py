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
    app.add_typer(counter_app, name="counter")


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
    from dianfei.payments.service import account_payments, payment_summary

    frame = account_payments(database().engine, account)
    rows = [payment_summary(r) for r in frame.iter_rows(named=True)]
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


counter_app = typer.Typer(help="The service-hall counter (柜台收费): shifts, payments, till close.",
                          no_args_is_help=True)


def _fen(text: str, flag: str) -> int:
    from dianfei.core.money import parse_decimal, to_fen

    return to_fen(parse_decimal(text, flag, places=2))


@counter_app.command("open")
@handle_errors
def counter_open(
    cashier: Annotated[str, typer.Option("--cashier")],
    opening_float: Annotated[str, typer.Option("--float", help="yuan in the till at the start")] = "0",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open a cashier shift."""
    from dianfei.payments.counter import open_shift

    with database().session() as s:
        shift = open_shift(s, cashier=cashier, opening_float=_fen(opening_float, "--float"),
                           clock=clock_from_env())
    print_json({"shift": shift}) if json_out else typer.echo(f"shift {shift} open")


@counter_app.command("pay")
@handle_errors
def counter_pay(
    shift: Annotated[str, typer.Option("--shift")],
    account: Annotated[str, typer.Option("--account")],
    amount: Annotated[str, typer.Option("--amount", help="yuan")],
    method: Annotated[str, typer.Option("--method", help="cash or card")] = "cash",
    tendered: Annotated[str | None, typer.Option("--tendered", help="cash handed over")] = None,
    receipt: Annotated[str | None, typer.Option("--receipt", help="re-post a receipt")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Take a payment at the counter; prints the receipt and what is still owed."""
    from dianfei.core.money import fmt_yuan
    from dianfei.payments.counter import take_payment
    from dianfei.payments.service import allocation_order

    db = database()
    with db.session() as s:
        receipt_no, res = take_payment(
            s, shift_id=shift, account_id=account, amount=_fen(amount, "--amount"),
            method=method, tendered=_fen(tendered, "--tendered") if tendered else None,
            receipt_no=receipt, clock=clock_from_env(), order=allocation_order(db.settings))
    out = {"receipt": receipt_no, "payment_id": res.payment_id, "created": res.created,
           "balance_after": fmt_yuan(res.balance_after)}
    print_json(out) if json_out else typer.echo(
        f"receipt {receipt_no}; still owed {out['balance_after']} yuan")


@counter_app.command("close")
@handle_errors
def counter_close(
    shift: Annotated[str, typer.Option("--shift")],
    counted: Annotated[str, typer.Option("--counted", help="yuan counted in the till")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Close a shift: counted cash against float + cash taken (长款/短款)."""
    from dianfei.core.money import fmt_yuan
    from dianfei.payments.counter import close_shift

    with database().session() as s:
        t = close_shift(s, shift_id=shift, counted_cash=_fen(counted, "--counted"),
                        clock=clock_from_env())
    out = {"shift": t.shift_id, "receipts": t.receipts, "cash_taken": fmt_yuan(t.cash_taken),
           "card_taken": fmt_yuan(t.card_taken), "expected_cash": fmt_yuan(t.expected_cash),
           "counted_cash": fmt_yuan(t.counted_cash), "difference": fmt_yuan(t.difference)}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"shift {t.shift_id} closed: expected {out['expected_cash']}, counted "
                   f"{out['counted_cash']}, difference {out['difference']} yuan")
