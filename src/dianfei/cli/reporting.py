"""CLI: KPIs (`dianfei kpi`) and the monthly collection report (`dianfei report monthly`); the
fund-flow audit (`dianfei audit funds`) is with the other audits in cli/audit.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database

report_app = typer.Typer(help="Reports a branch sends upward (报表).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("kpi")(kpi)
    app.add_typer(report_app, name="report")


def _today() -> object:
    from dianfei.core.clock import business_date

    return business_date(clock_from_env().now())


@handle_errors
def kpi(
    period: Annotated[str, typer.Option(help="the billing period YYYY-MM")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today)")] = None,
    by: Annotated[str | None, typer.Option(
        help="region, customer_class, collector, station, channel or segment (the risk "
        "segment of each customer's account at the period's end)")] = None,
    trend: Annotated[int, typer.Option(help="periods of monthly trend (0: none)")] = 0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The period's KPIs as of a date: collection rate, overdue arrears rate, payment cycle,
    aging, complaint rate, DSO, satisfaction … (definitions: docs/kpi.md)."""
    from datetime import date

    from dianfei.core.clock import Period
    from dianfei.reporting.kpi import check_dimension, parse_as_of, period_kpis

    check_dimension(by)
    p = Period.parse(period)
    today = _today()
    assert isinstance(today, date)
    day = parse_as_of(as_of, p, today)
    result = period_kpis(database(), p, day, by, trend)
    if json_out:
        print_json(result)
        return
    from dianfei.reporting.report import kpi_table

    kpi_table(result)


@report_app.command("dashboard")
@handle_errors
def report_dashboard(
    period: Annotated[str | None, typer.Option(
        help="the period YYYY-MM (default: the latest billed)")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today)")] = None,
) -> None:
    """Compute and store the console dashboard's figures (看板数据) now: every customer and each
    region, customer class and collector — what the daily ``dashboard_refresh`` job does."""
    from datetime import date

    from dianfei.core.clock import Period
    from dianfei.reporting.dashboard import latest_period, refresh
    from dianfei.reporting.kpi import parse_as_of

    db = database()
    p = Period.parse(period) if period else latest_period(db)
    day = None
    if as_of is not None and p is not None:
        today = _today()
        assert isinstance(today, date)
        day = parse_as_of(as_of, p, today)
    print_json(refresh(db, clock=clock_from_env(), period=p, as_of=day))


@report_app.command("monthly")
@handle_errors
def report_monthly(
    period: Annotated[str, typer.Option(help="the period YYYY-MM")],
    out: Annotated[Path, typer.Option(help="the file to write (a directory for csv)")],
    format_: Annotated[str, typer.Option("--format", help="pdf, xlsx or csv")] = "pdf",
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today)")] = None,
) -> None:
    """The monthly collection report (电费回收月报): KPIs and their trend, top arrears, the
    collector league table, channel mix, payment plans, reconciliation status."""
    from datetime import date

    from dianfei.core.clock import Period
    from dianfei.core.errors import ValidationError
    from dianfei.reporting.kpi import parse_as_of
    from dianfei.reporting.report import FORMATS, monthly, write

    if format_ not in FORMATS:
        raise ValidationError(f"--format must be one of {', '.join(FORMATS)}, got {format_!r}")
    p = Period.parse(period)
    today = _today()
    assert isinstance(today, date)
    db = database()
    font = (db.settings.raw.get("notify", {}).get("letters", {}) or {}).get("font")
    files = write(monthly(db, p, parse_as_of(as_of, p, today)), format_, out, font)
    for f in files:
        typer.echo(f"wrote {f}")
