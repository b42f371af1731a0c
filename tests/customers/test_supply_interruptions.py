"""Supply interruptions (停电 … 复电) kept with the account: recorded once, closed once, and the
months they touch in business time (Asia/Shanghai)."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from dianfei.core.clock import BUSINESS_TZ, Period
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.customers.service import (
    interrupted_periods,
    supply_interruptions,
    supply_off,
    supply_restored,
)
from dianfei.db.engine import Database
from tests.factories import Person, load_people


def local(d: date, hh: int = 9) -> datetime:
    return datetime.combine(d, time(hh), tzinfo=BUSINESS_TZ)


def test_spans_are_kept_once_and_give_the_months_without_power(db: Database) -> None:
    load_people(db, [Person("A"), Person("B"), Person("C")])
    with db.engine.begin() as conn:
        # A: cut at 00:30 on 1 March Beijing time (still February in UTC), restored 2 April
        supply_off(conn, "stop_case:1", "A", "arrears", local(date(2026, 3, 1), 0).replace(minute=30))
        supply_off(conn, "stop_case:1", "A", "arrears", local(date(2026, 3, 1)))  # again: nothing
        supply_restored(conn, "stop_case:1", local(date(2026, 4, 2)))
        # B: a prepaid cut-off, still off
        supply_off(conn, "stop_case:2", "B", "prepayment", local(date(2026, 2, 27)))
        # C: cut and restored within January
        supply_off(conn, "stop_case:3", "C", "arrears", local(date(2026, 1, 5)))
        supply_restored(conn, "stop_case:3", local(date(2026, 1, 6)))
    spans = supply_interruptions(db.engine).sort("key")
    assert spans["key"].to_list() == ["stop_case:1", "stop_case:2", "stop_case:3"]
    assert spans["off_at"][0] == local(date(2026, 3, 1), 0).replace(minute=30)
    assert spans["on_at"][1] is None
    months = interrupted_periods(db.engine, Period(2026, 1), Period(2026, 5))
    assert [(r["account_id"], r["period"]) for r in months.to_dicts()] == [
        ("A", "2026-03"), ("A", "2026-04"),
        ("B", "2026-02"), ("B", "2026-03"), ("B", "2026-04"), ("B", "2026-05"),
        ("C", "2026-01")]
    # a window after C's span: C is not read at all
    assert "C" not in interrupted_periods(db.engine, Period(2026, 3), Period(2026, 3))[
        "account_id"].to_list()
    assert supply_interruptions(db.engine, since=local(date(2026, 2, 1))).height == 2


def test_spans_all_still_open_are_typed(db: Database) -> None:
    load_people(db, [Person("A")])
    with db.engine.begin() as conn:
        supply_off(conn, "stop_case:1", "A", "prepayment", local(date(2026, 3, 1)))
    spans = supply_interruptions(db.engine)
    assert str(spans.schema["on_at"]) == "Datetime(time_unit='us', time_zone='UTC')"
    assert interrupted_periods(db.engine, Period(2026, 3), Period(2026, 3)).height == 1


def test_a_restoration_needs_an_open_interruption_and_a_reason_is_checked(db: Database) -> None:
    load_people(db, [Person("A")])
    with db.engine.begin() as conn:
        with pytest.raises(NotFoundError, match="stop_case:9"):
            supply_restored(conn, "stop_case:9", local(date(2026, 3, 1)))
        with pytest.raises(ValidationError, match="reason"):
            supply_off(conn, "stop_case:9", "A", "weather", local(date(2026, 3, 1)))
        supply_off(conn, "stop_case:9", "A", "arrears", local(date(2026, 3, 1)))
        supply_restored(conn, "stop_case:9", local(date(2026, 3, 2)))
        with pytest.raises(NotFoundError):  # restored once only
            supply_restored(conn, "stop_case:9", local(date(2026, 3, 3)))
