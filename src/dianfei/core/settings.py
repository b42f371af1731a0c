"""Settings from the environment and an optional TOML config file.

``DIANFEI_DATABASE_URL`` (default: SQLite file ``var/dianfei.db``) and ``DIANFEI_DATA_DIR``
(default ``var/``) are the two switches a deployment needs; two processes given different values
never see each other's data. ``DIANFEI_CONFIG`` names a TOML file with further settings; an
environment variable always wins over the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dianfei.core.errors import ValidationError


@dataclass(frozen=True)
class BillingSettings:
    #: days from the issue date to the due date (交费期限)
    due_days: int = 15
    #: the tariff presets directory (versioned TOML files); None means the packaged presets
    tariff_dir: Path | None = None


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    timezone: str = "Asia/Shanghai"
    billing: BillingSettings = field(default_factory=BillingSettings)
    raw: dict[str, Any] = field(default_factory=dict)


def _load_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ValidationError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"config file {p}: {exc}") from None


def business_timezone(name: object) -> str:
    """``timezone``: the zone of naive timestamps in meter files and gateway messages, and of
    quiet hours. Business days everywhere else (bills, due dates, late fees, KPIs) are Beijing
    time (``core.clock.BUSINESS_TZ``), so only a zone that is always UTC+08:00 is accepted —
    another would read meters in one day and bill them in another."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name:
        raise ValidationError(f"timezone must be a zone name like \"Asia/Shanghai\", got {name!r}")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"timezone {name!r}: no such time zone") from None
    eight = timedelta(hours=8)
    if any(datetime(year, month, 15, tzinfo=zone).utcoffset() != eight
           for year in (1992, 2026, 2036) for month in (1, 7)):
        raise ValidationError(
            f"timezone {name!r}: dianfei's business day is Beijing time (UTC+08:00, "
            "Asia/Shanghai) — bills, due dates, late fees and KPIs are counted in it; meter "
            "timestamps from another zone carry their offset or are imported with `--timezone`")
    return name


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    cfg = _load_file(env.get("DIANFEI_CONFIG"))
    data_dir = Path(env.get("DIANFEI_DATA_DIR") or cfg.get("data_dir") or "var")
    url = env.get("DIANFEI_DATABASE_URL") or cfg.get("database_url")
    if not url:
        url = f"sqlite:///{data_dir / 'dianfei.db'}"
    bcfg = cfg.get("billing", {})
    due_days = int(env.get("DIANFEI_DUE_DAYS") or bcfg.get("due_days", 15))
    if not 0 <= due_days <= 365:
        raise ValidationError(f"billing.due_days must be 0..365, got {due_days}")
    tariff_dir = env.get("DIANFEI_TARIFF_DIR") or bcfg.get("tariff_dir")
    return Settings(
        database_url=url,
        data_dir=data_dir,
        timezone=business_timezone(cfg.get("timezone", "Asia/Shanghai")),
        billing=BillingSettings(due_days=due_days,
                                tariff_dir=Path(tariff_dir) if tariff_dir else None),
        raw=cfg,
    )
