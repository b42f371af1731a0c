"""The calendar as data: what it means, and every wrong entry refused naming file, job and field."""

from __future__ import annotations

from datetime import datetime, time
from pathlib import Path

import pytest

from dianfei.core.clock import BUSINESS_TZ
from dianfei.jobs.calendar import DEFAULT_SCHEDULE, CalendarError, Entry, load_calendar

KINDS = ("collections_day", "bill_run", "notify_dispatch", "vee_run", "risk_score", "reconcile",
         "monthly_report", "approvals_housekeeping")


def local(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=BUSINESS_TZ)


def test_the_builtin_calendar_loads() -> None:
    entries = load_calendar(None, KINDS)
    assert {e.kind for e in entries} == set(KINDS)
    assert DEFAULT_SCHEDULE.is_file()


def test_occurrences_daily_working_days_and_monthly() -> None:
    daily = Entry("c", "collections_day", "day", time(9))
    got = list(daily.occurrences(local(2026, 3, 1, 9), local(2026, 3, 4, 9), lambda d: True))
    # (since, until]: the 1st's 09:00 is not again, the 4th's is
    assert got == [local(2026, 3, 2, 9), local(2026, 3, 3, 9), local(2026, 3, 4, 9)]
    working = Entry("w", "collections_day", "working_day", time(9))
    weekdays = list(working.occurrences(local(2026, 3, 6), local(2026, 3, 10, 12),
                                        lambda d: d.weekday() < 5))
    assert [d.day for d in weekdays] == [6, 9, 10]  # Fri, Mon, Tue
    monthly = Entry("b", "bill_run", "month", time(6), day_of_month=3)
    runs = list(monthly.occurrences(local(2026, 1, 1), local(2026, 4, 30), lambda d: True))
    assert runs == [local(2026, m, 3, 6) for m in (1, 2, 3, 4)]


@pytest.mark.parametrize(("body", "message"), [
    ('[[job]]\nname = "a"\nkind = "bill_run"\nevery = "month"\nday_of_month = 31\nat = "06:00"',
     "job a: day_of_month must be a whole number 1..28"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nat = "25:00"',
     "job a at: not a time of day"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nat = "02:00"\nwhen = "nightly"',
     "job a: unknown keys ['when']"),
    ('[[job]]\nname = "a"\nkind = "vee_runs"\nevery = "day"\nat = "02:00"',
     "job a: kind must be one of"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "hour"\nat = "02:00"',
     "job a: every must be one of day, working_day, month"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nat = "02:00"\nmax_attempts = "3"',
     "job a: max_attempts must be a whole number"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nat = "02:00"\n'
     '[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nat = "03:00"',
     "job a: the name is used twice"),
    ('[[job]]\nname = "a"\nkind = "vee_run"\nevery = "day"\nday_of_month = 2\nat = "02:00"',
     "day_of_month only goes with every = \"month\""),
    ('jobs = 1', "unknown top-level keys ['jobs']"),
    ('[[job]\nname = "a"', "not valid TOML"),
])
def test_wrong_calendars_are_refused_naming_the_field(tmp_path: Path, body: str,
                                                      message: str) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(body)
    with pytest.raises(CalendarError) as err:
        load_calendar(path, KINDS)
    assert message in str(err.value) and str(path) in str(err.value)
