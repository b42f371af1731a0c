"""[vee] settings and TOU calendars: defaults, refusals with clear messages, tariff hours reused."""

from __future__ import annotations

import pytest

from dianfei.core.errors import ValidationError
from dianfei.metering.vee import tou
from dianfei.metering.vee.config import VeeConfig


def test_defaults_and_overrides_from_the_config_file() -> None:
    assert VeeConfig.from_raw({}) == VeeConfig()
    cfg = VeeConfig.from_raw({"vee": {"short_gap_minutes": 60, "spike_factor": 8,
                                      "tou_calendar": "cn-zj-residential"}})
    assert (cfg.short_gap_minutes, cfg.spike_factor, cfg.tou_calendar) == (60, 8.0, "cn-zj-residential")


def test_spike_settings_per_class_and_meter_beat_the_defaults() -> None:
    cfg = VeeConfig.from_raw({"vee": {"spike_floor_kw": 40, "class": {"residential": {
        "spike_factor": 5}}, "meter": {"M1": {"spike_factor": 7, "spike_floor_kw": 80}}}})
    assert cfg.spike_setting("spike_factor", "M1", "residential") == 7.0
    assert cfg.spike_setting("spike_factor", "M2", "residential") == 5.0
    assert cfg.spike_setting("spike_factor", "M2", None) == 4.0
    assert cfg.spike_setting("spike_floor_kw", "M2", "residential") == 40.0
    # the built-in class floors stay unless a class sets its own
    assert cfg.spike_setting("spike_floor_kw", "M3", "commercial") == 500.0
    assert cfg.spike_setting("spike_floor_kw", "M3", "agricultural") == 300.0


@pytest.mark.parametrize(("section", "message"), [
    ({"short_gap_minute": 60}, "unknown settings: short_gap_minute"),
    ({"short_gap_minutes": "two hours"}, "short_gap_minutes must be like 120"),
    ({"short_gap_minutes": 1.5}, "short_gap_minutes must be like 120"),
    ({"read_min_interval_share": 1.5}, "read_min_interval_share must be in"),
    ({"spike_factor": 0}, "spike_factor must be positive"),
    ({"spike_quantile": 1.0}, "spike_quantile must be in"),
    ({"spike_band_hours": 5}, "spike_band_hours must divide 24"),
    ({"class": {"commercial": {"usage_high_factor": 2}}},
     r"\[vee.class.commercial\] unknown settings: usage_high_factor"),
    ({"meter": {"M1": {"spike_floor_kw": "high"}}}, r"\[vee.meter.M1\] spike_floor_kw must be a number"),
    ({"meter": {"M1": {"spike_floor_kw": 0}}}, r"\[vee.meter.M1\] spike_floor_kw must be positive"),
    ({"class": ["commercial"]}, r"\[vee.class\] must be a table"),
])
def test_bad_settings_are_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VeeConfig.from_raw({"vee": section})


def test_calendars_cover_the_day_exactly_once() -> None:
    periods = tou.calendar("cn-zj-general").minute_periods()
    counts = dict(periods.group_by("period").len().iter_rows())
    assert counts == {"sharp": 120, "peak": 600, "flat": 180, "valley": 540}
    res = dict(tou.calendar("cn-zj-residential").minute_periods().group_by("period").len().iter_rows())
    assert res == {"peak": 840, "valley": 600}


def test_a_calendar_with_a_hole_or_an_overlap_is_refused() -> None:
    hole = tou.TouCalendar("x", (("peak", ("08:00-22:00",)), ("valley", ("22:00-07:00",))))
    with pytest.raises(ValidationError, match="07:00 belongs to no period"):
        hole.minute_periods()
    overlap = tou.TouCalendar("y", (("peak", ("08:00-22:00",)), ("valley", ("21:00-08:00",))))
    with pytest.raises(ValidationError, match="overlaps"):
        overlap.minute_periods()
    with pytest.raises(ValidationError, match="unknown TOU calendar"):
        tou.calendar("nowhere")


def test_tariff_hours_are_reused_as_a_calendar() -> None:
    cal = tou.calendar("tariff:cn-large-industry-example")
    assert cal.minute_periods().equals(tou.calendar("cn-zj-general").minute_periods())
    with pytest.raises(ValidationError, match="no TOU hours"):
        tou.calendar("tariff:cn-zj-residential")
