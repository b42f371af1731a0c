"""What every database command needs: settings, the database (schema created on first use) and
a clock. ``DIANFEI_NOW`` (ISO 8601 with offset) fixes the clock, for replaying a day."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from dianfei.core.clock import Clock, FixedClock, SystemClock
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from dianfei.db.engine import Database


def clock_from_env() -> Clock:
    text = os.environ.get("DIANFEI_NOW")
    if not text:
        return SystemClock()
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"DIANFEI_NOW is not an ISO 8601 instant: {text!r}") from None
    if instant.tzinfo is None:
        raise ValidationError("DIANFEI_NOW needs a UTC offset, e.g. 2026-02-02T09:00:00+08:00")
    return FixedClock(instant)


def database() -> Database:
    from dianfei.db.engine import open_database

    return open_database()
