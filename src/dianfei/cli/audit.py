"""CLI: ``audit verify`` (is the chain intact?), ``audit head`` (the hash to keep elsewhere) and
``audit funds`` (the fund-flow audit of a period)."""

from __future__ import annotations

from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import database

audit_app = typer.Typer(help="Audits: the audit chain (verify, head) and fund flows (funds, 资金流向稽核).",
                        no_args_is_help=True)


@audit_app.command("verify")
@handle_errors
def audit_verify(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Exit 0 when the chain and the ledger behind it are intact; otherwise exit 1 naming the
    first broken (edited, inserted or deleted) record."""
    from dianfei.audit.service import verify

    report = verify(database().engine)
    if json_out:
        print_json({"intact": report.intact, "records": report.records,
                    "ledger_batches": report.ledger_batches, "ledger_rows": report.ledger_rows,
                    "head": {"seq": report.head_seq, "hash": report.head_hash},
                    "first_broken": str(report.first) if report.first else None,
                    "first_broken_seq": report.first.seq if report.first else None,
                    "findings": [str(f) for f in report.findings]})
    elif report.intact:
        typer.echo(f"audit chain intact: {report.records} records, {report.ledger_batches} "
                   f"ledger batches ({report.ledger_rows} ledger rows); head {report.head_seq} "
                   f"{report.head_hash}")
    else:
        typer.echo(f"audit chain BROKEN: first broken {report.first}", err=True)
        for f in report.findings[1:20]:
            typer.echo(f"  also: {f}", err=True)
        if len(report.findings) > 20:
            typer.echo(f"  … {len(report.findings) - 20} more", err=True)
    if not report.intact:
        raise typer.Exit(1)


@audit_app.command("head")
@handle_errors
def audit_head(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The last record's number and hash (copy it elsewhere to anchor the chain)."""
    from sqlalchemy import text

    with database().engine.connect() as conn:
        seq, digest = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
    if json_out:
        print_json({"seq": int(seq), "hash": str(digest)})
    else:
        typer.echo(f"{seq} {digest}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("funds")
@handle_errors
def audit_funds(
    period: Annotated[str, typer.Option(help="the period YYYY-MM (its calendar month)")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Money billed, collected and refunded per channel, settled by each channel, deposited and
    written off in the month, tied to the reconciliation worklist (exit 1 when it does not tie)."""
    from dianfei.core.clock import Period
    from dianfei.reporting.funds import audit

    result = audit(database(), Period.parse(period))
    if json_out:
        print_json(result)
    else:
        from dianfei.reporting.report import funds_table

        funds_table(result)
    if not result["ties"]:
        raise typer.Exit(1)
