"""A run over a window of days judges the window's edges as a run over the whole history does
(issue 16): a gap or a run of zeros that began before the window keeps its true start — found
once, keyed the same — and a gap that ends after the window is seen from inside it. Nightly runs
over one day each leave nothing for a run over the whole history to add. The figures of a
window stay those of its own rows (``--from/--to`` in docs/vee.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering.vee import service
from tests.metering.vee.conftest import NOW, Store

START = datetime(2025, 11, 30, 16, tzinfo=UTC)  # 1 December 2025, 00:00 in Beijing
DAYS = [date(2025, 12, 1) + timedelta(days=i) for i in range(10)]
SLOTS = 48  # half-hourly


def slot(day: int, k: int) -> int:
    return day * SLOTS + k


def at(day: int, k: int) -> datetime:
    return START + timedelta(minutes=30 * slot(day, k))


def usual(k: int) -> int:
    return 200 + (600 if 36 <= k % SLOTS < 44 else 0) + (k % 7) * 10


@pytest.fixture
def edges(people_db: Database, store_intervals: Store) -> Database:
    """MC1: a short gap across the midnight into day 2 (23:30–00:00), a gap from 22:00 on day 3
    to 01:30 on day 5 (all of day 4 missing), zeros from 12:00 on day 6 to 06:00 on day 8.
    MC2: vacant (zeros) from the store's first interval to 05:00 on day 2, then ordinary."""
    mc1: list[int | None] = [usual(k) for k in range(10 * SLOTS)]
    for k in (slot(1, 47), slot(2, 0)):
        mc1[k] = None
    for k in range(slot(3, 44), slot(5, 4)):
        mc1[k] = None
    for k in range(slot(6, 24), slot(8, 13)):
        mc1[k] = 0
    mc2 = [0 if k <= slot(2, 10) else usual(k) for k in range(10 * SLOTS)]
    store_intervals("MC1", mc1, minutes=30, start=START)
    store_intervals("MC2", mc2, minutes=30, start=START)
    return people_db


EDGE_EVENTS = {
    ("gap", "MC1", at(1, 47)), ("gap", "MC1", at(3, 44)),
    ("zero_run", "MC1", at(6, 24)), ("zero_run", "MC2", START),
}


def events(db: Database, day: date | None = None) -> set[tuple[str, str, datetime]]:
    window = {"day_from": day, "day_to": day} if day else {}
    found = service.findings(db, **window)
    return {(r["rule"], r["meter_id"], r["ts"]) for r in found.iter_rows(named=True)
            if r["rule"] in ("gap", "zero_run")}


def test_each_day_alone_finds_the_events_crossing_its_edges_with_their_true_start(
        edges: Database) -> None:
    db = edges
    assert events(db) == EDGE_EVENTS
    by_day = {d: events(db, d) for d in DAYS}
    assert set().union(*by_day.values()) == EDGE_EVENTS
    # the long gap from both sides: its first day sees where it ends, its last where it began
    assert ("gap", "MC1", at(3, 44)) in by_day[DAYS[3]] & by_day[DAYS[5]]
    # the day with no reading of MC1 judges nothing of it
    assert {e for e in by_day[DAYS[4]] if e[1] == "MC1"} == set()
    # a vacancy is one finding from its first zero, not one more each midnight
    assert {e for e in by_day[DAYS[1]] if e[1] == "MC2"} == {("zero_run", "MC2", START)}
    assert ("zero_run", "MC1", at(6, 24)) in by_day[DAYS[7]] & by_day[DAYS[8]]


def test_a_window_counts_its_own_rows_only(edges: Database) -> None:
    """The figures do not change with the context: the gap entering day 5 is not one of its."""
    figures = service.report(edges, day_from=DAYS[5], day_to=DAYS[5])
    assert (figures["gap_events"], figures["missing_intervals"]) == (0, 0)
    assert figures["intervals"] == SLOTS + SLOTS - 4  # MC2, and MC1 from 02:00
    assert service.report(edges, day_from=DAYS[7], day_to=DAYS[7])["zero_runs"] == 1


def test_nightly_runs_leave_nothing_for_a_run_over_the_whole_history(edges: Database) -> None:
    db = edges
    for day in DAYS:
        service.run_vee(db, NOW, day_from=day, day_to=day)
    with db.engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT rule, meter_id, ts FROM vee_findings WHERE rule IN ('gap', 'zero_run')")).all()
        estimated = conn.execute(text(
            "SELECT COUNT(*) FROM vee_estimates WHERE meter_id = 'MC1'")).scalar_one()
    # each event stored once, under the key the whole history gives it
    assert len(stored) == len(EDGE_EVENTS)
    assert estimated == 2 + (slot(5, 4) - slot(3, 44))
    whole = service.run_vee(db, NOW)
    assert whole.estimates_added == 0
    with db.engine.connect() as conn:
        added = conn.execute(text(
            "SELECT COUNT(*) FROM vee_findings WHERE run_id = :r AND rule IN ('gap', 'zero_run')"),
            {"r": whole.run_id}).scalar_one()
    assert added == 0


def test_the_nightly_run_examines_the_days_that_arrived_and_nothing_twice(
        people_db: Database, store_intervals: Store) -> None:
    db = people_db
    day1_hole = slot(0, 5)
    store_intervals("MC1", [None if k == day1_hole else usual(k) for k in range(3 * SLOTS)],
                    minutes=30, start=START)
    first = service.run_pending(db, NOW)
    assert first["batches"] == 1
    assert [(s["from"], s["to"]) for s in first["spans"]] == [("2025-12-01", "2025-12-03")]
    assert service.run_pending(db, NOW) == {"batches": 0, "spans": [], "findings_added": 0,
                                            "estimates_added": 0}
    # the next night: day 5 arrives, after a day with nothing; a late file fills day 1's hole,
    # twice with different values (a conflicting duplicate)
    store_intervals("MC1", [usual(k) for k in range(SLOTS)], minutes=30, start=at(4, 0))
    store_intervals("MC1", [999], minutes=30, start=at(0, 5),
                    extra=[("MC1", at(0, 5), 777)])
    night = service.run_pending(db, NOW)
    assert night["batches"] == 2
    assert [(s["from"], s["to"]) for s in night["spans"]] == [
        ("2025-12-01", "2025-12-01"), ("2025-12-05", "2025-12-05")]
    # the gap of day 4 found from day 5 alone, with its true start
    assert events(db) == {("gap", "MC1", at(3, 0))}
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT rule, ts FROM vee_findings ORDER BY rule, ts")).all()
    assert [r[0] for r in stored] == ["conflicting_duplicate", "gap", "gap"]
    assert service.run_pending(db, NOW)["batches"] == 0


def test_a_run_over_the_whole_store_examines_every_batch(
        people_db: Database, store_intervals: Store) -> None:
    store_intervals("MC1", [usual(k) for k in range(SLOTS)], minutes=30, start=START)
    service.run_vee(people_db, NOW)
    assert service.run_pending(people_db, NOW)["batches"] == 0


def test_the_search_before_a_window_stops_at_a_meters_installation(
        edges: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter installed on the window's first day has nothing before it: no file is read for
    it (the import refuses readings before installation)."""
    import polars as pl

    from dianfei.metering import intervals as store

    scans: list[int] = []
    real = store._context_frame

    def counted(*args: object, **kwargs: object) -> pl.DataFrame:
        scans.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_context_frame", counted)
    ids = pl.Series(["MC1"])
    installed = pl.DataFrame({"meter_id": ["MC1"], "since": [at(5, 0)]})
    assert store.lead_in(edges, at(5, 0), ids, installed).height == 0
    assert scans == [1]  # only the empty frame it answers with
    scans.clear()
    # installed earlier: the search reads back to the reading before the gap of day 4
    earlier = pl.DataFrame({"meter_id": ["MC1"], "since": [START]})
    rows = store.lead_in(edges, at(5, 0), ids, earlier)
    assert rows["ts"].to_list() == [at(3, 43)] and len(scans) == 2
