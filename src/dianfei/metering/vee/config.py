"""VEE settings (数据校核参数) from the ``[vee]`` table of the config TOML, with defaults.

Every threshold of every rule lives here, so a utility tunes its validation without code. The
defaults and their reasons are in docs/vee.md; unknown keys are refused so that a misspelt
setting does not silently fall back to its default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from dianfei.core.errors import ValidationError


@dataclass(frozen=True)
class VeeConfig:
    #: spike (尖峰): a value above max(spike_factor × the meter's median positive interval,
    #: spike_floor_kw × interval hours) is flagged; needs spike_min_history positive intervals
    spike_factor: float = 10.0
    spike_floor_kw: float = 5.0
    spike_min_history: int = 8
    #: high/low usage (电量突变): a complete day's total against the median of the meter's previous
    #: usage_window_days complete days (at least usage_min_days of them)
    usage_window_days: int = 28
    usage_min_days: int = 7
    usage_high_factor: float = 3.0
    usage_low_factor: float = 0.2
    #: ignore days whose usual total is below this (a near-empty house is not "low")
    usage_min_usual_kwh: float = 1.0
    #: interval sum vs register difference (电量与示数差比对): tolerance is the larger of the two
    register_tolerance_kwh: float = 0.1
    register_tolerance_share: float = 0.02
    #: estimation: gaps up to this long are interpolated linearly between the bounding values
    short_gap_minutes: int = 120
    #: longer gaps: the same slot on the same weekday over the previous profile_weeks weeks
    profile_weeks: int = 4
    #: gaps longer than this are not estimated (a meter off for months needs a site visit)
    max_estimate_days: int = 35
    #: read success rate (采集成功率): a day counts as delivered when a daily frozen total read is
    #: taken within frozen_read_grace_minutes after midnight, or at least this share of intervals
    read_min_interval_share: float = 1.0
    frozen_read_grace_minutes: int = 60
    #: a meter without a communication address counts as AMI when it delivered data this recently
    read_lookback_days: int = 31
    #: the TOU calendar (时段划分) for daily sharp/peak/flat/valley: a name in tou_calendars.toml
    tou_calendar: str = "cn-zj-general"

    @classmethod
    def from_raw(cls, raw: dict[str, Any] | None) -> VeeConfig:
        """Read ``raw["vee"]`` (the parsed config file); refuse unknown keys and bad values."""
        section = (raw or {}).get("vee", {})
        if not isinstance(section, dict):
            raise ValidationError("[vee] in the config file must be a table")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValidationError(f"[vee] unknown settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in section.items():
            default = getattr(cls, name)
            try:
                if isinstance(default, str):
                    if not isinstance(value, str):
                        raise TypeError
                    values[name] = value
                elif isinstance(default, int):
                    if isinstance(value, bool) or int(value) != value:
                        raise TypeError
                    values[name] = int(value)
                else:
                    values[name] = float(value)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"[vee] {name} must be like {default!r}, got {value!r}") from None
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        positive = ("spike_factor", "usage_high_factor", "profile_weeks", "usage_window_days",
                    "usage_min_days", "max_estimate_days")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValidationError(f"[vee] {name} must be positive")
        if not 0 < self.read_min_interval_share <= 1:
            raise ValidationError("[vee] read_min_interval_share must be in (0, 1]")
        if self.short_gap_minutes < 0 or self.spike_min_history < 1:
            raise ValidationError("[vee] short_gap_minutes ≥ 0 and spike_min_history ≥ 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
