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
