"""Quiet hours, backoff and the [notify] settings, without a database."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dianfei.core.errors import ValidationError
from dianfei.notify.rules import (
    NotifySettings,
    QuietHours,
    backoff,
    earliest_allowed,
    load_notify_settings,
    quiet_until,
)
from tests.notify._util import local

NS = NotifySettings()


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-11-02 20:59", None),
    ("2026-11-02 21:00", "2026-11-03 08:00"),
    ("2026-11-02 23:59", "2026-11-03 08:00"),
    ("2026-11-03 00:00", "2026-11-03 08:00"),
    ("2026-11-03 07:59", "2026-11-03 08:00"),
    ("2026-11-03 08:00", None),
])
def test_sms_quiet_hours_21_to_8(at: str, expected: str | None) -> None:
    assert quiet_until(local(at), "sms", NS) == (local(expected) if expected else None)


def test_email_and_letters_have_no_quiet_hours_by_default() -> None:
    assert quiet_until(local("2026-11-02 23:00"), "email", NS) is None
    assert quiet_until(local("2026-11-02 23:00"), "letter", NS) is None


def test_a_daytime_window() -> None:
    ns = load_notify_settings({"notify": {"quiet_hours": {"email": "12:00-13:30"}}})
    assert quiet_until(local("2026-11-02 12:10"), "email", ns) == local("2026-11-02 13:30")
    assert quiet_until(local("2026-11-02 13:30"), "email", ns) is None
    assert quiet_until(local("2026-11-02 23:00"), "sms", ns) is None  # replaced, not merged


@given(st.datetimes(min_value=local("2026-01-01 00:00").replace(tzinfo=None),
                    max_value=local("2027-01-01 00:00").replace(tzinfo=None)))
def test_the_earliest_allowed_instant_is_never_quiet_and_never_earlier(naive: object) -> None:
    at = naive.replace(tzinfo=local("2026-01-01 00:00").tzinfo)  # type: ignore[attr-defined]
    allowed = earliest_allowed(at, "sms", NS)
    assert allowed >= at
    assert quiet_until(allowed, "sms", NS) is None
    assert allowed - at <= timedelta(hours=11)


def test_backoff_doubles_and_is_capped() -> None:
    ns = NotifySettings(backoff_seconds=60, backoff_max_seconds=600)
    assert [backoff(n, ns).total_seconds() for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]


def test_settings_are_read_and_checked() -> None:
    ns = load_notify_settings({"notify": {"max_attempts": 3, "per_customer_daily": {"sms": 1},
                                          "per_channel_per_minute": {"sms": 100}}})
    assert (ns.max_attempts, dict(ns.per_customer_daily), dict(ns.per_channel_per_minute)) == (
        3, {"sms": 1}, {"sms": 100})
    assert ns.quiet_hours["sms"] == QuietHours(time(21), time(8))
    for bad, message in [({"max_attempts": 0}, "max_attempts must be a whole number"),
                         ({"quiet_hours": {"sms": "9pm-8am"}}, "expected HH:MM-HH:MM"),
                         ({"quiet_hours": {"fax": "21:00-08:00"}}, "unknown channel 'fax'"),
                         ({"per_customer_daily": {"sms": "3"}}, "whole number"),
                         ({"backoff_seconds": 600, "backoff_max_seconds": 60}, "backoff_max_seconds")]:
        with pytest.raises(ValidationError, match=message):
            load_notify_settings({"notify": bad})
