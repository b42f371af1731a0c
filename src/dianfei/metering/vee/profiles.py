"""Kept meter profiles (用电特征): each meter's usual highs and usual days over its last months.

The spike rule judges an interval against the meter's usual high at that time of day in that
season, and the usage rules a day against its usual days in that season (``rules.py``). Computed
only from the data a run examines, a run over one day — the daily run of a utility with a
million meters, which cannot re-read two years every night — had nothing to judge by: spikes
only by the safety floor, high and low usage not at all. A profile keeps the same statistics,
computed the same way (``rules.spike_stats``, ``rules.usage_stats``) over the meter's last
``months`` of stored data, and a run uses, per meter and cell, its window's statistics or the
profile's — whichever counts more intervals (or days). A run over the whole history therefore
judges exactly as without profiles; a run over yesterday judges by the year before it.

``dianfei vee profile [--as-of D] [--months 12]`` (and the monthly ``vee_profile`` job) builds
them meter group by meter group of the interval store (bounded memory), each group in its own
transaction: a meter's rows are replaced whole, and a meter with no data in the window loses its
old profile. Profiles are part of what ``vee report``/``findings`` check before they answer from
the newest run (``results.py``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import Connection, text

from dianfei.metering.vee import rules
from dianfei.metering.vee.config import VeeConfig

if TYPE_CHECKING:
    from dianfei.db.engine import Database

TABLE = "vee_meter_profiles"


def window(as_of: date, months: int) -> tuple[date, date]:
    """The business days a profile as of ``as_of`` is made of: the first day of the month
    ``months`` months before ``as_of``'s, up to the day before ``as_of``."""
    if not 1 <= months <= 60:
        from dianfei.core.errors import ValidationError

        raise ValidationError(f"--months must be 1..60, got {months}")
    index = as_of.year * 12 + as_of.month - 1 - months
    return date(index // 12, index % 12 + 1, 1), as_of - timedelta(days=1)


def compute(prepared: pl.DataFrame, cfg: VeeConfig, tz: str) -> pl.DataFrame:
    """The profile rows (:data:`rules.PROFILE_SCHEMA`) of the meters in ``prepared``
    (``rules.prepare``'s frame)."""
    lf = prepared.lazy()
    spikes = rules.spike_rows(lf, cfg)
    days = rules.usage_days(lf, tz)
    parts = [
        rules.spike_stats(spikes, ["meter_key", "season", "band"], "", cfg)
        .with_columns(pl.lit("spike_cell").alias("kind")),
        rules.spike_stats(spikes, ["meter_key", "band"], "", cfg)
        .with_columns(pl.lit("spike_band").alias("kind"), pl.lit(-1, pl.Int32).alias("season")),
        rules.usage_stats(days, ["meter_key", "season"], "")
        .with_columns(pl.lit("usage_season").alias("kind"), pl.lit(-1, pl.Int32).alias("band")),
        rules.usage_stats(days, ["meter_key"], "")
        .with_columns(pl.lit("usage_all").alias("kind"), pl.lit(-1, pl.Int32).alias("season"),
                      pl.lit(-1, pl.Int32).alias("band")),
    ]
    ids = lf.select("meter_key", "meter_id").unique()
    cols = list(rules.PROFILE_SCHEMA)
    frames = pl.collect_all([p.join(ids, on="meter_key").select(
        *[pl.col(c).cast(t) for c, t in rules.PROFILE_SCHEMA.items()]) for p in parts])
    return pl.concat(frames).select(cols).sort("meter_id", "kind", "season", "band")


def replace(conn: Connection, meter_ids: list[str], rows: pl.DataFrame, *, data_from: date,
            data_to: date, built_at: datetime) -> None:
    """The profiles of ``meter_ids`` replaced by ``rows`` (in the caller's transaction)."""
    from dianfei.db.bulk import write_frame
    from dianfei.db.lists import any_of

    member, bound = any_of(conn, "meter_id", "ids", meter_ids)
    conn.execute(text(f"DELETE FROM {TABLE} WHERE {member}"), bound)
    if rows.height:
        write_frame(conn, TABLE, rows.with_columns(
            pl.lit(data_from).alias("data_from"), pl.lit(data_to).alias("data_to"),
            pl.lit(built_at).cast(pl.Datetime("us", "UTC")).alias("built_at")))


def kept(db: Database, meter_ids: list[str] | None = None) -> pl.DataFrame:
    """The kept profiles (:data:`rules.PROFILE_SCHEMA`), of ``meter_ids`` or of every meter."""
    from dianfei.db.frames import read_frame
    from dianfei.db.lists import any_of

    sql = f"SELECT meter_id, kind, season, band, hi, lo, med, n FROM {TABLE}"
    params: dict[str, Any] = {}
    if meter_ids is not None:
        member, params = any_of(db.engine, "meter_id", "ids", meter_ids)
        sql += f" WHERE {member}"
    frame = read_frame(db.engine, sql, params, schema=dict(rules.PROFILE_SCHEMA))
    return frame.cast(rules.PROFILE_SCHEMA)


def built(db: Database) -> dict[str, Any]:
    """What is kept: meters, rows, the newest window and build instant (``vee profile``)."""
    with db.engine.connect() as conn:
        row = conn.execute(text(
            f"SELECT count(DISTINCT meter_id), count(*), max(data_from), max(data_to), "
            f"max(built_at) FROM {TABLE}")).one()
    return {"meters": int(row[0]), "rows": int(row[1]),
            "data_from": str(row[2]) if row[2] is not None else None,
            "data_to": str(row[3]) if row[3] is not None else None,
            "built_at": str(row[4]) if row[4] is not None else None}
