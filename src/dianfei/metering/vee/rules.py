"""Validation rules (数据校核规则) as small pure functions over Polars frames.

Each rule takes interval data (and, for register rules, register reads) and returns *findings*:
one row per thing worth a look, with the columns of :data:`FINDING_SCHEMA` —
``rule, meter_id, ts, ref, value_wh, detail``. Rules never raise on bad data and never change it;
``(rule, meter_id, ts, ref)`` identifies a finding, so running the rules again finds the same
rows (that is what makes ``vee run`` idempotent).

Interval frames have the shape of the interval store (``metering.intervals.scan``): ``meter_id``,
``ts`` (interval start, UTC), ``minutes`` (interval length), ``wh`` (watt-hours, signed, as
received), one row per (meter, ts). :func:`prepare` adds the grid: a meter's interval length
(``step``) is the shortest length it reported, and a row is *on the grid* when its start is a
whole multiple of that length since midnight (the epoch is a midnight in every whole-hour zone,
Asia/Shanghai included). Off-grid rows are metered values, counted and kept, but they do not fill
a slot.

The counting definitions (interfaces.md, "VEE figures") are implemented here and nowhere else:

* expected slots of a meter run from its first to its last on-grid reading, both included;
  *missing* = expected slots without a metered value; a *gap event* is a maximal run of missing
  slots. Estimates and edits are stored elsewhere and never enter these frames, so they cannot
  reduce the count. A meter with one reading has one expected slot and nothing missing; a gap
  at the start is impossible because the first reading starts the range.
* a *zero run* is a maximal run of consecutive present zero readings (``wh == 0``) in adjacent
  slots lasting at least one day (count × step ≥ 1440 minutes: 96 quarter-hours, 48 half-hours);
  a missing slot or a non-zero reading ends it.
* *negative* counts metered intervals with ``wh < 0``; *spikes* those flagged by :func:`spikes`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from dianfei.metering.vee import names
from dianfei.metering.vee.config import VeeConfig

US_PER_MINUTE: Final = 60_000_000
MINUTES_PER_DAY: Final = 1440
#: cumulative registers (示数累计) — demand_kw is a maximum, not a running total
CUMULATIVE_REGISTERS: Final = ("total", "sharp", "peak", "flat", "valley", "kvarh")

FINDING_SCHEMA: Final = pl.Schema({
    "rule": pl.String(), "meter_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "ref": pl.String(),
    "value_wh": pl.Int64(), "detail": pl.String(),
})

#: every rule name a finding can carry (names.py: the read-only commands need them without Polars)
RULES: Final = names.RULES


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def kwh_text(wh: pl.Expr) -> pl.Expr:
    """Watt-hours as an exact kWh decimal string with three places (``-1234`` → ``"-1.234"``)."""
    mag = wh.abs()
    return pl.concat_str(
        pl.when(wh < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (mag // 1000).cast(pl.String), pl.lit("."),
        (mag % 1000).cast(pl.String).str.zfill(3))


def iso(column: str) -> pl.Expr:
    """An instant column as ISO 8601 UTC text (``2026-03-01T16:15:00Z``)."""
    return pl.col(column).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt(template: str, *args: str | pl.Expr) -> pl.Expr:
    """``template`` with each ``{}`` replaced by a column (name) or expression, as text.

    Built from ``concat_str``: ``pl.format`` panics in Polars 2.1's streaming engine on text made
    from datetimes (seen with hypothesis; kept as a test)."""
    parts = template.split("{}")
    if len(parts) != len(args) + 1:
        raise ValueError(f"{template!r} needs {len(parts) - 1} arguments, got {len(args)}")
    exprs: list[pl.Expr] = []
    for i, part in enumerate(parts):
        if part:
            exprs.append(pl.lit(part))
        if i < len(args):
            arg = args[i]
            exprs.append((pl.col(arg) if isinstance(arg, str) else arg).cast(pl.String))
    return pl.concat_str(exprs)


def _finding(rule: str | pl.Expr, *, ref: pl.Expr | None = None, value: pl.Expr | None = None,
             detail: pl.Expr, ts: pl.Expr | None = None) -> list[pl.Expr]:
    return [
        (pl.lit(rule) if isinstance(rule, str) else rule).cast(pl.String).alias("rule"),
        pl.col("meter_id").cast(pl.String),
        (ts if ts is not None else pl.col("ts")).alias("ts"),
        (ref if ref is not None else pl.lit("")).cast(pl.String).alias("ref"),
        (value if value is not None else pl.lit(None)).cast(pl.Int64).alias("value_wh"),
        detail.cast(pl.String).alias("detail"),
    ]


def _plus_minutes(ts: pl.Expr, minutes: pl.Expr) -> pl.Expr:
    return ts + pl.duration(microseconds=minutes.cast(pl.Int64) * US_PER_MINUTE)


# --------------------------------------------------------------------------- the grid


def fixed_offset(tz: str, lo: datetime, hi: datetime) -> timedelta | None:
    """The zone's UTC offset when it is the same from ``lo`` to ``hi`` (Asia/Shanghai always),
    else None. Sampled daily: offsets change for months at a time, never for less than a day."""
    zone = ZoneInfo(tz)
    offset = lo.astimezone(zone).utcoffset()
    days = (hi - lo).days + 1
    if offset is None or days > 40_000:
        return None
    for d in range(days + 1):
        if (lo + timedelta(days=d)).astimezone(zone).utcoffset() != offset:
            return None
    return offset if hi.astimezone(zone).utcoffset() == offset else None


def local_parts(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Add ``day`` (business date) and ``tod`` (minute of the day) of each ``ts`` in zone ``tz``.

    With a fixed offset over the data (the usual case) this is integer arithmetic on the epoch;
    otherwise the zone conversion (daylight saving time) is done properly."""
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, pl.Date).alias("day"), pl.lit(None, pl.Int32).alias("tod"))
    lo, hi = frame["ts"].min(), frame["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    offset = fixed_offset(tz, lo, hi)
    if offset is not None:
        local = pl.col("ts").dt.epoch("us") + int(offset.total_seconds()) * 1_000_000
        day_us = MINUTES_PER_DAY * US_PER_MINUTE
        return frame.with_columns((local // day_us).cast(pl.Int32).cast(pl.Date).alias("day"),
                                  ((local % day_us) // US_PER_MINUTE).cast(pl.Int32).alias("tod"))
    loc = pl.col("ts").dt.convert_time_zone(tz)
    return frame.with_columns(loc.dt.date().alias("day"),
                              (loc.dt.hour().cast(pl.Int32) * 60 + loc.dt.minute().cast(pl.Int32))
                              .alias("tod"))


def prepare(intervals: pl.LazyFrame | pl.DataFrame, tz: str) -> pl.DataFrame:
    """Sort by (meter, ts) — skipped when the rows already are in order, as the store writes
    them (checked, not assumed) — and add ``meter_key`` (a small integer per meter),
    ``meter_day`` (one integer per meter and business day), ``step`` (the meter's interval
    length), ``on_grid``, ``slot`` (the slot number) and the business ``day`` and minute of day
    ``tod`` of each interval start.

    ``meter_key`` and ``meter_day`` ascend with the rows, and are flagged sorted: grouping by
    them takes Polars' sorted fast path (ten times faster than hashing meter ids)."""
    frame = intervals.lazy().collect()
    m, t = pl.col("meter_id"), pl.col("ts")
    frame = frame.with_columns(m.rle_id().alias("meter_key"))
    if frame.height > 1 and not _in_order(frame):
        frame = frame.sort("meter_id", "ts").with_columns(m.rle_id().alias("meter_key"))
    epoch = t.dt.epoch("us")
    step_us = pl.col("step") * US_PER_MINUTE
    frame = (frame.lazy()
             .with_columns(pl.col("meter_key").set_sorted())
             .with_columns(pl.col("minutes").cast(pl.Int64).min().over("meter_key").alias("step"))
             .with_columns((epoch % step_us == 0).alias("on_grid"), (epoch // step_us).alias("slot"))
             .collect())
    frame = local_parts(frame, tz)
    return frame.with_columns((pl.col("meter_key").cast(pl.Int64) * 1_000_000
                               + pl.col("day").cast(pl.Int64)).set_sorted().alias("meter_day"))


def _in_order(frame: pl.DataFrame) -> bool:
    """Each meter's rows are contiguous, meters ascend and each meter's ts strictly ascend
    (``meter_key`` = the run number of meter_id)."""
    runs = frame.select(pl.col("meter_id").rle().alias("r")).unnest("r")
    if runs.height > 1 and not runs.select((pl.col("value") > pl.col("value").shift(1))
                                           .slice(1).all()).item():
        return False
    key, t = pl.col("meter_key"), pl.col("ts")
    return not frame.select(((key == key.shift(1)) & (t <= t.shift(1))).any()).item()


def slotted(prepared: pl.DataFrame) -> pl.DataFrame:
    """On-grid rows in (meter, ts) order, each with its predecessor's slot, ts and value (null
    for a meter's first reading)."""
    frame = prepared.filter(pl.col("on_grid"))
    same = pl.col("meter_key") == pl.col("meter_key").shift(1)
    return frame.with_columns(
        pl.when(same).then(pl.col("slot").shift(1)).alias("prev_slot"),
        pl.when(same).then(pl.col("ts").shift(1)).alias("prev_ts"),
        pl.when(same).then(pl.col("wh").shift(1)).alias("prev_wh"),
    )


def gaps(slots: pl.LazyFrame) -> pl.LazyFrame:
    """One row per gap event: ``meter_id, step, gap_slots, gap_start, gap_end`` (first and last
    missing slot) and the bounding readings ``prev_ts, prev_wh, next_ts, next_wh``."""
    return (slots.filter(pl.col("slot") - pl.col("prev_slot") > 1)
            .select("meter_id", "meter_key", "step",
                    (pl.col("slot") - pl.col("prev_slot") - 1).alias("gap_slots"),
                    _plus_minutes(pl.col("prev_ts"), pl.col("step")).alias("gap_start"),
                    _plus_minutes(pl.col("ts"), -pl.col("step")).alias("gap_end"),
                    "prev_ts", "prev_wh", pl.col("ts").alias("next_ts"),
                    pl.col("wh").alias("next_wh")))


def gap_findings(gap_events: pl.LazyFrame) -> pl.LazyFrame:
    return gap_events.select(_finding(
        "gap", ts=pl.col("gap_start"), value=pl.lit(None),
        detail=fmt("{} missing intervals of {} minutes, {} to {} (last before {}, next {})",
                         "gap_slots", "step", iso("gap_start"),
                         iso("gap_end"), iso("prev_ts"),
                         iso("next_ts"))))


# --------------------------------------------------------------------------- value rules


def off_grid(prepared: pl.LazyFrame) -> pl.LazyFrame:
    return prepared.filter(~pl.col("on_grid")).select(_finding(
        "off_grid", value=pl.col("wh"),
        detail=fmt("interval start is not on the meter's {}-minute grid", "step")))


def negative(prepared: pl.LazyFrame) -> pl.LazyFrame:
    return prepared.filter(pl.col("wh") < 0).select(_finding(
        "negative", value=pl.col("wh"),
        detail=fmt("negative interval value {} kWh", kwh_text(pl.col("wh")))))


#: meteorological seasons of the business month (12, 1, 2 → winter …): loads follow them
SEASONS: Final = ("winter", "spring", "summer", "autumn")

SPIKE_SETTINGS_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "spike_factor": pl.Float64(), "spike_min_history": pl.Int64(),
    "spike_min_kw": pl.Float64(), "spike_floor_kw": pl.Float64(),
})


def spike_settings(meters: pl.DataFrame, cfg: VeeConfig) -> pl.DataFrame:
    """Per meter whose spike settings differ from the defaults (its class's or its own, see
    ``VeeConfig.spike_setting``): meter_id and the four settings. ``meters`` has ``meter_id``
    and, when known, ``meter_class``. Columnar: a join with a row per class and per named meter."""
    from dianfei.metering.vee.config import SPIKE_OVERRIDABLE

    cls = (pl.col("meter_class") if "meter_class" in meters.columns
           else pl.lit(None, pl.String)).alias("meter_class")
    frame = meters.select(pl.col("meter_id").cast(pl.String), cls.cast(pl.String))

    def table(rows: dict[str, dict[str, float]], key: str, suffix: str) -> pl.DataFrame:
        return pl.DataFrame(
            [{key: name, **{f"{k}{suffix}": t.get(k) for k in SPIKE_OVERRIDABLE}}
             for name, t in rows.items() if t],
            schema={key: pl.String, **{f"{k}{suffix}": pl.Float64 for k in SPIKE_OVERRIDABLE}})

    by_class, by_meter = table(cfg.classes, "meter_class", "_c"), table(cfg.meters, "meter_id", "_m")
    frame = (frame.join(by_class, on="meter_class", how="left")
             .join(by_meter, on="meter_id", how="left"))
    special = pl.any_horizontal(pl.col(f"{k}{s}").is_not_null()
                                for k in SPIKE_OVERRIDABLE for s in ("_c", "_m"))
    return frame.filter(special).select(
        "meter_id",
        *(pl.coalesce(f"{k}_m", f"{k}_c", pl.lit(float(getattr(cfg, k))))
          .cast(SPIKE_SETTINGS_SCHEMA[k]).alias(k) for k in SPIKE_OVERRIDABLE))


def _with_settings(rows: pl.LazyFrame, settings: pl.DataFrame | None,
                   cfg: VeeConfig) -> pl.LazyFrame:
    names = ("spike_factor", "spike_min_history", "spike_min_kw", "spike_floor_kw")
    if settings is None or settings.height == 0:
        return rows.with_columns(pl.lit(getattr(cfg, n)).alias(n) for n in names)
    return (rows.join(settings.lazy(), on="meter_id", how="left")
            .with_columns(pl.col(n).fill_null(getattr(cfg, n)) for n in names))


def _band_label(band: pl.Expr, hours: int) -> pl.Expr:
    start = (band * hours).cast(pl.String).str.zfill(2)
    end = ((band + 1) * hours).cast(pl.String).str.zfill(2)
    return pl.concat_str(start, pl.lit(":00–"), end, pl.lit(":00"))


def _demand_kw(wh: pl.Expr) -> pl.Expr:
    """The mean demand of an interval in kW (as Wh per hour = W, then kW text)."""
    return kwh_text((wh * 60 / pl.col("step")).round(0).cast(pl.Int64))


#: a kept meter profile (``profiles.py``): the statistics of each meter's longer history, one row
#: per (meter, kind, season, band); season/band −1 where the kind has none
PROFILE_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "kind": pl.String(), "season": pl.Int32(), "band": pl.Int32(),
    "hi": pl.Float64(), "lo": pl.Float64(), "med": pl.Float64(), "n": pl.Int64(),
})
#: the profile kinds: the spike rule's (season, band) cells and bands, the usage rule's seasons
#: and whole range
PROFILE_KINDS: Final = ("spike_cell", "spike_band", "usage_season", "usage_all")


def spike_rows(prepared: pl.LazyFrame, cfg: VeeConfig) -> pl.LazyFrame:
    """The intervals the spike statistics are made of (positive, on the grid) with their
    ``season`` (0 winter … 3 autumn) and ``band`` of the day."""
    return (prepared.filter(pl.col("on_grid") & (pl.col("wh") > 0))
            .with_columns(((pl.col("day").dt.month().cast(pl.Int32) % 12) // 3).alias("season"),
                          (pl.col("tod") // (60 * cfg.spike_band_hours)).cast(pl.Int32)
                          .alias("band")))


def spike_stats(rows: pl.LazyFrame, keys: list[str], suffix: str, cfg: VeeConfig) -> pl.LazyFrame:
    """The usual high (the ``spike_quantile``), low (5 %), median and count of ``rows`` per
    ``keys``."""
    return rows.group_by(keys).agg(
        pl.col("wh").quantile(cfg.spike_quantile, "linear").alias(f"hi{suffix}"),
        pl.col("wh").quantile(0.05, "linear").alias(f"lo{suffix}"),
        pl.col("wh").median().alias(f"med{suffix}"), pl.len().cast(pl.Int64).alias(f"n{suffix}"))


def usage_days(prepared: pl.LazyFrame, tz: str) -> pl.LazyFrame:
    """The complete days the usage statistics are made of, with their ``season``."""
    return (daily_totals(prepared, tz).filter(pl.col("complete"))
            .with_columns(((pl.col("day").dt.month().cast(pl.Int32) % 12) // 3).alias("season")))


def usage_stats(days: pl.LazyFrame, keys: list[str], suffix: str) -> pl.LazyFrame:
    """The usual range of complete daily totals (5th–95th percentile), median and count."""
    return days.group_by(keys).agg(
        pl.col("wh").quantile(0.95, "linear").alias(f"hi{suffix}"),
        pl.col("wh").quantile(0.05, "linear").alias(f"lo{suffix}"),
        pl.col("wh").median().alias(f"med{suffix}"), pl.len().cast(pl.Int64).alias(f"n{suffix}"))


def _kept(profile: pl.LazyFrame | None, prepared: pl.LazyFrame, kind: str, keys: list[str],
          suffix: str) -> pl.LazyFrame | None:
    """The kept profile's rows of ``kind`` keyed like the window's statistics (meter_key)."""
    if profile is None:
        return None
    ids = prepared.select("meter_id", "meter_key").unique()
    return (profile.filter(pl.col("kind") == kind).join(ids, on="meter_id")
            .select(*keys, *[pl.col(k).alias(f"{k}{suffix}") for k in ("hi", "lo", "med", "n")]))


def _prefer_longer(window: pl.LazyFrame, kept: pl.LazyFrame | None, keys: list[str],
                   suffix: str) -> pl.LazyFrame:
    """Per key, the statistics of the window or the kept profile — whichever counts more:
    a daily run judges by the meter's year, a run over the whole history by that history."""
    if kept is None:
        return window
    cols = [f"{k}{suffix}" for k in ("hi", "lo", "med", "n")]
    both = window.join(kept.rename({c: f"{c}_k" for c in cols}), on=keys, how="full",
                       coalesce=True)
    use_kept = pl.col(f"n{suffix}_k").fill_null(-1) > pl.col(f"n{suffix}").fill_null(-1)
    return both.select(*keys, *[pl.when(use_kept).then(pl.col(f"{c}_k")).otherwise(pl.col(c))
                                .alias(c) for c in cols])


def spikes(prepared: pl.LazyFrame, cfg: VeeConfig,
           settings: pl.DataFrame | None = None,
           profile: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Spike (尖峰): an interval far above what this meter usually draws at that time of day in
    that season.

    * The meter's *usual high* is the ``spike_quantile`` (0.99) of its positive on-grid
      intervals in the same season and ``spike_band_hours`` band of the day — robust: the top 1 %
      (an EV charging some nights, a heat wave) is the usual high, and a lone fault cannot move it.
      A cell with fewer than ``spike_min_history`` intervals uses the same band over all seasons;
      with fewer there too the meter is not judged (too little history).
    * A spike is above ``spike_factor`` × the usual high and above ``spike_min_kw`` of demand.
    * The safety net: an interval at a demand above ``spike_floor_kw`` (per class: far above what
      the class draws) is a spike whatever the history.

    ``profile`` (:data:`PROFILE_SCHEMA`): each meter's kept statistics over a longer history
    (``profiles.py``); per cell the window's or the profile's, whichever counts more intervals,
    so a run over one day judges by the meter's year.

    Only meters with enough positive intervals (or a kept profile) are grouped at all, so a wide
    day (a million meters with a day each) costs one sorted count."""
    h = cfg.spike_band_hours
    floor_kw = [cfg.spike_floor_kw, *[t["spike_floor_kw"] for t in (*cfg.classes.values(),
                                                                    *cfg.meters.values())
                                      if "spike_floor_kw" in t]]
    min_hist = min([cfg.spike_min_history, *[int(t["spike_min_history"]) for t in (
        *cfg.classes.values(), *cfg.meters.values()) if "spike_min_history" in t]])
    floor_wh = pl.col("spike_floor_kw") * pl.col("step") * (1000.0 / 60.0)
    # the safety net: rows above the lowest floor of any setting, then each meter's own
    net = (_with_settings(prepared.filter(pl.col("wh") > pl.col("step") * (min(floor_kw) * 1000.0 / 60.0)),
                          settings, cfg)
           .filter(pl.col("wh") > floor_wh))

    pos = spike_rows(prepared, cfg)
    enough = (pos.group_by(pl.col("meter_key").set_sorted()).agg(pl.len().alias("n"))
              .filter(pl.col("n") >= min_hist).select("meter_key"))
    kept_cell = _kept(profile, prepared, "spike_cell", ["meter_key", "season", "band"], "_c")
    kept_band = _kept(profile, prepared, "spike_band", ["meter_key", "band"], "_b")
    if kept_band is not None:
        enough = pl.concat([enough, kept_band.select("meter_key")]).unique()
    rows = pos.join(enough, on="meter_key", how="semi")
    cell_stats = _prefer_longer(spike_stats(rows, ["meter_key", "season", "band"], "_c", cfg),
                                kept_cell, ["meter_key", "season", "band"], "_c")
    band_stats = _prefer_longer(spike_stats(rows, ["meter_key", "band"], "_b", cfg),
                                kept_band, ["meter_key", "band"], "_b")
    judged = (_with_settings(rows.join(cell_stats, on=["meter_key", "season", "band"], how="left")
                             .join(band_stats, on=["meter_key", "band"], how="left"),
                             settings, cfg))
    cell = pl.col("n_c") >= pl.col("spike_min_history")
    pick = {k: pl.when(cell).then(pl.col(f"{k}_c")).otherwise(pl.col(f"{k}_b"))
            for k in ("hi", "lo", "med", "n")}
    judged = (judged.with_columns(*(v.alias(k) for k, v in pick.items()),
                                  cell.alias("by_season"))
              .filter(pl.col("n") >= pl.col("spike_min_history"))
              .with_columns(pl.max_horizontal(pl.col("hi") * pl.col("spike_factor"),
                                              pl.col("spike_min_kw") * pl.col("step") * (1000.0 / 60.0))
                            .round(0).cast(pl.Int64).alias("threshold_wh"))
              .filter(pl.col("wh") > pl.col("threshold_wh")))
    when = pl.concat_str(_band_label(pl.col("band"), h),
                         pl.when(pl.col("by_season"))
                         .then(pl.lit(" in ") + pl.col("season").replace_strict(
                             dict(enumerate(SEASONS)), return_dtype=pl.String))
                         .otherwise(pl.lit(" (all seasons)")))
    wh_int = {k: pl.col(k).round(0).cast(pl.Int64) for k in ("hi", "lo", "med")}
    by_stats = judged.select(_finding("spike", value=pl.col("wh"), detail=fmt(
        "{} kWh in {} minutes ({} kW) is {}× this meter's usual high of {} kWh at {} "
        "(usual range {}–{} kWh, median {} kWh, over {} intervals); spikes start above {} × "
        "the usual high = {} kWh",
        kwh_text(pl.col("wh")), "step", _demand_kw(pl.col("wh")),
        (pl.col("wh") / pl.max_horizontal(pl.col("hi"), pl.lit(1.0))).round(1), kwh_text(wh_int["hi"]),
        when, kwh_text(wh_int["lo"]), kwh_text(wh_int["hi"]), kwh_text(wh_int["med"]), "n",
        "spike_factor", kwh_text(pl.col("threshold_wh")))))
    by_floor = net.select(_finding("spike", value=pl.col("wh"), detail=fmt(
        "{} kWh in {} minutes is a demand of {} kW, above the {} kW no meter of its class draws "
        "(the safety net, whatever the meter's history)",
        kwh_text(pl.col("wh")), "step", _demand_kw(pl.col("wh")),
        pl.col("spike_floor_kw").round(1))))
    return pl.concat([by_stats, by_floor.join(by_stats.select("meter_id", "ts"),
                                              on=["meter_id", "ts"], how="anti")])


def zero_runs(slots: pl.LazyFrame) -> pl.LazyFrame:
    """Maximal runs of consecutive present zeros of any length, within the frame:
    ``meter_id, meter_key, run_start, run_end, run_slots, step``."""
    zero = pl.col("wh") == 0
    continues = ((pl.col("prev_wh") == 0) & (pl.col("slot") - pl.col("prev_slot") == 1)).fill_null(False)
    return (slots.with_columns((zero & ~continues).cum_sum().alias("run"))
            .filter(zero)
            .group_by(pl.col("run").set_sorted())
            .agg(pl.col("meter_id").first(), pl.col("meter_key").first(),
                 pl.col("ts").min().alias("run_start"),
                 pl.col("ts").max().alias("run_end"), pl.len().alias("run_slots"),
                 pl.col("step").first())
            .drop("run"))


def long_zero_runs(runs: pl.LazyFrame) -> pl.LazyFrame:
    """The runs lasting at least a day (the ``zero_runs`` figure and finding)."""
    return runs.filter(pl.col("run_slots") * pl.col("step") >= MINUTES_PER_DAY)


def zero_run_events(slots: pl.LazyFrame) -> pl.LazyFrame:
    """Maximal runs of consecutive present zeros lasting at least a day:
    ``meter_id, meter_key, run_start, run_end, run_slots, step``."""
    return long_zero_runs(zero_runs(slots))


# --------------------------------------------------------------------------- a window's edges
#
# A run over a window of days sees a gap or a run of zeros that began before the window only
# from its first reading in the window: the gap not at all, the zeros as a new run starting at
# midnight (a second finding, each night, for one vacant house). With each meter's rows just
# before the window (``intervals.lead_in``: from its last non-zero reading) and its first row
# after (``intervals.lead_out``), the edges are judged as a run over the whole history would
# judge them — same start, same key — while the big frame is never re-sorted or copied: only
# each meter's first and last reading in the window meet the context, in small frames.

CONTEXT_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "minutes": pl.Int16(), "wh": pl.Int64(),
})


def _on_grid(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (with the window's ``step`` per meter) limited to on-grid rows, with ``slot``."""
    step_us = pl.col("step") * US_PER_MINUTE
    epoch = pl.col("ts").dt.epoch("us")
    return (frame.filter(epoch % step_us == 0)
            .with_columns((epoch // step_us).alias("slot")))


def edges(slots: pl.DataFrame, lead_in: pl.DataFrame, lead_out: pl.DataFrame) -> pl.DataFrame:
    """Per meter of the window: its first on-grid reading (``first_ts, first_slot, first_wh``),
    the last one before the window (``in_ts, in_slot, in_wh``) with the run of zeros it ends
    (``carry_start, carry_slots``: null unless the window's first reading continues it), its
    last on-grid reading in the window (``last_ts, last_slot, last_wh``) and the first after
    (``out_ts, out_slot, out_wh``). Meters are on the window's grid (its ``step``)."""
    first = (slots.filter(pl.col("prev_slot").is_null())
             .select("meter_id", "meter_key", "step", pl.col("ts").alias("first_ts"),
                     pl.col("slot").alias("first_slot"), pl.col("wh").alias("first_wh")))
    last = (slots.filter((pl.col("meter_key") != pl.col("meter_key").shift(-1)).fill_null(True))
            .select("meter_key", pl.col("ts").alias("last_ts"), pl.col("slot").alias("last_slot"),
                    pl.col("wh").alias("last_wh")))
    steps = first.select("meter_id", "step")
    before = _on_grid(lead_in.join(steps, on="meter_id").sort("meter_id", "ts"))
    same = pl.col("meter_id") == pl.col("meter_id").shift(1)
    starts = ((pl.col("wh") != 0) | ~same
              | (pl.col("wh").shift(1) != 0) | (pl.col("slot") - pl.col("slot").shift(1) != 1))
    before = before.with_columns(starts.fill_null(True).cum_sum().alias("zrun"))
    tail = (before.group_by("meter_id", maintain_order=True)
            .agg(pl.col("ts").last().alias("in_ts"), pl.col("slot").last().alias("in_slot"),
                 pl.col("wh").last().alias("in_wh"), pl.col("zrun").last().alias("zrun")))
    zeros = (before.filter(pl.col("wh") == 0).group_by("zrun")
             .agg(pl.col("ts").min().alias("zrun_start"), pl.len().alias("zrun_slots")))
    tail = tail.join(zeros, on="zrun", how="left").drop("zrun")
    after = (_on_grid(lead_out.join(steps, on="meter_id"))
             .select("meter_id", pl.col("ts").alias("out_ts"), pl.col("slot").alias("out_slot"),
                     pl.col("wh").alias("out_wh")))
    out = (first.join(last, on="meter_key", how="left", maintain_order="left")
           .join(tail, on="meter_id", how="left", maintain_order="left")
           .join(after, on="meter_id", how="left", maintain_order="left"))
    carried = ((pl.col("first_wh") == 0) & (pl.col("in_wh") == 0)
               & (pl.col("first_slot") - pl.col("in_slot") == 1)).fill_null(False)
    return out.with_columns(
        pl.when(carried).then(pl.col("zrun_start")).alias("carry_start"),
        pl.when(carried).then(pl.col("zrun_slots")).alias("carry_slots"),
    ).drop("zrun_start", "zrun_slots")


def edge_gaps(edge: pl.LazyFrame) -> pl.LazyFrame:
    """The gaps between the window and its context, as :func:`gaps` shapes them."""
    def gap(prev: str, nxt: str) -> pl.LazyFrame:
        return (edge.filter(pl.col(f"{nxt}_slot") - pl.col(f"{prev}_slot") > 1)
                .select("meter_id", "meter_key", "step",
                        (pl.col(f"{nxt}_slot") - pl.col(f"{prev}_slot") - 1).alias("gap_slots"),
                        _plus_minutes(pl.col(f"{prev}_ts"), pl.col("step")).alias("gap_start"),
                        _plus_minutes(pl.col(f"{nxt}_ts"), -pl.col("step")).alias("gap_end"),
                        pl.col(f"{prev}_ts").alias("prev_ts"), pl.col(f"{prev}_wh").alias("prev_wh"),
                        pl.col(f"{nxt}_ts").alias("next_ts"), pl.col(f"{nxt}_wh").alias("next_wh")))

    return pl.concat([gap("in", "first"), gap("last", "out")], how="vertical")


def carried_zero_runs(runs: pl.LazyFrame, edge: pl.LazyFrame) -> pl.LazyFrame:
    """``runs`` (:func:`zero_runs` of the window) with the run that opens a meter's window
    extended back over the zeros it continues (its true start and length)."""
    carry = edge.filter(pl.col("carry_start").is_not_null()).select(
        "meter_key", "first_ts", "carry_start", "carry_slots")
    opening = pl.col("run_start") == pl.col("first_ts")
    return (runs.join(carry, on="meter_key", how="left")
            .with_columns(pl.when(opening).then(pl.col("carry_start")).otherwise(pl.col("run_start"))
                          .alias("run_start"),
                          (pl.col("run_slots") + pl.when(opening).then(pl.col("carry_slots"))
                           .otherwise(0)).alias("run_slots"))
            .drop("first_ts", "carry_start", "carry_slots"))


def zero_run_findings(runs: pl.LazyFrame) -> pl.LazyFrame:
    return runs.select(_finding(
        "zero_run", ts=pl.col("run_start"), value=pl.lit(0),
        detail=fmt("{} consecutive zero intervals from {} to {}", "run_slots",
                         iso("run_start"), iso("run_end"))))


def _day_start_utc(day: pl.Expr, tz: str) -> pl.Expr:
    return (day.cast(pl.Datetime("us")).dt.replace_time_zone(tz)
            .dt.convert_time_zone("UTC"))


def daily_totals(prepared: pl.LazyFrame, tz: str) -> pl.LazyFrame:
    """Per meter and business day: ``wh`` (sum of on-grid metered values), ``n`` (slots present),
    ``step`` and ``complete`` (every slot of the day present)."""
    return (prepared.filter(pl.col("on_grid"))
            .group_by(pl.col("meter_day").set_sorted())
            .agg(pl.col("meter_key").first(), pl.col("meter_id").first(), pl.col("day").first(),
                 pl.col("wh").sum(), pl.len().alias("n"), pl.col("step").first())
            .with_columns((pl.col("n") * pl.col("step") >= MINUTES_PER_DAY).alias("complete")))


def usage_deviation(prepared: pl.LazyFrame, cfg: VeeConfig, tz: str,
                    profile: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """High/low usage (电量突变): a complete day far outside this meter's usual days in that
    season.

    The usual range is the 5th–95th percentile of the meter's complete daily totals in the same
    season (over the history examined; with fewer than usage_min_days such days, over all its
    days; with fewer still, the meter is not judged). A day above usage_high_factor × the usual
    high is ``high_usage``; below usage_low_factor × the usual low is ``low_usage`` — so a
    household's own heating or cooling season, holidays away or PV days, being part of its usual
    range, raise nothing, and a vacant week keeps its standby (5–15 % of the usual low) while a
    stopped or bypassed meter records almost nothing. Ranges whose high (for high) or low (for low) is under
    usage_min_usual_kwh are not judged (a near-empty house is not "low"). ``profile``: as for
    :func:`spikes` — the window's range or the kept one, whichever counts more days."""
    days = usage_days(prepared, tz)
    season_stats = _prefer_longer(usage_stats(days, ["meter_key", "season"], "_s"),
                                  _kept(profile, prepared, "usage_season",
                                        ["meter_key", "season"], "_s"),
                                  ["meter_key", "season"], "_s")
    all_stats = _prefer_longer(usage_stats(days, ["meter_key"], "_m"),
                               _kept(profile, prepared, "usage_all", ["meter_key"], "_m"),
                               ["meter_key"], "_m")
    judged = (days.join(season_stats, on=["meter_key", "season"], how="left")
              .join(all_stats, on="meter_key"))
    by_season = pl.col("n_s") >= cfg.usage_min_days
    judged = (judged.with_columns(
        *(pl.when(by_season).then(pl.col(f"{k}_s")).otherwise(pl.col(f"{k}_m")).alias(k)
          for k in ("hi", "lo", "med", "n")), by_season.alias("by_season"))
        .filter(pl.col("n") >= cfg.usage_min_days))
    usual_min = cfg.usage_min_usual_kwh * 1000
    # the usual high, or the range's width when it is wider (a PV meter's net days straddle zero)
    top = pl.max_horizontal(pl.col("hi"), pl.col("hi") - pl.col("lo"))
    high = (pl.col("hi") >= usual_min) & (pl.col("wh") > top * cfg.usage_high_factor)
    low = (pl.col("lo") >= usual_min) & (pl.col("wh") < pl.col("lo") * cfg.usage_low_factor)
    rule = pl.when(high).then(pl.lit("high_usage")).when(low).then(pl.lit("low_usage"))
    season = pl.when(pl.col("by_season")).then(pl.lit(" in ") + pl.col("season").replace_strict(
        dict(enumerate(SEASONS)), return_dtype=pl.String)).otherwise(pl.lit(" (all seasons)"))
    ref = pl.when(pl.col("r") == "high_usage").then(top).otherwise(pl.col("lo"))
    as_wh = {k: pl.col(k).round(0).cast(pl.Int64) for k in ("hi", "lo", "med")}
    return (judged.with_columns(rule.alias("r")).filter(pl.col("r").is_not_null())
            .select(_finding(pl.col("r"), ts=_day_start_utc(pl.col("day"), tz), value=pl.col("wh"),
                             detail=fmt(
                "day {} used {} kWh, {}× this meter's usual {} of {} kWh a day{} (usual range "
                "{}–{} kWh, median {} kWh, over {} complete days)",
                pl.col("day").cast(pl.String), kwh_text(pl.col("wh")),
                (pl.col("wh") / pl.max_horizontal(ref, pl.lit(1.0))).round(2),
                pl.when(pl.col("r") == "high_usage").then(pl.lit("high")).otherwise(pl.lit("low")),
                kwh_text(ref.round(0).cast(pl.Int64)), season, kwh_text(as_wh["lo"]),
                kwh_text(as_wh["hi"]), kwh_text(as_wh["med"]), "n"))))


def reverse_energy(prepared: pl.LazyFrame, tz: str) -> pl.LazyFrame:
    """Reverse energy (反向电量): per meter and business day, the energy of its negative
    intervals (a meter without a reverse register reports export as negative intervals)."""
    return (prepared.filter(pl.col("wh") < 0)
            .group_by(pl.col("meter_day").set_sorted())
            .agg(pl.col("meter_id").first(), pl.col("day").first(),
                 (-pl.col("wh")).sum().alias("rev"), pl.len().alias("n"))
            .select(_finding("reverse_energy", ts=_day_start_utc(pl.col("day"), tz),
                             value=pl.col("rev"),
                             detail=fmt("{} kWh of reverse energy in {} intervals on {}",
                                              kwh_text(pl.col("rev")), "n",
                                              pl.col("day").cast(pl.String)))))


def duplicate_findings(dups: pl.LazyFrame) -> pl.LazyFrame:
    """Second-and-later rows for the same (meter, interval) within one import (batch): identical
    to the first value (``duplicate``) or not (``conflicting_duplicate``). ``ref`` is the batch and
    the row's ordinal among its batch's repeats, so each repeat is its own finding."""
    conflicting = pl.col("wh") != pl.col("first_wh")
    ordinal = pl.int_range(pl.len()).over("batch_id", "meter_id", "ts")
    return (dups.sort("batch_id", "meter_id", "ts", "wh")
            .with_columns(ordinal.alias("k"))
            .select(_finding(
                pl.when(conflicting).then(pl.lit("conflicting_duplicate")).otherwise(pl.lit("duplicate")),
                ref=fmt("{}#{}", "batch_id", "k"), value=pl.col("wh"),
                detail=fmt("repeated in import {}: {} kWh, first value {} kWh", "batch_id",
                                 kwh_text(pl.col("wh")), kwh_text(pl.col("first_wh"))))))


# --------------------------------------------------------------------------- register rules


def _register_steps(reads: pl.LazyFrame, meters: pl.LazyFrame) -> pl.LazyFrame:
    """Consecutive reads of each cumulative register with the raw difference and the wrap."""
    same = ((pl.col("meter_id") == pl.col("meter_id").shift(1))
            & (pl.col("register") == pl.col("register").shift(1)))
    return (reads.filter(pl.col("register").is_in(list(CUMULATIVE_REGISTERS)))
            .join(meters.select("meter_id", "digits"), on="meter_id", how="left")
            .sort("meter_id", "register", "read_at")
            .with_columns(pl.when(same).then(pl.col("value").shift(1)).alias("prev_value"),
                          pl.when(same).then(pl.col("read_at").shift(1)).alias("prev_at"),
                          pl.when(same).then(pl.col("source").shift(1)).alias("prev_source"))
            .with_columns((pl.col("value") - pl.col("prev_value")).alias("raw_diff"),
                          (pl.lit(10, pl.Int64).pow(pl.col("digits").fill_null(6).cast(pl.Int64))
                           * 100).alias("wrap")))


def register_backwards(reads: pl.LazyFrame, meters: pl.LazyFrame) -> pl.LazyFrame:
    """A cumulative register read lower than the one before: a rollover (翻转) when going round
    10**digits explains it with less than half a turn (the billing rule), else a fault
    (示数倒走). ``value_wh`` is the read in thousandths (the 0.01 register value × 10)."""
    steps = _register_steps(reads, meters).filter(pl.col("raw_diff") < 0)
    rollover = pl.col("raw_diff") + pl.col("wrap") < pl.col("wrap") // 2
    return steps.select(_finding(
        pl.when(rollover).then(pl.lit("rollover")).otherwise(pl.lit("read_backwards")),
        ts=pl.col("read_at"), ref=pl.col("register"), value=pl.col("value") * 10,
        detail=fmt("register {} read {} after {} at {} (rolls over at {})", "register",
                         pl.col("value"), pl.col("prev_value"), iso("prev_at"),
                         pl.col("wrap"))))


def register_mismatch(slots: pl.LazyFrame, reads: pl.LazyFrame, meters: pl.LazyFrame,
                      cfg: VeeConfig) -> pl.LazyFrame:
    """Interval sum vs register difference (分时电量与示数差比对): between two consecutive total
    reads (neither estimated) whose span is fully covered by on-grid intervals, the intervals
    must add up to the register's movement (rollover allowed), within the larger of
    register_tolerance_kwh and register_tolerance_share of the movement. Intervals are compared
    as the meter recorded them, before the multiplier, like the register."""
    steps = (_register_steps(reads.filter(pl.col("source") != "estimated"), meters)
             .filter((pl.col("register") == "total") & pl.col("prev_value").is_not_null()))
    moved = (pl.when(pl.col("raw_diff") >= 0).then(pl.col("raw_diff"))
             .when(pl.col("raw_diff") + pl.col("wrap") < pl.col("wrap") // 2)
             .then(pl.col("raw_diff") + pl.col("wrap")))
    spans = (steps.with_columns((moved * 10).alias("moved_wh"))
             .filter(pl.col("moved_wh").is_not_null())
             .select("meter_id", pl.col("prev_at").alias("span_from"),
                     pl.col("read_at").alias("span_to"), "moved_wh")
             .sort("span_from"))
    iv = slots.select("meter_id", "ts", "wh", "step").sort("ts")
    matched = (iv.join_asof(spans, left_on="ts", right_on="span_from", by="meter_id",
                            strategy="backward", check_sortedness=False)
               .filter(pl.col("span_to").is_not_null() & (pl.col("ts") < pl.col("span_to"))))
    sums = (matched.group_by("meter_id", "span_from")
            .agg(pl.col("wh").sum().alias("sum_wh"), pl.len().alias("n"), pl.col("step").first(),
                 pl.col("span_to").first(), pl.col("moved_wh").first()))
    expected = ((pl.col("span_to") - pl.col("span_from")).dt.total_microseconds()
                / (pl.col("step") * US_PER_MINUTE))
    tol = pl.max_horizontal(pl.lit(cfg.register_tolerance_kwh * 1000.0),
                            pl.col("moved_wh") * cfg.register_tolerance_share)
    return (sums.filter((pl.col("n") == expected)
                        & ((pl.col("sum_wh") - pl.col("moved_wh")).abs() > tol))
            .select(_finding("register_mismatch", ts=pl.col("span_to"), ref=pl.lit("total"),
                             value=pl.col("sum_wh"),
                             detail=fmt("intervals sum to {} kWh but the total register moved "
                                              "{} kWh from {} to {}", kwh_text(pl.col("sum_wh")),
                                              kwh_text(pl.col("moved_wh")),
                                              iso("span_from"),
                                              iso("span_to")))))
