"""CLI: ``dianfei worklist --date D [--collector C] [--json]`` and its subcommands
``reassign``, ``balance``, ``supervisor``, ``timeline``, ``roster``.

Thin shells over ``dianfei.collections.worklist`` and ``collections.timeline`` (the REST API
calls the same functions).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, operator, print_json
from dianfei.core.errors import ValidationError

worklist_app = typer.Typer(help="Daily collector worklists (催费工作清单).",
                           invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(worklist_app, name="worklist")


def _day(text: str | None, flag: str) -> date:
    if text is None:
        raise ValidationError(f"{flag} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


@worklist_app.callback()
@handle_errors
def worklist_cmd(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option("--date", help="the business day YYYY-MM-DD")] = None,
    collector: Annotated[str | None, typer.Option("--collector", help="one collector's list")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The day's worklists, ranked by expected recovery (built first when the day has none)."""
    if ctx.invoked_subcommand is not None:
        return
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.worklist import worklists

    rows = worklists(database(), _day(day, "--date"), collector=collector, clock=clock_from_env())
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no accounts on any worklist")
    for r in rows:
        typer.echo(f"{r['collector']:<8} {r['rank']:>4}  {r['account']:<14} "
                   f"{r['segment'] or '':<17} {r['reason']}")


@worklist_app.command("reassign")
@handle_errors
def reassign_cmd(
    day: Annotated[str, typer.Option("--date", help="the business day YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="the collector who takes the accounts")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit chain)")],
    account: Annotated[str | None, typer.Option("--account", help="one account id")] = None,
    from_collector: Annotated[str | None, typer.Option(
        "--from", help="all of this collector's list")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move one account, or a collector's whole list, to another active collector."""
    from dianfei.cli.context import database
    from dianfei.collections.worklist import reassign

    out = reassign(database(), _day(day, "--date"), to=to, by=operator(), reason=reason,
                   account_id=account, from_collector=from_collector)
    _show(out, json_out, f"moved {out['moved']} account(s) from {out['from']} to {out['to']}")


@worklist_app.command("balance")
@handle_errors
def balance_cmd(
    day: Annotated[str, typer.Option("--date", help="the business day YYYY-MM-DD")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Move the lowest-ranked rows of collectors over capacity to colleagues of their station."""
    from dianfei.cli.context import database
    from dianfei.collections.worklist import balance_worklists

    out = balance_worklists(database(), _day(day, "--date"), by=operator())
    _show(out, json_out, f"moved {out['moved']} account(s); still over capacity: "
                         f"{', '.join(out['still_over_capacity']) or 'nobody'}")


@worklist_app.command("supervisor")
@handle_errors
def supervisor_cmd(
    day: Annotated[str, typer.Option("--date", help="first business day YYYY-MM-DD")],
    until: Annotated[str | None, typer.Option("--to", help="last day (default: --date)")] = None,
    collector: Annotated[str | None, typer.Option("--collector")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Per collector, station and region: list size, worked, paid after assignment, recovered."""
    from dianfei.cli.context import database
    from dianfei.collections.worklist import supervisor_view

    first = _day(day, "--date")
    out = supervisor_view(database(), first, _day(until, "--to") if until else first,
                          collector=collector)
    if json_out:
        print_json(out)
        return
    for r in out["collectors"]:
        typer.echo(f"{r['collector']:<8} list {r['list_size']:>5}  worked {r['worked']:>5}  "
                   f"paid {r['paid']:>5}  recovered {r['recovered']:>12}")


@worklist_app.command("timeline")
@handle_errors
def timeline_cmd(
    account: Annotated[str, typer.Argument(help="the account id")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Everything about one account, oldest first."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.collections.timeline import account_timeline

    items = account_timeline(database(), account, clock=clock_from_env())
    if json_out:
        print_json(items)
        return
    for i in items:
        typer.echo(f"{i['at']}  {i['kind']:<24} {i['summary']}")


@worklist_app.command("roster")
@handle_errors
def roster_cmd(
    collector: Annotated[str | None, typer.Argument(help="the collector to change")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive")] = None,
    languages: Annotated[str | None, typer.Option("--languages", help="e.g. zh,bo")] = None,
    capacity: Annotated[int | None, typer.Option("--capacity", help="accounts a day")] = None,
    username: Annotated[str | None, typer.Option("--user", help="who signs in as them")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the roster, or change one collector's roster facts (audited)."""
    from dianfei.cli.context import database
    from dianfei.collections.worklist import roster_frame, set_roster

    db = database()
    if collector is not None:
        set_roster(db, collector, by=operator(), active=active, capacity=capacity,
                   languages=languages.split(",") if languages is not None else None,
                   username=username)
    rows: list[dict[str, Any]] = roster_frame(db).to_dicts()
    if collector is not None:
        rows = [r for r in rows if r["collector_id"] == collector]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['collector_id']:<8} {r['station_id']:<6} "
                   f"{'active' if r['active'] else 'inactive':<8} cap {r['capacity']:>4}  "
                   f"{r['languages'] or '-'}  {r['username'] or ''}")


def _show(out: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        print_json(out)
    else:
        typer.echo(line)
