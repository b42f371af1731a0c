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
        timezone=str(cfg.get("timezone", "Asia/Shanghai")),
        billing=BillingSettings(due_days=due_days,
                                tariff_dir=Path(tariff_dir) if tariff_dir else None),
        raw=cfg,
    )
