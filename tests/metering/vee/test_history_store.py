"""A long history through the monthly interval store: meters in any order, overlapping files and
a file covering months give the same exact figures as one clean pass, and nothing is stored
twice. Files are per business month and meter group, not per day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering import intervals
from dianfei.metering.imports import import_file
from dianfei.metering.vee import pipeline, service
from dianfei.metering.vee.config import VeeConfig
from dianfei.sim.households import household_history, write_csv
from tests.factories import Person, load_people
from tests.metering.vee.conftest import NOW


def test_overlapping_shuffled_history_files_count_exactly_once(db: Database,
                                                               tmp_path: Path) -> None:
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    hist = household_history(3, 70, start=date(2026, 1, 10), seed=5, spikes=2, gaps=2,
                             zero_runs=1)
    rename = {"H0000": "MC1", "H0001": "MC2", "H0002": "MC3"}
    full = hist.intervals.with_columns(pl.col("meter_id").replace_strict(rename))
    # file A: the first 45 days, meters in reverse order; file B: days 30–70 shuffled
    split_a = full["ts"].min() + pl.duration(days=45)  # type: ignore[operator]
    split_b = full["ts"].min() + pl.duration(days=30)  # type: ignore[operator]
    a = full.filter(pl.col("ts") < pl.select(split_a).item()).sort("meter_id", "ts",
                                                                    descending=[True, False])
    b = full.filter(pl.col("ts") >= pl.select(split_b).item()).sample(fraction=1.0,
                                                                      shuffle=True, seed=1)
    paths = []
    for name, part in (("a.csv", a), ("b.csv", b)):
        path = tmp_path / name
        write_csv(type(hist)(part, hist.kinds, hist.spikes, hist.gaps, hist.zero_runs,
                             hist.high_days, hist.low_days), str(path))
        paths.append(path)
    results = [import_file(db, "intervals", p, clock=NOW, interval_minutes=30)
               for p in (*paths, paths[0])]
    overlap = a.join(b, on=["meter_id", "ts"]).height
    assert overlap > 0
    assert [r.accepted for r in results] == [a.height, b.height - overlap, 0]
    assert [r.duplicates for r in results] == [0, overlap, a.height]
    assert all(r.rejected == 0 for r in results)

    stored = intervals.scan(db).collect()
    assert stored.height == full.height == stored.unique(["meter_id", "ts"]).height
    expected = pipeline.run(full.select("meter_id", "ts", pl.lit(30, pl.Int16).alias("minutes"),
                                        "wh").lazy(), VeeConfig(), "Asia/Shanghai").counts
    report = service.report(db)
    assert {k: report[k] for k in expected} == expected
    assert expected["gap_events"] >= 2 and expected["zero_runs"] >= 1
    # a window of days reads only what it needs and counts the same as the pure pipeline
    window = service.report(db, day_from=date(2026, 2, 1), day_to=date(2026, 2, 28))
    assert window["intervals"] == full.filter(
        pl.col("ts").dt.convert_time_zone("Asia/Shanghai").dt.month() == 2).height
    # files are per business month and meter group (3 months here), one set per import
    with db.engine.connect() as conn:
        paths_ = [str(r[0]) for r in conn.execute(text("SELECT path FROM interval_files"))]
    months = {p.split("/")[0] for p in paths_}
    assert months == {"month=2026-01", "month=2026-02", "month=2026-03"}
    groups = {intervals.meter_group(m) for m in rename.values()}
    assert len(paths_) <= 2 * len(months) * len(groups)
