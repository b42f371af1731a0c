"""CLI: ``dianfei import customers|meters|reads|intervals|stations|bills|payments FILE`` (数据导入).

Meter data goes to metering; bill and payment history to billing and payments (each owns its
import; all share the file machinery, quarantine and counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("quarantine")(quarantine_command)


@handle_errors
def import_command(
    kind: Annotated[str, typer.Argument(
        help="customers, meters, reads, intervals, stations (the supply stations' metered "
        "supply per month), bills or payments")],
    file: Annotated[Path, typer.Argument(help="a .csv or .parquet file")],
    encoding: Annotated[str, typer.Option(help="utf-8 (with or without BOM) or gbk")] = "utf-8",
    interval_minutes: Annotated[int, typer.Option(help="interval length of intervals files")] = 15,
    chunk_mb: Annotated[int, typer.Option(help="CSV text read per chunk, MB")] = 32,
    timezone: Annotated[str, typer.Option(
        help="zone of timestamps without a UTC offset (default: the business zone)")]
        = "Asia/Shanghai",
    max_rejected: Annotated[str, typer.Option(
        help="rejected rows tolerated before exit code 3: a count (10) or a share (0.5%)")] = "0",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import one canonical file (bills and payments: history, posted as of their dates; import
    customers, then bills, then payments). Every row is accepted, rejected with a reason
    (quarantine table and FILE.rejected.csv) or counted as a duplicate of stored data;
    re-importing changes nothing.

    Exit codes: 0 done; 2 the file cannot be read at all (nothing stored); 3 more rows rejected
    than --max-rejected allows (the accepted rows are stored; fix the rows and import them).
    Personal data (name, address, phone) is masked in FILE.rejected.csv and the quarantine:
    `dianfei quarantine BATCH --reveal` shows the rows as they were."""
    from dianfei.metering.imports import allowed_rejections, import_file, rejected_path

    kinds = ("customers", "meters", "reads", "intervals", "stations", "bills", "payments")
    if kind not in kinds:
        from dianfei.core.errors import ValidationError

        raise ValidationError(f"unknown import kind {kind!r} (expected {', '.join(kinds)})")
    allowed_rejections(max_rejected, 0)  # a malformed tolerance fails before anything is stored
    db = database()
    chunk_bytes = max(chunk_mb, 1) << 20
    if kind == "bills":
        from dianfei.billing.service import import_bills

        res = import_bills(db, file, clock=clock_from_env(), encoding=encoding,
                           chunk_bytes=chunk_bytes)
    elif kind == "stations":
        from dianfei.metering.service import import_stations

        res = import_stations(db, file, clock=clock_from_env(), encoding=encoding,
                              chunk_bytes=chunk_bytes)
    elif kind == "payments":
        from dianfei.payments.service import import_payments

        res = import_payments(db, file, clock=clock_from_env(), encoding=encoding,
                              chunk_bytes=chunk_bytes)
    else:
        res = import_file(db, kind, file, clock=clock_from_env(), encoding=encoding,
                          interval_minutes=interval_minutes, chunk_bytes=chunk_bytes,
                          timezone=timezone)
    if json_out:
        print_json(res.to_json())
    else:
        typer.echo(f"{kind} {file}: {res.accepted} accepted, {res.rejected} rejected, "
                   f"{res.duplicates} duplicates (batch {res.batch_id})")
        if res.rejected:
            typer.echo(f"rejected rows with their reasons: {rejected_path(file)}")
    for line, what in res.read_backwards[:20]:
        typer.echo(f"warning: line {line}: register read below the previous one (not a "
                   f"rollover): {what}", err=True)
    if len(res.read_backwards) > 20:
        typer.echo(f"warning: {len(res.read_backwards) - 20} more reads below the previous one",
                   err=True)
    if res.held:
        typer.echo(f"warning: {res.held} register reads held as implausible (stored, not used "
                   "for prepaid balances until released): dianfei vee findings --rule "
                   "implausible_read; dianfei vee review", err=True)
    rows = res.accepted + res.rejected + res.duplicates
    allowed = allowed_rejections(max_rejected, rows)
    if res.rejected > allowed:
        typer.echo(f"error: {res.rejected} of {rows} rows rejected, more than the {allowed} "
                   f"--max-rejected {max_rejected} allows; see {rejected_path(file)}", err=True)
        raise typer.Exit(REJECTED_EXIT)


#: the exit code of an import that rejected more rows than --max-rejected allows
REJECTED_EXIT = 3


@handle_errors
def quarantine_command(
    batch_id: Annotated[str, typer.Argument(help="the batch id `dianfei import` printed")],
    reveal: Annotated[bool, typer.Option(
        "--reveal", help="open the sealed rows (personal data in clear; recorded on the audit "
        "chain)")] = False,
    limit: Annotated[int | None, typer.Option(help="at most this many rows")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The rejected rows of one import batch: line, reason, detail and the row (隔离区). Rows
    with personal data are shown masked; --reveal shows them as they were, for fixing them."""
    from dianfei.core.errors import ValidationError
    from dianfei.metering.quarantine import quarantined

    if limit is not None and limit < 1:
        raise ValidationError("--limit must be at least 1")
    db = database()
    cipher = None
    if reveal:
        from dianfei.db.pii import cipher_for

        cipher = cipher_for(db)
    out = quarantined(db, batch_id, cipher=cipher, limit=limit)
    if json_out:
        print_json(out)
        return
    typer.echo(f"batch {out['batch_id']} ({out['kind']}, {out['file_name'] or out['origin']}): "
               f"{out['rejected']} rejected of {out['data_rows']} rows")
    for r in out["rows"]:
        typer.echo(f"line {r['line']}: {r['reason']}: {r['detail']}")
        typer.echo(f"    {r['raw']}")
