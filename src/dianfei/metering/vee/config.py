"""VEE settings (数据校核参数) from the ``[vee]`` table of the config TOML, with defaults.

Every threshold of every rule lives here, so a utility tunes its validation without code. The
defaults and their reasons are in docs/vee.md; unknown keys are refused so that a misspelt
setting does not silently fall back to its default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

from dianfei.core.errors import ValidationError

#: the spike settings a class or a meter may set for itself
SPIKE_OVERRIDABLE: Final = ("spike_factor", "spike_min_history", "spike_min_kw", "spike_floor_kw")

#: the safety net per customer class: a demand no meter of the class draws. A household's supply
#: is 4–20 kW (50 kW is far above it); shops and offices reach hundreds of kW, irrigation pumps
#: tens to a few hundred; industrial meters record through current transformers (before the
#: multiplier), but direct-connected ones reach the MW range
CLASS_DEFAULTS: Final[dict[str, dict[str, float]]] = {
    "commercial": {"spike_floor_kw": 500.0},
    "agricultural": {"spike_floor_kw": 300.0},
    "industrial": {"spike_floor_kw": 2000.0},
    "large_industry": {"spike_floor_kw": 10000.0},
}


@dataclass(frozen=True)
class VeeConfig:
    #: spike (尖峰): judged against the meter's own usual high — the spike_quantile of its
    #: positive intervals in the same season and spike_band_hours-long time of day (or, with less
    #: than spike_min_history of those, of that time of day over the whole history examined): an
    #: interval above spike_factor × that usual high (and above spike_min_kw of demand) is a
    #: spike. Meters with less history are not judged, except by the safety net: an interval at
    #: a demand above spike_floor_kw (far above what the meter's class draws) is always a spike
    spike_factor: float = 4.0
    spike_quantile: float = 0.99
    spike_band_hours: int = 4
    spike_min_history: int = 100
    spike_min_kw: float = 1.0
    spike_floor_kw: float = 50.0
    #: high/low usage (电量突变): a complete day's total against the meter's usual range of
    #: complete days in the same season (5th–95th percentile; at least usage_min_days of them):
    #: above usage_high_factor × the usual high, below usage_low_factor × the usual low
    usage_min_days: int = 28
    usage_high_factor: float = 2.5
    usage_low_factor: float = 0.05
    #: no longer used (the usual range is per season, not a rolling window); kept so that
    #: existing config files still load
    usage_window_days: int = 28
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
    #: estimated register reads for billing (估计读数): a period without a valid register read
    #: may be billed on the last read + the intervals since only when the intervals cover the
    #: whole span (measured, VEE-estimated or edited) and at most this share of them are VEE
    #: estimates; otherwise the account stays on the bill run's exceptions
    bill_estimate_max_share: float = 0.1
    #: plausibility of register reads (示数合理性, metering/vee/plausibility.py): a read implying
    #: more than implausible_max_kw × the hours since the previous read (the most a direct meter
    #: registers; contracted capacity_kva × implausible_capacity_factor / multiplier when higher),
    #: more than half the register's range, or — with implausible_min_history_days of history —
    #: more than implausible_history_factor × the meter's usual daily usage in the last
    #: implausible_history_days (and more than implausible_min_kwh) is held for a person and
    #: never moves a prepaid balance
    implausible_max_kw: float = 70.0
    implausible_capacity_factor: float = 1.5
    implausible_history_factor: float = 10.0
    implausible_history_days: int = 90
    implausible_min_history_days: int = 7
    implausible_min_kwh: float = 50.0
    #: per customer class (``[vee.class.<class>]``) and per meter (``[vee.meter."<id>"]``):
    #: the spike settings of SPIKE_OVERRIDABLE for those meters (a meter's own beat its class's)
    classes: dict[str, dict[str, float]] = field(default_factory=lambda: dict(CLASS_DEFAULTS))
    meters: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: dict[str, Any] | None) -> VeeConfig:
        """Read ``raw["vee"]`` (the parsed config file); refuse unknown keys and bad values."""
        section = (raw or {}).get("vee", {})
        if not isinstance(section, dict):
            raise ValidationError("[vee] in the config file must be a table")
        known = {f.name: f for f in fields(cls)} | {"class": None, "meter": None}
        known.pop("classes")
        known.pop("meters")
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValidationError(f"[vee] unknown settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        classes = {k: dict(v) for k, v in CLASS_DEFAULTS.items()}
        for name, table in _overrides(section, "class").items():
            classes.setdefault(name, {}).update(table)
        values["classes"] = classes
        values["meters"] = _overrides(section, "meter")
        for name, value in section.items():
            if name in ("class", "meter"):
                continue
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
                    "usage_min_days", "max_estimate_days", "implausible_max_kw",
                    "implausible_capacity_factor", "implausible_history_factor",
                    "implausible_history_days")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValidationError(f"[vee] {name} must be positive")
        if not 0 <= self.bill_estimate_max_share <= 1:
            raise ValidationError("[vee] bill_estimate_max_share must be in [0, 1], got "
                                  f"{self.bill_estimate_max_share}")
        if not 0 < self.read_min_interval_share <= 1:
            raise ValidationError("[vee] read_min_interval_share must be in (0, 1]")
        if self.short_gap_minutes < 0 or self.spike_min_history < 1:
            raise ValidationError("[vee] short_gap_minutes ≥ 0 and spike_min_history ≥ 1")
        if not 0.5 <= self.spike_quantile < 1:
            raise ValidationError("[vee] spike_quantile must be in [0.5, 1)")
        if self.spike_band_hours < 1 or 24 % self.spike_band_hours:
            raise ValidationError("[vee] spike_band_hours must divide 24 (1, 2, 3, 4, 6, 8, 12, 24)")
        for where, tables in (("class", self.classes), ("meter", self.meters)):
            for name, table in tables.items():
                for key, value in table.items():
                    if (value <= 0 and key != "spike_min_kw") or value < 0:
                        raise ValidationError(f"[vee.{where}.{name}] {key} must be positive")
        for key in ("spike_min_kw", "spike_floor_kw", "implausible_min_history_days",
                    "implausible_min_kwh"):
            if getattr(self, key) < 0:
                raise ValidationError(f"[vee] {key} must not be negative")

    def spike_setting(self, key: str, meter_id: str | None = None,
                      meter_class: str | None = None) -> float:
        """A spike setting for one meter: its own, else its class's, else the default."""
        for table in (self.meters.get(meter_id or ""), self.classes.get(meter_class or "")):
            if table and key in table:
                return table[key]
        return float(getattr(self, key))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _overrides(section: dict[str, Any], kind: str) -> dict[str, dict[str, float]]:
    """``[vee.class.<name>]`` / ``[vee.meter."<id>"]``: spike settings only, numbers only."""
    raw = section.get(kind, {})
    if not isinstance(raw, dict):
        raise ValidationError(f"[vee.{kind}] must be a table of tables")
    out: dict[str, dict[str, float]] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ValidationError(f"[vee.{kind}.{name}] must be a table")
        bad = sorted(set(table) - set(SPIKE_OVERRIDABLE))
        if bad:
            raise ValidationError(f"[vee.{kind}.{name}] unknown settings: {', '.join(bad)} "
                                  f"(allowed: {', '.join(SPIKE_OVERRIDABLE)})")
        values: dict[str, float] = {}
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"[vee.{kind}.{name}] {key} must be a number, got {value!r}")
            values[key] = float(value)
        out[str(name)] = values
    return out
