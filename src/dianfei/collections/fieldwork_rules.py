"""Field-work policy as data: the ``[promises]`` and ``[tickets]`` sections of the collections
calendar (``calendar.toml``) and the working-day arithmetic of ticket SLAs (工单时限).

Working days are Monday to Friday except the calendar's public holidays (``[stop_window]
holidays``); extreme-weather days stop no ticket clock.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from dianfei.collections.rules import CALENDAR_FILE, policy
from dianfei.core.clock import business_date, start_of_day
from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal


@dataclass(frozen=True)
class FieldworkPolicy:
    #: a promise to pay is dated at most this many days after the visit
    promise_max_days: int
    #: and promises at least this share of what the account owes
    promise_min_share: Decimal
    #: a ticket is decided within this many working days
    sla_working_days: int
    #: who gets a ticket whose SLA passed
    escalate_to: str
    holidays: frozenset[date]

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, day: date, n: int) -> date:
        """The ``n``-th working day after ``day`` (``day`` itself not counted)."""
        d = day
        while n > 0:
            d += timedelta(days=1)
            if self.is_working_day(d):
                n -= 1
        return d

    def sla_due_at(self, opened_at: datetime, working_days: int | None = None) -> datetime:
        """The end (next midnight, Asia/Shanghai) of the N-th working day after the opening."""
        n = self.sla_working_days if working_days is None else working_days
        last = self.add_working_days(business_date(opened_at), n)
        return start_of_day(last + timedelta(days=1))


def _int(value: object, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValidationError(f"{where} must be a whole number ≥ {low}, got {value!r}")
    return value


def load_fieldwork_policy(path: Path | None = None) -> FieldworkPolicy:
    path = path or CALENDAR_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"collections calendar {path}: {exc}") from None
    name = path.name
    prom, tick = data.get("promises", {}), data.get("tickets", {})
    share = parse_decimal(str(prom.get("min_share", "0")), f"{name} promises.min_share", places=4,
                          allow_negative=False)
    if share > 1:
        raise ValidationError(f"{name} promises.min_share is a share 0..1, got {share}")
    escalate_to = str(tick.get("escalate_to", "supervisor")).strip()
    if not escalate_to:
        raise ValidationError(f"{name} tickets.escalate_to names a role or user")
    return FieldworkPolicy(
        promise_max_days=_int(prom.get("max_days_ahead", 14), f"{name} promises.max_days_ahead", 0),
        promise_min_share=share,
        sla_working_days=_int(tick.get("sla_working_days", 3), f"{name} tickets.sla_working_days", 1),
        escalate_to=escalate_to,
        holidays=policy(path).holidays)


_CACHE: dict[Path, FieldworkPolicy] = {}


def fieldwork_policy(path: Path | None = None) -> FieldworkPolicy:
    key = (path or CALENDAR_FILE).resolve()
    if key not in _CACHE:
        _CACHE[key] = load_fieldwork_policy(key)
    return _CACHE[key]
