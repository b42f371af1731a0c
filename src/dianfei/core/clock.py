"""Time is passed in: a clock object, never ``datetime.now()`` in domain code.

Instants are stored in UTC; business dates (due dates, periods, aging) are dates in the
utility's zone, Asia/Shanghai by default. Simulations move a ``FixedClock`` through two years of
billing in seconds and tests stay deterministic.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from dianfei.core.errors import ValidationError

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that only moves when told to (simulations and tests)."""

    instant: datetime

    def __post_init__(self) -> None:
        if self.instant.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware instant")

    def now(self) -> datetime:
        return self.instant.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self.instant = self.instant + delta

    def set(self, instant: datetime) -> None:
        self.instant = instant


def business_date(instant: datetime, tz: ZoneInfo = BUSINESS_TZ) -> date:
    """The business date of an instant in the utility's zone."""
    if instant.tzinfo is None:
        raise ValueError("business_date needs a timezone-aware instant")
    return instant.astimezone(tz).date()


def start_of_day(day: date, tz: ZoneInfo = BUSINESS_TZ) -> datetime:
    """00:00 of a business date, as a UTC instant."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, order=True)
class Period:
    """A billing period: one calendar month, written YYYY-MM."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        try:
            y, m = text.strip().split("-")
            if len(y) != 4 or len(m) != 2:
                raise ValueError
            p = cls(int(y), int(m))
        except ValueError:
            raise ValidationError(f"period must be YYYY-MM, got {text!r}") from None
        if not 1 <= p.month <= 12:
            raise ValidationError(f"period month must be 01..12, got {text!r}")
        return p

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def end_date(self) -> date:
        """The first day of the next period (exclusive end)."""
        return self.next().first_day

    def next(self) -> Period:
        return Period(self.year + (self.month == 12), self.month % 12 + 1)

    def prev(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def index(self) -> int:
        """Months since year 0: handy for sorting and differences."""
        return self.year * 12 + self.month - 1
