"""Time-of-use aggregation (分时电量): daily sharp/peak/flat/valley kWh per meter from intervals.

Period hours are data: a calendar from ``tou_calendars.toml`` (the same hours the tariff presets
declare) or, with ``tariff:<id>``, the hours of a tariff's latest version. An interval belongs to
the period of its start time in the business zone (intervals of 15/30/60 minutes never straddle
a period boundary on the hour or half hour).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from dianfei.core.errors import ValidationError
from dianfei.core.rules import rule_cache

TOU_PERIODS: Final = ("sharp", "peak", "flat", "valley")
CALENDARS_FILE: Final = Path(__file__).with_name("tou_calendars.toml")

DAILY_TOU_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "day": pl.Date(), "total_wh": pl.Int64(), "sharp_wh": pl.Int64(),
    "peak_wh": pl.Int64(), "flat_wh": pl.Int64(), "valley_wh": pl.Int64(), "estimated_wh": pl.Int64(),
    "edited_wh": pl.Int64(), "intervals": pl.UInt32(), "estimated_intervals": pl.UInt32(),
    "estimated": pl.Boolean(),
})


@dataclass(frozen=True)
class TouCalendar:
    name: str
    #: period → clock ranges "HH:MM-HH:MM" (a range may wrap past midnight)
    hours: tuple[tuple[str, tuple[str, ...]], ...]

    def minute_periods(self) -> pl.DataFrame:
        """The period of every minute of the day: ``tod`` (0..1439) and ``period``."""
        owner: list[str | None] = [None] * 1440
        for period, ranges in self.hours:
            if period not in TOU_PERIODS:
                raise ValidationError(f"TOU calendar {self.name}: unknown period {period!r}")
            for text in ranges:
                start, end = (_minute(part, self.name) for part in text.split("-", 1))
                span = (end - start) % 1440 or 1440
                for k in range(span):
                    m = (start + k) % 1440
                    if owner[m] is not None:
                        raise ValidationError(f"TOU calendar {self.name}: {text} overlaps "
                                              f"{owner[m]}")
                    owner[m] = period
        uncovered = [m for m, p in enumerate(owner) if p is None]
        if uncovered:
            m = uncovered[0]
            raise ValidationError(f"TOU calendar {self.name}: {m // 60:02d}:{m % 60:02d} "
                                  "belongs to no period")
        return pl.DataFrame({"tod": pl.Series(range(1440), dtype=pl.Int32),
                             "period": pl.Series(owner, dtype=pl.String)})


def _minute(text: str, name: str) -> int:
    try:
        hh, mm = text.strip().split(":")
        value = int(hh) * 60 + int(mm)
    except ValueError:
        raise ValidationError(f"TOU calendar {name}: bad time {text!r}") from None
    if not 0 <= value <= 1440:
        raise ValidationError(f"TOU calendar {name}: bad time {text!r}")
    return value % 1440


@rule_cache(maxsize=1)
def _calendars() -> dict[str, TouCalendar]:
    with CALENDARS_FILE.open("rb") as fh:
        raw = tomllib.load(fh)
    return {name: TouCalendar(name, tuple((p, tuple(body.get(p, []))) for p in TOU_PERIODS))
            for name, body in raw.items()}


def calendar(name: str, tariff_dir: Path | None = None) -> TouCalendar:
    """A named calendar, or ``tariff:<id>``: the hours of that tariff's latest TOU version."""
    if name.startswith("tariff:"):
        from dianfei.tariffs.service import load_catalogue

        tariff_id = name.split(":", 1)[1]
        versions = load_catalogue(tariff_dir).versions(tariff_id)
        for version in reversed(versions):
            hours = getattr(version.energy, "hours", ())
            if hours:
                return TouCalendar(name, tuple(hours))
        raise ValidationError(f"tariff {tariff_id} declares no TOU hours")
    try:
        return _calendars()[name]
    except KeyError:
        raise ValidationError(f"unknown TOU calendar {name!r} (known: "
                              f"{', '.join(sorted(_calendars()))}, tariff:<id>)") from None


def _partial(part: pl.DataFrame, cal: TouCalendar, tz: str) -> pl.DataFrame:
    from dianfei.metering.vee.rules import local_parts

    if "day" not in part.columns or "tod" not in part.columns:
        part = local_parts(part, tz)
    lookup = cal.minute_periods()["period"].replace_strict(
        {p: i for i, p in enumerate(TOU_PERIODS)}, return_dtype=pl.Int8)
    wh = pl.col("wh")
    est = pl.col("source") == "estimated"
    lf = part.lazy().with_columns(pl.lit(lookup).gather(pl.col("tod")).alias("period"))
    # filtered sums inside the aggregation: half the time of masked columns summed
    sums = [wh.sum().alias("total_wh"),
            *[wh.filter(pl.col("period") == i).sum().alias(f"{p}_wh") for i, p in enumerate(TOU_PERIODS)],
            wh.filter(est).sum().alias("estimated_wh"),
            wh.filter(pl.col("source") == "edited").sum().alias("edited_wh"),
            pl.len().cast(pl.UInt32).alias("intervals"),
            est.sum().cast(pl.UInt32).alias("estimated_intervals")]
    if "meter_day" in part.columns and part["meter_day"].flags["SORTED_ASC"]:
        # rows from rules.prepare: one sorted integer per meter and day (the fast path)
        grouped = lf.group_by(pl.col("meter_day").set_sorted()).agg(
            pl.col("meter_id").first(), pl.col("day").first(), *sums).drop("meter_day")
    else:
        grouped = lf.group_by("meter_id", "day").agg(*sums)
    return grouped.collect()


def daily_tou_frame(*parts: pl.DataFrame, cal: TouCalendar, tz: str) -> pl.DataFrame:
    """Daily period totals (:data:`DAILY_TOU_SCHEMA`, Wh). Each part has meter_id, ts, wh and
    source (metered, estimated or edited); together they hold one row per (meter, ts). ``day``
    and ``tod`` are computed unless given; a part straight from ``rules.prepare`` (sorted
    ``meter_day``) is aggregated on the sorted fast path."""
    partials = [_partial(p, cal, tz) for p in parts if p.height]
    if not partials:
        return pl.DataFrame(schema=DAILY_TOU_SCHEMA)
    out = pl.concat(partials)
    if len(partials) > 1:
        out = out.group_by("meter_id", "day").agg(pl.exclude("meter_id", "day").sum())
    return (out.with_columns((pl.col("estimated_intervals") > 0).alias("estimated"))
            .select(list(DAILY_TOU_SCHEMA.names()))
            .cast(dict(DAILY_TOU_SCHEMA))  # type: ignore[arg-type]
            .sort("meter_id", "day"))
