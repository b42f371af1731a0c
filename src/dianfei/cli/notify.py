"""CLI: notices (通知) — dispatch the outbox, list it, the worklist, opt-outs, contacts, previews."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database

notify_app = typer.Typer(help="Notices: outbox, SMS, e-mail, letters (通知).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")


@notify_app.command("dispatch")
@handle_errors
def dispatch_cmd(
    limit: Annotated[int | None, typer.Option(help="consider at most this many due notices")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One dispatch pass: send what is due, retry what may be retried, surface the rest."""
    from dianfei.notify.service import dispatch

    report = dispatch(database(), clock=clock_from_env(), limit=limit)
    if json_out:
        print_json(report.as_dict())
    else:
        typer.echo(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.as_dict().items() if v)
                   or "nothing due")


def _print_rows(rows: list[dict[str, object]]) -> None:
    for r in rows:
        typer.echo(f"{r['outbox_id']:>8}  {r['status']:<10} {r['channel']:<7} {r['notice']:<16} "
                   f"{r['account_id']:<12} {r['queued_at']}  {r['last_error'] or ''}")


@notify_app.command("outbox")
@handle_errors
def outbox_cmd(
    account: Annotated[str | None, typer.Option(help="one account's notices (its timeline)")] = None,
    status: Annotated[str | None, typer.Option(
        help="queued, sending, sent, delivered, failed, opted_out, suppressed")] = None,
    channel: Annotated[str | None, typer.Option(help="sms, email, wechat, letter")] = None,
    key_prefix: Annotated[str | None, typer.Option(help="notices whose key starts with this")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many, oldest first")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The outbox, oldest first: every notice with its status, attempts and last error."""
    from dianfei.notify.service import deliveries

    rows = [d.as_json() for d in deliveries(database(), account_id=account, status=status,
                                            channel=channel, key_prefix=key_prefix, limit=limit)]
    if json_out:
        print_json(rows)
    else:
        _print_rows(rows)


@notify_app.command("worklist")
@handle_errors
def worklist_cmd(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Notices that need a person: failed after their retries, or with an unknown outcome."""
    from dianfei.notify.service import worklist

    rows = [d.as_json() for d in worklist(database())]
    if json_out:
        print_json(rows)
    else:
        _print_rows(rows)


@notify_app.command("retry")
@handle_errors
def retry_cmd(
    outbox_id: Annotated[int, typer.Argument(help="the failed notice's outbox id")],
    reason: Annotated[str, typer.Option(help="why it may be sent again (e.g. checked the SMS log)")],
) -> None:
    """Re-queue a failed notice for one more try."""
    from dianfei.notify.service import retry

    db = database()
    with db.session() as s:
        retry(s, outbox_id=outbox_id, reason=reason, clock=clock_from_env())
    typer.echo(f"notice {outbox_id} re-queued")


@notify_app.command("opt-out")
@handle_errors
def opt_out_cmd(
    customer: Annotated[str, typer.Option(help="customer id")],
    channel: Annotated[str, typer.Option(help="sms, email, wechat, letter")],
    reason: Annotated[str, typer.Option(help="e.g. the customer's SMS reply 'TD'")],
) -> None:
    """Record a customer's refusal of a channel (退订). Stop notices still go out, by letter."""
    from dianfei.notify.service import opt_out

    db = database()
    with db.session() as s:
        opt_out(s, customer_id=customer, channel=channel, reason=reason, clock=clock_from_env())
    typer.echo(f"{customer} opted out of {channel}")


@notify_app.command("opt-in")
@handle_errors
def opt_in_cmd(
    customer: Annotated[str, typer.Option(help="customer id")],
    channel: Annotated[str, typer.Option(help="sms, email, wechat, letter")],
) -> None:
    """Withdraw a customer's opt-out (kept in the history)."""
    from dianfei.notify.service import opt_in

    db = database()
    with db.session() as s:
        found = opt_in(s, customer_id=customer, channel=channel, clock=clock_from_env())
    typer.echo(f"{customer} opted back in to {channel}" if found
               else f"{customer} had not opted out of {channel}")


@notify_app.command("contact")
@handle_errors
def contact_cmd(
    customer: Annotated[str, typer.Option(help="customer id")],
    email: Annotated[str | None, typer.Option(help="e-mail address ('' clears it)")] = None,
    wechat_openid: Annotated[str | None, typer.Option(help="WeChat openid ('' clears it)")] = None,
    locale: Annotated[str | None, typer.Option(help="zh-CN or en")] = None,
) -> None:
    """Set how a customer is reached (the phone comes from the customer record)."""
    from dianfei.notify.service import mask_email, set_contact

    db = database()
    with db.session() as s:
        set_contact(s, customer_id=customer, email=email, wechat_openid=wechat_openid, locale=locale,
                    clock=clock_from_env())
    typer.echo(f"{customer}: contact saved" + (f" (e-mail {mask_email(email)})" if email else ""))


@notify_app.command("preview")
@handle_errors
def preview_cmd(
    notice: Annotated[str, typer.Option(help="reminder, final_reminder, stop_notice, pre_stop, "
                                             "prepay_warning, cutoff_notice, reconnected, payment_receipt, "
                                             "bill_forecast")],
    channel: Annotated[str, typer.Option(help="sms, email, wechat, letter")],
    locale: Annotated[str, typer.Option(help="zh-CN or en")] = "zh-CN",
    html: Annotated[bool, typer.Option("--html", help="e-mail: print the HTML part")] = False,
    out: Annotated[Path | None, typer.Option(help="letter: write the PDF here")] = None,
) -> None:
    """Render a notice with sample values, as the customer would receive it."""
    from dianfei.core.settings import load_settings
    from dianfei.notify.rules import load_notify_settings
    from dianfei.notify.service import preview

    settings = load_settings()
    r = preview(notice, channel, locale, settings=load_notify_settings(settings.raw, settings.timezone))
    if channel == "sms":
        typer.echo(r.sms_text)
    elif channel == "email":
        typer.echo(r.html if html else f"Subject: {r.subject}\n\n{r.text}")
    elif channel == "letter":
        if out is None:
            typer.echo(r.letter_markup)
        else:
            from dianfei.notify.letters import parse_markup, render_pdf, write_atomically

            write_atomically(out, render_pdf(parse_markup(r.letter_markup or ""), title=r.title))
            typer.echo(f"wrote {out}")
    else:
        typer.echo("\n\n".join([r.title, *r.paragraphs, *(f"{k}: {v}" for k, v in r.facts)]))
