"""``dianfei import stations FILE``: each supply station's metered supply per month (台区供电量),
the supply side of station line loss (台区线损) that risk's theft warnings compare with the
station's customers' billed energy (docs/risk-insight.md).

stations.csv: ``station_id, period, kwh`` — the station (a ``supply_stations`` id), the month
(YYYY-MM; ``2026/3`` is read as 2026-03) and the energy the station's meter measured entering the
station that month, in kWh with at most 2 decimal places, greater than zero. Extra columns are
ignored; CSV (UTF-8 with or without BOM, or GBK) or Parquet. A station meter read daily is
summed to the month before import.

Every data row is accepted, rejected with a reason (quarantine table and ``FILE.rejected.csv``)
or counted as a duplicate of what is stored, so importing the same file again changes nothing:

- ``missing_value``, ``bad_period``, ``bad_number`` / ``too_many_decimals`` /
  ``negative_value`` / ``value_out_of_range`` (kwh not a positive decimal with ≤ 2 places),
  ``unknown_station`` (import customers first: the stations come with them);
- the same station and month again: same kWh → duplicate; other kWh → ``conflicts_with_stored``,
  or within the file ``conflicts_within_file`` (the first line wins). A stored month is never
  overwritten: a corrected figure is a decision, not a re-import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from dianfei.core.clock import Clock
from dianfei.metering.csvread import DEFAULT_CHUNK_BYTES
from dianfei.metering.imports import as_text, import_table_file
from dianfei.metering.ingest import LINE, Counts, IngestResult, RejectSink, rejected_columns
from dianfei.metering.parsing import (
    DETAIL,
    REASON,
    flag,
    parse_decimal_units,
    quoted,
    require_text,
    start_reasons,
)

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Engine

    from dianfei.db.engine import Database

KIND = "stations"
COLUMNS = ("station_id", "period", "kwh")


def import_stations(db: Database, path: Path, *, clock: Clock, encoding: str = "utf-8",
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> IngestResult:
    """Import a stations.csv (or .parquet) file; see the module docstring."""

    def make(conn: Connection, batch_id: str, sink: RejectSink) -> StationsLoader:
        return StationsLoader(conn, batch_id, sink)

    return import_table_file(db, KIND, path, required=COLUMNS, make_loader=make, clock=clock,
                             encoding=encoding, chunk_bytes=chunk_bytes)


def parse_stations(chunk: pl.DataFrame) -> pl.DataFrame:
    """Column checks of a chunk of stations.csv: each bad row gets its reason; good rows get
    ``_period`` (YYYY-MM) and ``_kwh`` (0.01 kWh)."""
    import polars as pl

    f = start_reasons(as_text(chunk))
    f = require_text(f, "station_id", max_len=32)
    period = pl.col("period").fill_null("").str.strip_chars().str.replace("/", "-", literal=True)
    f = f.with_columns(period.str.replace(r"^([0-9]{4})-([1-9])$", "${1}-0${2}").alias("_period"))
    f = flag(f, ~pl.col("_period").str.contains(r"^[0-9]{4}-(0[1-9]|1[0-2])$"), "bad_period",
             pl.lit("period is not YYYY-MM: ") + quoted("period"))
    f = parse_decimal_units(f, "kwh", "_kwh", places=2, max_int_digits=12, allow_negative=False)
    return flag(f, pl.col("_kwh") <= 0, "value_out_of_range",
                pl.lit("kwh must be greater than zero: ") + quoted("kwh"))


@dataclass
class StationsLoader:
    """Checks each chunk as columns; :meth:`finish` settles what needs the whole file (the same
    station and month twice) and what is stored, then writes the new months."""

    conn: Connection
    batch_id: str
    sink: RejectSink
    counts: Counts = field(default_factory=Counts)
    _good: list[pl.DataFrame] = field(default_factory=list)
    _cols: list[str] = field(default_factory=list)

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        from dianfei.customers.service import known_stations

        f = parse_stations(chunk)
        ids = f.filter(pl.col(REASON).is_null())["station_id"].unique().to_list()
        known = pl.Series(sorted(known_stations(self.conn, ids)), dtype=pl.String)
        f = flag(f, ~pl.col("station_id").is_in(known.implode()), "unknown_station",
                 pl.lit("no supply station ") + quoted("station_id")
                 + pl.lit(" (import customers first: stations come with them)"))
        self._cols = rejected_columns(chunk)
        bad = f.filter(pl.col(REASON).is_not_null()).select(self._cols)
        self.sink.add(bad)
        self.counts.add(bad.height, 0, bad.height, 0)
        self._good.append(f.filter(pl.col(REASON).is_null()).select(*self._cols, "_period",
                                                                     "_kwh"))

    def finish(self) -> None:
        import polars as pl

        if not self._good:
            return
        rows = pl.concat(self._good, how="vertical_relaxed").sort(LINE)
        self._good = []
        n = rows.height
        rejected: list[pl.DataFrame] = []
        key = ["station_id", "_period"]
        rows = rows.with_columns(pl.col(LINE).first().over(key).alias("_first"),
                                 pl.col("_kwh").first().over(key).alias("_first_kwh"))
        later = rows.filter(pl.col(LINE) != pl.col("_first"))
        same_later = later.filter(pl.col("_kwh") == pl.col("_first_kwh"))
        rejected.append(_reject(later.filter(pl.col("_kwh") != pl.col("_first_kwh")),
                                "conflicts_within_file",
                                pl.lit("line ") + pl.col("_first").cast(pl.String)
                                + pl.lit(" of this file has another kwh for station ")
                                + pl.col("station_id") + pl.lit(" in ") + pl.col("_period")))
        rows = rows.filter(pl.col(LINE) == pl.col("_first"))
        stored = stored_months(self.conn, rows["station_id"].unique().to_list())
        rows = rows.join(stored, left_on=key, right_on=["station_id", "period"], how="left")
        known = rows.filter(pl.col("_stored").is_not_null())
        same_stored = known.filter(pl.col("_stored") == pl.col("_kwh"))
        rejected.append(_reject(known.filter(pl.col("_stored") != pl.col("_kwh")),
                                "conflicts_with_stored",
                                pl.lit("station ") + pl.col("station_id") + pl.lit(" ")
                                + pl.col("_period") + pl.lit(" is stored with kwh ")
                                + (pl.col("_stored") // 100).cast(pl.String) + pl.lit(".")
                                + (pl.col("_stored") % 100).cast(pl.String).str.zfill(2)))
        new = rows.filter(pl.col("_stored").is_null())
        rej = pl.concat([x.select(self._cols) for x in rejected], how="vertical_relaxed")
        self.sink.add(rej)
        if new.height:
            from dianfei.db.bulk import write_frame

            write_frame(self.conn, "station_supply", new.select(
                "station_id", pl.col("_period").alias("period"), pl.col("_kwh").alias("kwh"),
                pl.lit(self.batch_id).alias("batch_id")))
        self.counts.add(n, new.height, rej.height, same_later.height + same_stored.height)


def _reject(rows: pl.DataFrame, reason: str, detail: pl.Expr) -> pl.DataFrame:
    import polars as pl

    return rows.with_columns(pl.lit(reason).alias(REASON), detail.alias(DETAIL))


def stored_months(conn: Connection, station_ids: list[str]) -> pl.DataFrame:
    """station_id, period, _stored (0.01 kWh) of the stored months of ``station_ids``."""
    import polars as pl

    from dianfei.db.frames import read_frame
    from dianfei.db.lists import any_of

    member, params = any_of(conn, "station_id", "stations", sorted(set(station_ids)))
    return read_frame(conn, f"SELECT station_id, period, kwh AS _stored FROM station_supply "
                      f"WHERE {member}", params,
                      schema={"station_id": pl.String, "period": pl.String, "_stored": pl.Int64})


def station_supply(engine: Engine, since: str) -> pl.DataFrame:
    """station_id, period, kwh (0.01 kWh) of every stored station month from ``since``
    (YYYY-MM) on, by station and month."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(engine, "SELECT station_id, period, kwh FROM station_supply "
                      "WHERE period >= :p ORDER BY station_id, period", {"p": since},
                      schema={"station_id": pl.String, "period": pl.String, "kwh": pl.Int64})
