"""CLI: daily reconciliation (对账) and its worklist; bank withholding batches (代扣) and agent
collection files (代收)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.errors import ValidationError

reconcile_app = typer.Typer(
    help="Daily reconciliation of channel statements (对账).", invoke_without_command=True
)
bank_app = typer.Typer(help="Bank withholding batches (代扣) and agent files (代收).", no_args_is_help=True)
agent_app = typer.Typer(help="Collection agent files (代收).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(reconcile_app, name="reconcile")
    app.add_typer(bank_app, name="bank")
    app.add_typer(agent_app, name="agent")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"--date must be YYYY-MM-DD, got {text!r}") from None


def layout_dir_of(db: Any) -> Path | None:
    d = db.settings.raw.get("payments", {}).get("layout_dir")
    return Path(d) if d else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None


@reconcile_app.callback()
@handle_errors
def reconcile(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option(help="alipay, wechatpay or bank")] = None,
    day: Annotated[str | None, typer.Option("--date", help="the business day YYYY-MM-DD")] = None,
    statement: Annotated[Path | None, typer.Option(help="the channel's statement file")] = None,
    bank: Annotated[str | None, typer.Option(help="the bank layout of a bank result file")] = None,
    no_auto_post: Annotated[bool, typer.Option("--no-auto-post", help="report only")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reconcile one channel's statement of one day against posted payments."""
    if ctx.invoked_subcommand is not None:
        return
    if not (channel and day and statement):
        raise ValidationError(
            "reconcile needs --channel, --date and --statement (or a subcommand: worklist, resolve)"
        )
    from dianfei.payments import reconcile_service as rs

    d = _day(day)
    body = _read(statement)
    db = database()
    # a refused statement (unknown channel, unreadable, not of the day) stores nothing
    outcome = rs.reconcile_file(
        db, channel=channel, day=d, body=body, name=statement.name, where=str(statement),
        clock=clock_from_env(), bank=bank, layout_dir=layout_dir_of(db), auto_post=not no_auto_post,
    )
    out = rs.outcome_json(outcome, d)
    if json_out:
        print_json(out)
    else:
        t = out["totals"]
        typer.echo(
            f"{channel} {d}: {out['matched']} matched, {t['missing_in_ledger']['count']} missing in "
            f"ledger, {t['missing_in_statement']['count']} missing in statement, "
            f"{t['amount_mismatch']['count']} amount mismatches, {t['duplicates']['count']} duplicates, "
            f"{len(out['auto_posted'])} posted from the statement; settlement check "
            f"{'ok' if out['settlement_check']['ok'] else 'FAILED'}"
        )


@reconcile_app.command("worklist")
@handle_errors
def reconcile_worklist(
    channel: Annotated[str | None, typer.Option(help="only this channel")] = None,
    owner: Annotated[str | None, typer.Option(help="only this owner")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="include resolved rows")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The clarification worklist (待澄清): open discrepancies, oldest first, with owner and age."""
    from dianfei.payments.reconcile_worklist import worklist

    with database().session() as s:
        rows = worklist(s, clock=clock_from_env(), include_resolved=all_rows, channel=channel,
                        owner=owner)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>6} {r['channel']:<9} {r['day']} {r['kind']:<22} {r['transaction_id']:<32} "
            f"{r['statement_amount'] or '':>10} {r['ledger_amount'] or '':>10} {r['owner']} "
            f"{r['age_days']}d"
        )


@reconcile_app.command("resolve")
@handle_errors
def reconcile_resolve(
    discrepancy_id: Annotated[int, typer.Argument(help="the worklist row's id")],
    note: Annotated[str, typer.Option(help="how it was cleared")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Close a worklist row with a note."""
    from dianfei.payments import reconcile_service as rs

    with database().session() as s:
        row = rs.resolve(s, discrepancy_id, note=note, clock=clock_from_env())
    if json_out:
        print_json(row)
    else:
        typer.echo(f"discrepancy {discrepancy_id} resolved")


@bank_app.command("export")
@handle_errors
def bank_export(
    bank: Annotated[str, typer.Option(help="the bank's layout code")],
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    out: Annotated[Path, typer.Option(help="the batch file to write")],
    merchant_code: Annotated[str | None, typer.Option(help="the bank's merchant code for us")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write the month's debit batch file for accounts with an active withholding mandate."""
    from dianfei.core.clock import Period
    from dianfei.core.money import fmt_yuan
    from dianfei.db.pii import cipher_for
    from dianfei.payments import bankfiles
    from dianfei.payments.layouts import load_layout

    db = database()
    layout = load_layout(bank, layout_dir_of(db))
    code = merchant_code or db.settings.raw.get("payments", {}).get("banks", {}).get(bank, {}).get(
        "merchant_code"
    )
    with db.session() as s:
        exp = bankfiles.export_debit_batch(
            s,
            layout=layout,
            period=Period.parse(period),
            cipher=cipher_for(db),
            clock=clock_from_env(),
            merchant_code=code,
        )
    out.write_bytes(exp.body)
    res = {
        "batch_id": exp.batch_id,
        "attempt": exp.attempt,
        "count": exp.count,
        "total": fmt_yuan(exp.total),
        "file": str(out),
        "reused": exp.reused,
    }
    if json_out:
        print_json(res)
    else:
        typer.echo(f"{exp.batch_id}: {exp.count} debits, {fmt_yuan(exp.total)} yuan → {out}")


def _import(kind: str, layout_code: str, path: Path, json_out: bool) -> None:
    from dianfei.db.pii import cipher_for
    from dianfei.payments import bankfiles
    from dianfei.payments import reconcile_service as rs
    from dianfei.payments.layouts import load_layout

    db = database()
    clock = clock_from_env()
    layout = load_layout(layout_code, layout_dir_of(db))
    body = _read(path)
    cipher = cipher_for(db)
    # the file is stored in the same transaction as its import: a refused file stores nothing
    with db.session() as s:
        file_id = rs.receive_file(
            s, kind=kind, channel=layout.channel, name=path.name, body=body, clock=clock,
            cipher=cipher, layout=layout.code,
        )
        fn = bankfiles.import_bank_result if kind == "bank_result" else bankfiles.import_agent_file
        res = fn(s, layout=layout, body=body, name=str(path), clock=clock, file_id=file_id)
        rs.mark_file(s, file_id, "processed")
    out = {
        "batch_id": res.batch_id,
        "posted": res.posted,
        "already_posted": res.already_posted,
        "failed": res.failed,
        "returned": res.returned,
        "unposted": res.unposted,
        "failures": res.failures,
    }
    if json_out:
        print_json(out)
    else:
        typer.echo(
            f"{path.name}: {res.posted} posted, {res.already_posted} already posted, {res.failed} failed, "
            f"{res.returned} returned, {len(res.unposted)} on the worklist"
        )


@bank_app.command("import")
@handle_errors
def bank_import(
    file: Annotated[Path, typer.Argument(help="the bank's result file")],
    bank: Annotated[str, typer.Option(help="the bank's layout code")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply the bank's result file: post successes, keep failures for dunning, reverse returns."""
    _import("bank_result", bank, file, json_out)


@bank_app.command("mandate")
@handle_errors
def bank_mandate(
    account: Annotated[str, typer.Option(help="the account to debit")],
    bank: Annotated[str, typer.Option(help="the bank's layout code")],
    bank_account: Annotated[str, typer.Option(help="the bank account number (stored encrypted)")],
    holder: Annotated[str, typer.Option(help="the holder's name (户名)")],
    active_from: Annotated[str, typer.Option(help="YYYY-MM-DD")],
    active_to: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Record a withholding mandate (代扣协议)."""
    from dianfei.db.pii import cipher_for
    from dianfei.payments import bankfiles
    from dianfei.payments.layouts import load_layout

    db = database()
    load_layout(bank, layout_dir_of(db))
    with db.session() as s:
        mid = bankfiles.add_mandate(
            s,
            cipher=cipher_for(db),
            account_id=account,
            bank=bank,
            bank_account=bank_account,
            holder_name=holder,
            active_from=_day(active_from),
            active_to=_day(active_to) if active_to else None,
            clock=clock_from_env(),
        )
    typer.echo(f"mandate {mid}: {account} at {bank} {bankfiles.mask_bank_account(bank_account)}")


@agent_app.command("import")
@handle_errors
def agent_import(
    file: Annotated[Path, typer.Argument(help="the agent's daily collection file")],
    layout: Annotated[str, typer.Option("--layout", help="the agent's layout code")] = "post_agent",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Post an agent's (post office, 代收点) daily collection file; re-importing changes nothing."""
    _import("agent", layout, file, json_out)
