"""CLI: ``dianfei config check`` — every section of the configuration read by the code that uses
it, so a wrong key or value is named before a job trips over it at night."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json

config_app = typer.Typer(help="The configuration (dianfei.toml and DIANFEI_*).",
                         no_args_is_help=True)

#: the top-level keys of dianfei.toml and what reads them
SECTIONS = {
    "database_url": "core.settings", "data_dir": "core.settings", "timezone": "core.settings",
    "billing": "billing (due days, tariff directory, bill links, PDF font)",
    "payments": "payments (allocation, channels, callback guard, layouts)",
    "reconciliation": "payments.reconcile_service", "metering": "metering (DL/T 645 gateway)",
    "vee": "metering.vee", "notify": "notify (rules, SMTP, SMS, letters)",
    "collections": "collections (prepayment)", "jobs": "jobs (the calendar)",
    "web": "web.server (requests worked on at once per server process)",
}


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def _checks(settings: Any) -> dict[str, Callable[[], object]]:
    from zoneinfo import ZoneInfo

    from dianfei.billing.documents import Links
    from dianfei.cli.jobs import KINDS
    from dianfei.collections.rules import policy, with_settings
    from dianfei.jobs.calendar import load_calendar
    from dianfei.metering.dlt645.client import load_config
    from dianfei.metering.vee.config import VeeConfig
    from dianfei.notify.rules import load_notify_settings
    from dianfei.notify.sms import load_sms_settings
    from dianfei.notify.smtp import load_smtp_settings
    from dianfei.payments.channels.config import load_channel_settings
    from dianfei.payments.refusal_log import load_guard_settings
    from dianfei.payments.service import allocation_order
    from dianfei.web.server import WebSettings

    raw = settings.raw

    def notify() -> object:
        ns = load_notify_settings(raw, settings.timezone)
        load_smtp_settings(ns.raw, sender_name=ns.utility_name)
        return load_sms_settings(ns.raw)

    def jobs() -> object:
        from pathlib import Path

        path = (raw.get("jobs", {}) or {}).get("schedule")
        return load_calendar(Path(path) if path else None, KINDS)

    return {
        "timezone": lambda: ZoneInfo(settings.timezone),
        "billing": lambda: Links.from_settings(raw),
        "payments": lambda: (allocation_order(settings), load_channel_settings(settings, os.environ),
                             load_guard_settings(raw)),
        "metering": lambda: load_config(settings),
        "vee": lambda: VeeConfig.from_raw(raw),
        "notify": notify,
        "collections": lambda: with_settings(policy(), raw),
        "jobs": jobs,
        "web": lambda: WebSettings.from_settings(raw),
    }


@config_app.command("check")
@handle_errors
def config_check(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Read every section of the configuration as the code that uses it does; exit 1 naming
    each wrong key or value (an unknown top-level key too: a typo must not pass silently)."""
    from dianfei.core.settings import load_settings

    settings = load_settings()  # refuses an unreadable file or a wrong core value by itself
    result: dict[str, str] = {}
    for key in settings.raw:
        if key not in SECTIONS:
            result[key] = (f"unknown top-level key (known: {', '.join(sorted(SECTIONS))})")
    for section, check in _checks(settings).items():
        try:
            check()
            result.setdefault(section, "ok")
        except Exception as exc:  # each section's own message, named; the others still checked
            result[section] = f"{type(exc).__name__}: {exc}"
    bad = {k: v for k, v in result.items() if v != "ok"}
    out = {"config_file": os.environ.get("DIANFEI_CONFIG"), "ok": not bad, "sections": result}
    if json_out:
        print_json(out)
    else:
        for k, v in result.items():
            typer.echo(f"{k:<14} {v}")
    if bad:
        raise typer.Exit(1)


@config_app.command("record")
@handle_errors
def config_record(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Put the configuration files on the audit chain if they changed since the last record
    (``dianfei serve`` and the job worker do this by themselves before they act)."""
    from dianfei.audit.service import record_current_configuration
    from dianfei.cli.context import database
    from dianfei.core.settings import load_settings

    change = record_current_configuration(database().engine, load_settings())
    out: dict[str, Any] = {"recorded": change is not None}
    if change is not None:
        out.update(added=change.added, changed=change.changed, removed=change.removed,
                   digest=change.digest)
    if json_out:
        print_json(out)
    elif change is None:
        typer.echo("configuration unchanged since the last record")
    else:
        typer.echo(f"recorded: {len(change.added)} added, {len(change.changed)} changed, "
                   f"{len(change.removed)} removed")
        for name in change.changed:
            typer.echo(f"  changed {name}")
        for name in change.removed:
            typer.echo(f"  removed {name}")


@config_app.command("history")
@handle_errors
def config_history_cmd(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    diff: Annotated[bool, typer.Option("--diff", help="print each change's diff")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The configuration changes on the audit chain, newest first: when, who, which files."""
    from dianfei.audit.service import config_history
    from dianfei.cli.context import database

    rows = config_history(database().engine, limit)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        what = "first record" if r["first"] else (
            f"{len(r['changed'])} changed, {len(r['added'])} added, {len(r['removed'])} removed")
        typer.echo(f"#{r['seq']} {r['recorded_at']} {r['actor']}: {what}")
        if diff and r["diff"]:
            typer.echo(r["diff"])
