"""CLI: bill run / show / cancel / exceptions, ledger check / aging, exports, demo."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.clock import Period, business_date
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
    backend: Annotated[str, typer.Option(
        help="local (this process, the default) or spark (per partition of accounts on the "
             "[spark] master: docs/scaling.md)")] = "local",
    chunk_size: Annotated[int, typer.Option(help="accounts per transaction")] = 100_000,
    estimates: Annotated[bool, typer.Option(
        "--estimates/--no-estimates",
        help="bill meters without a valid read on an estimated read from their intervals "
             "(估计读数, [vee] bill_estimate_max_share)")] = True,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bill every open account for the period: idempotent, resumable after a crash."""
    from dianfei.billing.service import run_bill_run
    from dianfei.core.money import fmt_qty, fmt_yuan

    if backend not in ("local", "spark"):
        raise ValidationError(f"--backend must be local or spark, got {backend!r}")
    if chunk_size < 1:
        raise ValidationError("--chunk-size must be at least 1")
    p = Period.parse(period)
    db = database()
    spark = None
    if backend == "spark":  # refused here, before the run starts, when Spark cannot run
        from dianfei.scale.billing import spark_backend

        spark = spark_backend(db.settings)
    with _progress_bar(f"bill run {p}") as bar:
        task = bar.add_task("bill", total=None)
        res = run_bill_run(db, p, clock_from_env(), chunk_size=chunk_size, estimate=estimates,
                           backend=spark,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))
    out = {"run_id": res.run_id, "period": res.period, "issued_on": str(res.issued_on),
           "due_on": str(res.due_on), "resumed": res.resumed, "candidates": res.candidates,
           "billed": res.billed, "exceptions": res.exceptions,
           "estimated_meters": res.estimated_meters, "kwh": fmt_qty(res.kwh),
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
    fmt: Annotated[str, typer.Option("--format", help="json, html or pdf")] = "json",
    out: Annotated[Path | None, typer.Option(help="write to this file")] = None,
    lang: Annotated[str, typer.Option(help="zh-CN (default) or en")] = "zh-CN",
) -> None:
    """One bill: reads, lines, tiers, time of use, funds, allowances, arrears, history, peers,
    ways to pay (PDF: A4 with the CJK font embedded)."""
    import json

    from dianfei.billing.documents import (
        RATING_HOOK,
        bill_document,
        document_context,
        load_forecaster,
        load_instalments,
    )
    from dianfei.billing.view import normalise_lang

    if fmt not in ("json", "html", "pdf"):
        raise ValidationError(f"--format must be json, html or pdf, got {fmt!r}")
    lang = normalise_lang(lang)
    db = database()
    p = Period.parse(period)
    doc = bill_document(db.engine, account, p, forecast=load_forecaster(),
                        context=document_context(db, p), as_of=business_date(clock_from_env().now()),
                        instalments=load_instalments(),
                        rating=load_forecaster(RATING_HOOK))
    if fmt == "pdf":
        from dianfei.billing.pdf import render_pdf
        from dianfei.billing.view import bill_view

        data = render_pdf(bill_view(doc, lang))
        if out:
            out.write_bytes(data)
        elif sys.stdout.isatty():
            raise ValidationError("a PDF goes to a file: give --out FILE.pdf (or redirect stdout)")
        else:
            sys.stdout.buffer.write(data)
        return
    if fmt == "json":
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    else:
        from dianfei.billing.render import render_html

        text = render_html(doc, lang)
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


@bill_app.command("render")
@handle_errors
def bill_render(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    fmt: Annotated[str, typer.Option("--format", help="pdf (default) or html")] = "pdf",
    out_dir: Annotated[Path | None, typer.Option(help="where the files go (default DATA_DIR/bills)")] = None,
    lang: Annotated[str, typer.Option(help="zh-CN (default) or en")] = "zh-CN",
    workers: Annotated[int, typer.Option(
        help="processes drawing bills (default 0: one per core this process may use)")] = 0,
    chunk_size: Annotated[int, typer.Option(help="bills per chunk of work")] = 1000,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Render every bill of the period to files; a bill whose content is unchanged since its
    last rendering is skipped."""
    from dianfei.billing.documents import (
        FORECAST_HOOK,
        INSTALMENT_HOOK,
        load_forecaster,
        load_instalments,
    )
    from dianfei.billing.rendering import render_period

    p = Period.parse(period)
    db = database()
    with _progress_bar(f"bills {p}") as bar:
        task = bar.add_task("render", total=None)
        res = render_period(db, p, fmt=fmt, lang=lang, out_dir=out_dir, workers=workers,
                            chunk_size=chunk_size, as_of=business_date(clock_from_env().now()),
                            forecaster=FORECAST_HOOK if load_forecaster() else None,
                            instalments=INSTALMENT_HOOK if load_instalments() else None,
                            progress=lambda done, total: bar.update(task, completed=done,
                                                                    total=total))
    if json_out:
        print_json(res.as_json())
    else:
        typer.echo(f"{res.rendered} rendered, {res.skipped} unchanged, {len(res.failed)} failed "
                   f"of {res.bills} bills in {res.seconds:.1f} s → {res.out_dir}")
        for bill_id, error in res.failed:
            typer.echo(f"FAILED {bill_id}: {error}", err=True)
    if res.failed:
        raise typer.Exit(1)


@bill_app.command("deliver")
@handle_errors
def bill_deliver(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    channel: Annotated[list[str] | None, typer.Option(
        help="email (PDF attached), sms (link), letter; repeat for several (default email, sms)")] = None,
    lang: Annotated[str, typer.Option(help="language of the attached PDF (zh-CN or en)")] = "zh-CN",
    only_undelivered: Annotated[bool, typer.Option(
        help="only bills that reached nobody so far (e.g. --channel letter as the fallback)")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Queue the period's bills for delivery through notify (`dianfei notify dispatch` sends);
    delivering again queues nothing new."""
    from dianfei.billing.delivery import deliver_period

    res = deliver_period(database(), Period.parse(period), clock=clock_from_env(),
                         channels=tuple(channel or ("email", "sms")), lang=lang,
                         only_undelivered=only_undelivered)
    if json_out:
        print_json(res.as_json())
    else:
        for c in res.channels:
            typer.echo(f"{c}: {res.queued[c]} queued, {res.already_queued[c]} already queued")
        if res.not_rendered:
            typer.echo(f"{len(res.not_rendered)} bills have no rendered PDF and were not e-mailed: "
                       f"run `dianfei bill render --period {res.period}`", err=True)


@bill_app.command("delivery")
@handle_errors
def bill_delivery(
    period: Annotated[str, typer.Option(help="YYYY-MM")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The delivery audit: bills issued, rendered, sent, delivered and failed per channel, and
    every bill that never reached its customer."""
    from dianfei.billing.delivery import delivery_audit

    audit = delivery_audit(database(), Period.parse(period))
    if json_out:
        print_json(audit)
        return
    typer.echo(f"{audit['period']}: {audit['issued']} issued, {audit['rendered']} rendered, "
               f"{audit['sent']} sent, {audit['delivered']} delivered, {audit['failed']} failed, "
               f"{audit['pending']} pending, {audit['never_delivered_count']} never delivered")
    for c, counts in audit["channels"].items():
        typer.echo(f"  {c}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for b in audit["never_delivered"]:
        why = "; ".join(f"{d['channel']} {d['status']}" + (f" ({d['last_error']})" if d["last_error"]
                                                         else "") for d in b["channels"])
        typer.echo(f"  NEVER DELIVERED {b['bill_id']}: {why or b['reason']}")


@bill_app.command("cancel")
@handle_errors
def bill_cancel(
    bill_id: str,
    reason: Annotated[str, typer.Option(help="why the bill is wrong (recorded)")],
    rebill: Annotated[bool, typer.Option(help="bill the account again from current reads")] = False,
    as_user: Annotated[str | None, typer.Option(
        "--as", help="the user asking (default: DIANFEI_USER)")] = None,
    approved_by: Annotated[str | None, typer.Option(
        "--approved-by", help="a second user who approves it at once (never the requester)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Ask to cancel a bill (its debit reversed by a new ledger entry), optionally rebilling:
    a bill correction a second person approves (dianfei approvals approve ID); with
    --approved-by that person approves it at once."""
    from dianfei.cli.approvals import ask

    req = ask("bill_correction", {"bill_id": bill_id, "rebill": rebill}, reason, as_user,
              approved_by)
    out: dict[str, object] = {"request_id": req["request_id"], "state": req["state"]}
    if req["state"] == "executed":
        out["cancelled"] = bill_id
        if rebill:
            out["rebilled"] = req["result"].get("rebilled", 0)
            out["exceptions"] = req["result"].get("exceptions", 0)
    if json_out:
        print_json(out)
    elif req["state"] == "executed":
        typer.echo(f"cancelled {bill_id} (request {req['request_id']})")
    else:
        typer.echo(f"request {req['request_id']}: cancelling {bill_id} awaits a second person "
                   f"(dianfei approvals approve {req['request_id']})")


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
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="YYYY-MM-DD: bills and payments as they stood that day")] = None,
    reveal: Annotated[bool, typer.Option(
        "--reveal", help="customers: name, address and phone in clear instead of masked "
        "(recorded on the audit chain as pii.revealed)")] = False,
) -> None:
    """Export bills, payments (one row per allocation), ledger entries or customers as CSV.
    The customers' name, address and phone are masked unless --reveal."""
    from dianfei.reporting import exports

    p = Period.parse(period) if period else None
    day = None
    if as_of is not None:
        try:
            day = date.fromisoformat(as_of)
        except ValueError:
            raise ValidationError(f"--as-of must be YYYY-MM-DD, got {as_of!r}") from None
    n = exports.export(database(), kind, out, p, day, reveal=reveal)
    typer.echo(f"wrote {n} rows to {out}")


@handle_errors
def demo(
    customers: Annotated[int, typer.Option(help="synthetic customers")] = 20_000,
    months: Annotated[int, typer.Option(help="months of billing")] = 24,
    seed: Annotated[int, typer.Option(help="random seed (deterministic)")] = 1,
    backend: Annotated[str, typer.Option(
        help="local or spark: the bill runs' backend (the same bills either way)")] = "local",
    serve: Annotated[bool, typer.Option("--serve/--no-serve",
                                        help="serve the console afterwards")] = True,
    collections: Annotated[bool, typer.Option(
        "--collections/--no-collections",
        help="run a day of collections every simulated day (late fees, dunning, stops)")] = True,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build a synthetic county utility and run every month's cycle on it."""
    from dianfei.demo import run_demo, summary_table

    if backend not in ("local", "spark"):
        raise ValidationError(f"--backend must be local or spark, got {backend!r}")
    if customers < 1 or months < 1:
        raise ValidationError("--customers and --months must be at least 1")
    from dianfei.audit.service import record_current_configuration

    db = database()
    # the rules the demo bills and chases by go on its audit chain first, as a server's would
    record_current_configuration(db.engine, db.settings)
    summary = run_demo(db, customers=customers, months=months, seed=seed,
                       show_progress=sys.stderr.isatty(), collections=collections,
                       backend=backend)
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
    jobs: Annotated[bool | None, typer.Option(
        "--jobs/--no-jobs", help="run the calendar's jobs inside the server (default: on with "
        "the embedded SQLite database, off with PostgreSQL, where `dianfei worker` runs them)")]
    = None,
) -> None:
    """Serve the web console and REST API (OpenAPI at /openapi.json)."""
    from dianfei.core.logs import configure_logging
    from dianfei.web.server import serve_console

    configure_logging()  # DIANFEI_LOG_FORMAT=json for a log collector

    if jobs is None:
        from dianfei.core.settings import load_settings

        jobs = load_settings().database_url.startswith("sqlite")
    if jobs:
        from dianfei.cli.jobs import start_worker_thread

        start_worker_thread()
    serve_console(host, port, workers)
