"""The collections policy as data (``calendar.toml``): when a stop is lawful, how much notice,
who approves, how fast reconnection must be, how meter commands are retried, prepay thresholds.

Pure functions over the loaded policy; no database. ``stop_allowed_at`` is the one place that
says whether an instant may carry a stop (停电): inside the daily window, Monday to Friday, not a
public holiday, not an extreme-weather day.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal, to_fen

CALENDAR_FILE = Path(__file__).with_name("calendar.toml")


@dataclass(frozen=True)
class Policy:
    window_start: time
    window_end: time
    holidays: frozenset[date]
    extreme_weather: frozenset[date]
    #: days of notice before a stop, per class ("default" for the rest)
    notice_days: dict[str, int]
    pre_stop: timedelta
    min_days_overdue: int
    approval_required_for: frozenset[str]
    field_reconnect: timedelta
    max_attempts: int
    retry_after: tuple[timedelta, ...]
    prepay_warning_fen: int
    prepay_cutoff_wait: timedelta
    #: a daily frozen read older than this is not used (stale data never trips a customer)
    prepay_max_read_age: timedelta = timedelta(hours=48)
    #: the most a meter can register per hour, per unit of its multiplier (kW): a direct
    #: three-phase meter at 100 A draws ~66 kW; usage above this × multiplier × hours since the
    #: opening read is physically impossible (a forged or corrupt read) and never trips anyone
    prepay_max_kw_per_multiplier: int = 70
    source: str = ""

    def notice_days_for(self, customer_class: str) -> int:
        return self.notice_days.get(customer_class, self.notice_days["default"])

    def is_stop_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays and day not in self.extreme_weather

    def stop_allowed_at(self, instant: datetime) -> bool:
        """May a stop be carried out at this instant? (window, working day, no holiday/weather)"""
        local = instant.astimezone(BUSINESS_TZ)
        return (self.is_stop_day(local.date())
                and self.window_start <= local.time() < self.window_end)

    def retry_delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed try (the last listed delay repeats)."""
        if not self.retry_after:
            return timedelta(minutes=5)
        return self.retry_after[min(attempts, len(self.retry_after)) - 1]


def _hhmm(text: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(text))
    except ValueError:
        raise ValidationError(f"{where}: not a time HH:MM: {text!r}") from None


def _dates(values: Any, where: str) -> frozenset[date]:
    out = set()
    for v in values or []:
        try:
            out.add(v if isinstance(v, date) else date.fromisoformat(str(v)))
        except ValueError:
            raise ValidationError(f"{where}: not a date YYYY-MM-DD: {v!r}") from None
    return frozenset(out)


def load_policy(path: Path | None = None) -> Policy:
    """Load and check ``calendar.toml`` (or a utility's own file)."""
    path = path or CALENDAR_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"collections calendar {path}: {exc}") from None
    name = path.name
    win = data.get("stop_window", {})
    start = _hhmm(win.get("start", "08:00"), f"{name} stop_window.start")
    end = _hhmm(win.get("end", "18:00"), f"{name} stop_window.end")
    if not start < end:
        raise ValidationError(f"{name}: stop_window.start {start} must be before end {end}")
    notice = data.get("notice", {})
    days = {str(k): int(v) for k, v in (notice.get("days") or {}).items()}
    days.setdefault("residential", 7)
    days.setdefault("default", 3)
    if any(d < 0 for d in days.values()):
        raise ValidationError(f"{name}: notice.days must not be negative")
    cmd = data.get("commands", {})
    attempts = int(cmd.get("max_attempts", 3))
    if attempts < 1:
        raise ValidationError(f"{name}: commands.max_attempts must be at least 1")
    prepay = data.get("prepay", {})
    warning = to_fen(parse_decimal(str(prepay.get("warning_threshold", "50.00")),
                                   f"{name} prepay.warning_threshold", places=2))
    return Policy(
        window_start=start, window_end=end,
        holidays=_dates(win.get("holidays"), f"{name} stop_window.holidays"),
        extreme_weather=_dates(win.get("extreme_weather"), f"{name} stop_window.extreme_weather"),
        notice_days=days,
        pre_stop=timedelta(minutes=int(notice.get("pre_stop_minutes", 30))),
        min_days_overdue=int(notice.get("min_days_overdue", 30)),
        approval_required_for=frozenset(data.get("approval", {}).get("required_for", [])),
        field_reconnect=timedelta(hours=int(data.get("reconnection", {}).get("field_hours", 24))),
        max_attempts=attempts,
        retry_after=tuple(timedelta(minutes=int(m)) for m in cmd.get("retry_minutes", [5, 15])),
        prepay_warning_fen=warning,
        prepay_cutoff_wait=timedelta(hours=int(prepay.get("cutoff_wait_hours", 24))),
        prepay_max_read_age=timedelta(hours=int(prepay.get("max_read_age_hours", 48))),
        source=str(win.get("source", "")),
    )


def with_settings(base: Policy, raw: Mapping[str, Any]) -> Policy:
    """The policy with the deployment's ``[collections.prepay]`` settings (``warning_threshold``
    yuan, ``cutoff_wait_hours``, ``max_read_age_hours``) from the DIANFEI_CONFIG file applied."""
    prepay = ((raw or {}).get("collections") or {}).get("prepay") or {}
    if not prepay:
        return base
    where = "[collections.prepay]"
    changes: dict[str, Any] = {}
    if "warning_threshold" in prepay:
        changes["prepay_warning_fen"] = to_fen(parse_decimal(
            str(prepay["warning_threshold"]), f"{where} warning_threshold", places=2,
            allow_negative=False))
    if "max_kw_per_multiplier" in prepay:
        try:
            kw = int(prepay["max_kw_per_multiplier"])
        except (TypeError, ValueError):
            raise ValidationError(f"{where} max_kw_per_multiplier: not a whole number of kW: "
                                  f"{prepay['max_kw_per_multiplier']!r}") from None
        if kw < 1:
            raise ValidationError(f"{where} max_kw_per_multiplier must be at least 1, got {kw}")
        changes["prepay_max_kw_per_multiplier"] = kw
    for key, attr in (("cutoff_wait_hours", "prepay_cutoff_wait"),
                      ("max_read_age_hours", "prepay_max_read_age")):
        if key in prepay:
            try:
                hours = int(prepay[key])
            except (TypeError, ValueError):
                raise ValidationError(f"{where} {key}: not a whole number of hours: "
                                      f"{prepay[key]!r}") from None
            if hours < 0:
                raise ValidationError(f"{where} {key} must not be negative, got {hours}")
            changes[attr] = timedelta(hours=hours)
    return replace(base, **changes)


_CACHE: dict[Path, Policy] = {}


def policy(path: Path | None = None) -> Policy:
    key = (path or CALENDAR_FILE).resolve()
    if key not in _CACHE:
        _CACHE[key] = load_policy(key)
    return _CACHE[key]
