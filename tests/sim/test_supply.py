"""Meters behind an open switch (sim.as_metered): a meter registers nothing while its supply is
off, then moves on from where it stopped — monthly and daily frozen reads alike."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.core.clock import Period
from dianfei.sim import Utility, as_metered, build_utility, daily_reads, monthly_reads
from dianfei.sim.consumption import prepaid_index, registers_on

SPANS = {"customer_id": pl.String, "off_from": pl.Date, "off_until": pl.Date}


@pytest.fixture(scope="module")
def town() -> Utility:
    return build_utility(2_000, seed=5)


def spans(rows: list[tuple[str, date, date | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SPANS, orient="row")


def shown(reads: pl.DataFrame, meter: str, register: str = "total") -> int | None:
    row = reads.filter((pl.col("meter_id") == meter) & (pl.col("register") == register))
    return None if row.height == 0 else int(row["value"].item())


def test_without_spans_before_the_reads_nothing_changes(town: Utility) -> None:
    reads = monthly_reads(town, Period(2025, 2))
    cid = town.customers["customer_id"][3]
    assert as_metered(town, reads, spans([])).equals(reads)
    # cut on the reads' own day or later: not yet
    assert as_metered(town, reads, spans([(cid, date(2025, 3, 1), None)])).equals(reads)


def test_a_meter_stands_still_while_off_and_moves_on_after(town: Utility) -> None:
    m = town.model
    i = next(int(k) for k in range(100) if shown(monthly_reads(town, Period(2025, 1)),
                                                  m.meter_ids[k]) is not None
             and shown(monthly_reads(town, Period(2025, 3)), m.meter_ids[k]) is not None)
    cid, meter = town.customers["customer_id"][i], m.meter_ids[i]
    # cut on 20 January, restored on 5 March
    off = spans([(cid, date(2025, 1, 20), date(2025, 3, 5))])
    frozen = int(registers_on(town, date(2025, 1, 20), np.array([i]))["value"][0])
    jan = as_metered(town, monthly_reads(town, Period(2025, 1)), off)
    feb = as_metered(town, monthly_reads(town, Period(2025, 2)), off)
    mar = as_metered(town, monthly_reads(town, Period(2025, 3)), off)
    modulus = int(m.modulus[i])
    assert shown(jan, meter) == shown(feb, meter) == frozen % modulus
    # March: only what it used from the 5th on
    r = registers_on(town, date(2025, 3, 5), np.array([i]))["value"][0]
    r_apr = registers_on(town, date(2025, 4, 1), np.array([i]))["value"][0]
    assert shown(mar, meter) == (frozen + (r_apr - r)) % modulus
    assert jan.filter(pl.col("meter_id") == meter)["source"].to_list() == ["ami"]
    # every other meter reads as the simulation says
    others = pl.col("meter_id") != meter
    assert feb.filter(others).equals(monthly_reads(town, Period(2025, 2)).filter(others))


def test_daily_frozen_reads_stop_and_restart_and_meet_the_monthly_one(town: Utility) -> None:
    m = town.model
    i = int(prepaid_index(town)[0])
    cid, meter = town.customers["customer_id"][i], m.meter_ids[i]
    off = spans([(cid, date(2025, 2, 3), date(2025, 2, 8))])
    days = [date(2025, 2, 1) + timedelta(days=k) for k in range(28)] + [date(2025, 3, 1)]
    values = [shown(as_metered(town, monthly_reads(town, Period(2025, 2)) if d.day == 1
                               and d.month == 3 else daily_reads(town, d), off), meter)
              for d in days]
    # the reads of 4–8 February stand at the value of the 3rd, then move on
    assert values[2] == values[3] == values[7]
    assert values[8] > values[7]
    assert all(b >= a for a, b in itertools.pairwise(values))


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(0, 80), length=st.integers(1, 60), restored=st.booleans(),
       pick=st.integers(0, 1_999))
def test_registers_stay_monotone_and_add_up(town: Utility, cut: int, length: int,
                                            restored: bool, pick: int) -> None:
    m = town.model
    # a time-of-use meter most of the time: its registers must still add up to its total
    candidates = np.concatenate([m.idx4, m.idx2, [pick]])
    i = int(candidates[pick % candidates.shape[0]])
    cid, meter = town.customers["customer_id"][i], m.meter_ids[i]
    first = date(2025, 1, 2) + timedelta(days=cut)
    off = spans([(cid, first, first + timedelta(days=length) if restored else None)])
    before: dict[str, int] = {}
    for period in (Period(2025, 1), Period(2025, 2), Period(2025, 3), Period(2025, 4)):
        reads = as_metered(town, monthly_reads(town, period), off).filter(
            pl.col("meter_id") == meter)
        values = dict(zip(reads["register"].to_list(), reads["value"].to_list(), strict=True))
        tou = [values[r] for r in ("sharp", "peak", "flat", "valley") if r in values]
        if tou and "total" in values:
            assert sum(tou) == values["total"]
        for reg, v in values.items():
            if reg != "demand_kw" and reg in before and v < before[reg]:
                # only a roll-over (翻转) may go down
                assert before[reg] - v > int(m.modulus[i]) // 2, (reg, before[reg], v)
            before[reg] = v


def test_demand_is_zero_for_a_month_without_power(town: Utility) -> None:
    m = town.model
    i = int(m.idx4[0])
    cid, meter = town.customers["customer_id"][i], m.meter_ids[i]
    reads = as_metered(town, monthly_reads(town, Period(2025, 2)),
                       spans([(cid, date(2025, 1, 25), None)]))
    assert shown(reads, meter, "demand_kw") == 0
    part = as_metered(town, monthly_reads(town, Period(2025, 2)),
                      spans([(cid, date(2025, 2, 25), None)]))
    assert shown(part, meter, "demand_kw") == shown(monthly_reads(town, Period(2025, 2)), meter,
                                                    "demand_kw")


def test_overlapping_spans_are_refused(town: Utility) -> None:
    cid = town.customers["customer_id"][0]
    with pytest.raises(ValueError, match="overlap"):
        as_metered(town, monthly_reads(town, Period(2025, 2)), spans([
            (cid, date(2025, 1, 10), date(2025, 1, 20)), (cid, date(2025, 1, 15), None)]))
    with pytest.raises(ValueError, match="columns"):
        as_metered(town, monthly_reads(town, Period(2025, 2)),
                   pl.DataFrame({"customer_id": [cid]}))


def test_registers_asked_out_of_order_are_those_of_a_fresh_county() -> None:
    """The month's running day weights are kept at a few positions (and a few months' totals):
    days asked back and forth, across months, give the registers a county asked once gives."""
    asked = [date(2025, 2, 15), date(2025, 2, 3), date(2025, 2, 20), date(2025, 1, 9),
             date(2025, 2, 3), date(2025, 2, 21), date(2025, 3, 2), date(2025, 2, 14),
             date(2025, 1, 31), date(2025, 2, 15)]
    custs = np.arange(0, 600, 7, dtype=np.int64)
    reused = build_utility(600, seed=11)
    for day in asked:
        fresh = build_utility(600, seed=11)
        assert registers_on(reused, day, custs).equals(registers_on(fresh, day, custs)), day


def test_a_day_shown_twice_is_shown_alike_and_spans_ends_are_kept() -> None:
    """The registers of a span's ends are kept on the county (asked again every later day), the
    reads' own day is not (asked once per day, it grew the store every day)."""
    town = build_utility(2_000, seed=5)
    i = int(prepaid_index(town)[1])
    cid = town.customers["customer_id"][i]
    off = spans([(cid, date(2025, 2, 3), date(2025, 2, 8)), (cid, date(2025, 2, 12), None)])
    first = as_metered(town, daily_reads(town, date(2025, 2, 16)), off)
    kept = town._cache["supply_registers"]
    assert sorted(set(kept["day"].to_list())) == [date(2025, 2, 3), date(2025, 2, 8),
                                                  date(2025, 2, 12)]
    assert as_metered(town, daily_reads(town, date(2025, 2, 16)), off).equals(first)
    fresh = build_utility(2_000, seed=5)
    assert as_metered(fresh, daily_reads(fresh, date(2025, 2, 16)), off).equals(first)
