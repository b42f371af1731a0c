"""The utility's calendar as data (作业日历): which job runs when (``schedule.toml``).

A calendar entry names a job, the kind of work it does (a kind the worker knows), how often it
runs (every day, every working day, or one day each month) and at what local time. The loader
refuses a file with an unknown key, a wrong type, an impossible time or day, a duplicate name
or an unknown kind — naming the file, the entry and the field — so a typo never silently drops
a job from the calendar.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import ValidationError

DEFAULT_SCHEDULE = Path(__file__).with_name("schedule.toml")
EVERY = ("day", "working_day", "month")
_KEYS = {"name", "kind", "every", "at", "day_of_month", "max_attempts", "args", "enabled"}


class CalendarError(ValidationError):
    code = "calendar_invalid"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    every: str
    at: time
    day_of_month: int | None = None
    max_attempts: int = 4
    args: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def runs_on(self, day: date, working: Any) -> bool:
        if self.every == "day":
            return True
        if self.every == "working_day":
            return bool(working(day))
        return day.day == self.day_of_month

    def occurrences(self, since: datetime, until: datetime, working: Any) -> Iterator[datetime]:
        """The instants in (since, until] this entry is scheduled for (aware, business zone)."""
        day = since.astimezone(BUSINESS_TZ).date()
        last = until.astimezone(BUSINESS_TZ).date()
        while day <= last:
            at = datetime.combine(day, self.at, tzinfo=BUSINESS_TZ)
            if since < at <= until and self.runs_on(day, working):
                yield at
            day += timedelta(days=1)


def _time(value: Any, where: str) -> time:
    if not isinstance(value, str):
        raise CalendarError(f"{where}: a local time \"HH:MM\", got {value!r}")
    try:
        hh, mm = value.split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise CalendarError(f"{where}: not a time of day \"HH:MM\" (00:00–23:59): {value!r}") from None


def _entry(raw: Any, i: int, source: str, kinds: Iterable[str]) -> Entry:
    if not isinstance(raw, dict):
        raise CalendarError(f"{source}: job {i + 1} is not a table")
    name = raw.get("name")
    where = f"{source}: job {name if isinstance(name, str) and name else i + 1}"
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise CalendarError(f"{where}: name must be a non-empty text of at most 64 characters")
    unknown = set(raw) - _KEYS
    if unknown:
        raise CalendarError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    kind = raw.get("kind")
    known = sorted(kinds)
    if kind not in known:
        raise CalendarError(f"{where}: kind must be one of {', '.join(known)}, got {kind!r}")
    every = raw.get("every")
    if every not in EVERY:
        raise CalendarError(f"{where}: every must be one of {', '.join(EVERY)}, got {every!r}")
    if "at" not in raw:
        raise CalendarError(f"{where}: at (local time \"HH:MM\") is required")
    at = _time(raw["at"], f"{where} at")
    dom = raw.get("day_of_month")
    if every == "month":
        if isinstance(dom, bool) or not isinstance(dom, int) or not 1 <= dom <= 28:
            raise CalendarError(f"{where}: day_of_month must be a whole number 1..28 with "
                                f"every = \"month\" (every month has it), got {dom!r}")
    elif dom is not None:
        raise CalendarError(f"{where}: day_of_month only goes with every = \"month\"")
    attempts = raw.get("max_attempts", 4)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise CalendarError(f"{where}: max_attempts must be a whole number 1..20, got {attempts!r}")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise CalendarError(f"{where}: args must be a table, got {args!r}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise CalendarError(f"{where}: enabled must be true or false, got {enabled!r}")
    return Entry(name=name, kind=kind, every=every, at=at, day_of_month=dom,
                 max_attempts=attempts, args=dict(args), enabled=enabled)


def load_calendar(path: Path | None, kinds: Iterable[str]) -> list[Entry]:
    """The calendar in ``path`` (the built-in one when None), checked against the known kinds."""
    source = Path(path) if path is not None else DEFAULT_SCHEDULE
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CalendarError(f"{source}: no such calendar file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CalendarError(f"{source}: not valid TOML ({exc})") from None
    extra = set(raw) - {"job"}
    if extra:
        raise CalendarError(f"{source}: unknown top-level keys {sorted(extra)} (jobs are [[job]])")
    jobs = raw.get("job", [])
    if not isinstance(jobs, list):
        raise CalendarError(f"{source}: jobs are an array of tables [[job]]")
    kinds = list(kinds)
    entries = [_entry(j, i, str(source), kinds) for i, j in enumerate(jobs)]
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise CalendarError(f"{source}: job {e.name}: the name is used twice")
        seen.add(e.name)
    return entries
