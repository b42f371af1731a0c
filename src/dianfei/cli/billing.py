"""CLI: bill run / show / cancel / exceptions, ledger check / aging, exports, demo."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError

bill_app = typer.Typer(help="Bill runs and bills (电费核算与账单).", no_args_is_help=True)
ledger_app = typer.Typer(help="The receivable ledger (应收账).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(bill_app, name="bill")
    app.add_typer(ledger_app, name="ledger")
    app.command("export")(export)
    app.command("demo")(demo)
    app.command("serve")(serve)


def _progress_bar(label: str):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), transient=True, disable=not sys.stderr.isatty())


@bill_app.command("run")
@handle_errors
def bill_run(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    backend: Annotated[str, typer.Option(help="local (Spark is not available yet)")] = "local",
    chunk_size: Annotated[int, typer.Option(help="accounts per transaction")] = 100_000,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bill every open account for the period: idempotent, resumable after a crash."""
    from dianfei.billing.service import run_bill_run
    from dianfei.core.money import fmt_qty, fmt_yuan

    if backend != "local":
        raise ValidationError(f"backend {backend!r} is not available; use --backend local")
    if chunk_size < 1:
        raise ValidationError("--chunk-size must be at least 1")
    p = Period.parse(period)
    db = database()
    with _progress_bar(f"bill run {p}") as bar:
        task = bar.add_task("bill", total=None)
        res = run_bill_run(db, p, clock_from_env(), chunk_size=chunk_size,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))
    out = {"run_id": res.run_id, "period": res.period, "issued_on": str(res.issued_on),
           "due_on": str(res.due_on), "resumed": res.resumed, "candidates": res.candidates,
           "billed": res.billed, "exceptions": res.exceptions, "kwh": fmt_qty(res.kwh),
           "amount": fmt_yuan(res.amount),
           "timings": {k: round(v, 3) for k, v in res.timings.items()}}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{res.run_id}: {res.billed} billed in this run, {res.exceptions} exceptions, "
                   f"{fmt_yuan(res.amount)} yuan; due {res.due_on}")


@bill_app.command("show")
@handle_errors
def bill_show(
    account: str,
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    fmt: Annotated[str, typer.Option("--format", help="json or html")] = "json",
    out: Annotated[Path | None, typer.Option(help="write to this file")] = None,
) -> None:
    """One bill with its lines, reads, history and peer comparison."""
    import json

    from dianfei.billing.documents import bill_document

    doc = bill_document(database().engine, account, Period.parse(period))
    if fmt == "json":
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    elif fmt == "html":
        from dianfei.billing.render import render_html

        text = render_html(doc)
    else:
        raise ValidationError(f"--format must be json or html, got {fmt!r}")
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


@bill_app.command("cancel")
@handle_errors
def bill_cancel(
    bill_id: str,
    reason: Annotated[str, typer.Option(help="why the bill is wrong (recorded)")],
    rebill: Annotated[bool, typer.Option(help="bill the account again from current reads")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel a bill (its debit is reversed by a new ledger entry); optionally rebill."""
    from dianfei.billing import service

    db, clock = database(), clock_from_env()
    if rebill:
        res = service.rebill(db, clock, bill_id, reason)
        out = {"cancelled": bill_id, "rebilled": res.billed, "exceptions": res.exceptions}
    else:
        with db.session() as s:
            service.cancel_bill(s, clock, bill_id, reason)
        out = {"cancelled": bill_id}
    print_json(out) if json_out else typer.echo(f"cancelled {bill_id}")


@bill_app.command("exceptions")
@handle_errors
def bill_exceptions(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Accounts the period's runs could not bill and that still have no bill, with reasons."""
    from dianfei.billing.service import open_exceptions

    rows = open_exceptions(database(), Period.parse(period)).drop("period").to_dicts()
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['account_id']}\t{r['reason']}\t{r['detail']}")


@ledger_app.command("check")
@handle_errors
def ledger_check(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Exit 0 when every ledger invariant holds; otherwise list the broken ones, exit 1."""
    from dianfei.ledger.service import Violation, check
    from dianfei.payments.service import check as check_payments

    db = database()
    with db.engine.connect() as conn:
        found = check(conn)
        # payments are part of the receivable: allocations must add up to what was posted
        found += [Violation(*broken) for broken in check_payments(conn)]
    if json_out:
        print_json({"ok": not found, "violations": [
            {"invariant": v.invariant, "count": v.count, "example": v.example} for v in found]})
    elif found:
        for v in found:
            typer.echo(f"BROKEN: {v.invariant} ({v.count} records, e.g. {v.example})", err=True)
    else:
        typer.echo("ledger ok: every invariant holds")
    raise typer.Exit(1 if found else 0)


@ledger_app.command("aging")
@handle_errors
def ledger_aging(
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Receivables by days past due (0-30, 31-60, 61-90, >90), totals over all accounts."""
    import polars as pl

    from dianfei.core.money import fmt_yuan
    from dianfei.ledger.service import AGING_BUCKETS, aging

    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise ValidationError(f"--as-of must be YYYY-MM-DD, got {as_of!r}") from None
    frame = aging(database().engine, day)
    sums = frame.select([pl.col(c).sum() for c in ("balance", *AGING_BUCKETS)]).row(0)
    out = {"as_of": str(day), "accounts": frame.height,
           **{k: fmt_yuan(int(v or 0)) for k, v in zip(("balance", *AGING_BUCKETS), sums,
                                                         strict=True)}}
    print_json(out) if json_out else typer.echo(out)


@handle_errors
def export(
    kind: Annotated[str, typer.Argument(help="bills, payments, ledger or customers")],
    out: Annotated[Path, typer.Option(help="CSV file to write")],
    period: Annotated[str | None, typer.Option(help="YYYY-MM (bills, payments)")] = None,
) -> None:
    """Export bills, payments (one row per allocation), ledger entries or customers as CSV."""
    from dianfei.reporting import exports

    p = Period.parse(period) if period else None
    n = exports.export(database(), kind, out, p)
    typer.echo(f"wrote {n} rows to {out}")


@handle_errors
def demo(
    customers: Annotated[int, typer.Option(help="synthetic customers")] = 20_000,
    months: Annotated[int, typer.Option(help="months of billing")] = 24,
    seed: Annotated[int, typer.Option(help="random seed (deterministic)")] = 1,
    backend: Annotated[str, typer.Option(help="local")] = "local",
    serve: Annotated[bool, typer.Option("--serve/--no-serve",
                                        help="serve the console afterwards")] = True,
    collections: Annotated[bool, typer.Option(
        "--collections/--no-collections",
        help="run a day of collections every simulated day (late fees, dunning, stops)")] = True,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a synthetic county utility and run every month's cycle on it."""
    from dianfei.demo import run_demo, summary_table

    if backend != "local":
        raise ValidationError(f"backend {backend!r} is not available; use --backend local")
    if customers < 1 or months < 1:
        raise ValidationError("--customers and --months must be at least 1")
    summary = run_demo(database(), customers=customers, months=months, seed=seed,
                       show_progress=sys.stderr.isatty(), collections=collections)
    if json_out:
        print_json(summary)
    else:
        summary_table(summary)
    if serve:
        from dianfei.web.server import serve_console

        _demo_admin()
        serve_console()


def _demo_admin() -> None:
    """A demo database has no users: create ``admin`` with a random password, kept in
    ``DATA_DIR/demo-admin.password`` (mode 0600) and printed once, so the console can be tried.
    A real installation creates its first administrator with ``users add``."""
    import os
    import secrets
    from datetime import UTC, datetime

    from dianfei.security.service import add_user, count_users

    db = database()
    with db.session() as s:
        if count_users(s):
            return
        password = secrets.token_urlsafe(12)
        add_user(s, username="admin", role="admin", password=password, now=datetime.now(UTC))
    path = db.settings.data_dir / "demo-admin.password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    sys.stderr.write(f"demo sign-in: admin / {password} (kept in {path})\n")


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="server processes (one per core)")] = 1,
) -> None:
    """Serve the web console and REST API (OpenAPI at /openapi.json)."""
    from dianfei.web.server import serve_console

    serve_console(host, port, workers)
