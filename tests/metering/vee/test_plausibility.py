"""The plausibility rules on hand-made frames: capacity over the interval, the register's range,
the meter's own history, held reads ignored as a basis, and the settings refused when wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from dianfei.core.errors import ValidationError
from dianfei.metering.vee.config import VeeConfig
from dianfei.metering.vee.plausibility import judge

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = VeeConfig()


def history(rows: list[tuple[str, float, float, int]]) -> pl.DataFrame:
    """(meter, hours after T0, kWh on the register, held)"""
    return pl.DataFrame(
        {"meter_id": [r[0] for r in rows], "register": "total",
         "read_at": [T0 + timedelta(hours=r[1]) for r in rows],
         "value": [round(r[2] * 100) for r in rows], "held": [r[3] for r in rows]},
        schema={"meter_id": pl.String, "register": pl.String, "read_at": pl.Datetime("us", "UTC"),
                "value": pl.Int64, "held": pl.Int64})


def keys(meter: str, *hours: float) -> pl.DataFrame:
    return pl.DataFrame({"meter_id": meter, "read_at": [T0 + timedelta(hours=h) for h in hours],
                         "register": "total"},
                        schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                "register": pl.String})


def meters(meter: str, *, digits: int = 6, multiplier: int = 1,
           capacity_kva: int | None = None) -> pl.DataFrame:
    return pl.DataFrame({"meter_id": [meter], "multiplier": [multiplier], "digits": [digits],
                         "capacity_kva": [capacity_kva]},
                        schema={"meter_id": pl.String, "multiplier": pl.Int64, "digits": pl.Int64,
                                "capacity_kva": pl.Int64})


def held(found: pl.DataFrame) -> list[tuple[str, datetime]]:
    return [(r[0], r[1]) for r in found.select("meter_id", "ts").rows()]


def test_capacity_over_the_interval() -> None:
    # 70 kW × 2 h = 140 kWh is the most: 140 passes, 140.01 is held
    h = history([("A", 0, 1000, 0), ("A", 2, 1140, 0), ("B", 0, 1000, 0), ("B", 2, 1140.01, 0)])
    found = judge(pl.concat([keys("A", 2), keys("B", 2)]), h,
                  pl.concat([meters("A"), meters("B")]), CFG)
    assert held(found) == [("B", T0 + timedelta(hours=2))]
    assert found["detail"][0].startswith("reading 1140.01 kWh after 1000.00 kWh at "
                                         "2026-03-01T00:00:00+00:00 implies 140.01 kWh in 2.00 h")
    assert found["value_wh"][0] == 1_140_010


def test_a_large_contracted_capacity_raises_the_ceiling() -> None:
    # 500 kVA × 1.5 = 750 kW: 700 kWh in an hour is possible for that service point
    h = history([("A", 0, 1000, 0), ("A", 1, 1700, 0)])
    assert judge(keys("A", 1), h, meters("A", capacity_kva=50_000), CFG).height == 0
    assert judge(keys("A", 1), h, meters("A"), CFG).height == 1


def test_a_read_that_went_backwards_is_held_a_rollover_is_not() -> None:
    h = history([("A", 0, 500, 0), ("A", 24, 400, 0), ("B", 0, 999_990, 0), ("B", 24, 5, 0)])
    found = judge(pl.concat([keys("A", 24), keys("B", 24)]), h,
                  pl.concat([meters("A"), meters("B")]), CFG)
    assert held(found) == [("A", T0 + timedelta(hours=24))]
    assert "more than half the register's range (6 digits)" in found["detail"][0]


def test_far_above_the_meters_own_history() -> None:
    # ten days of 5 kWh a day: 10 × 5 = 50 kWh a day at most, and at least 50 kWh to hold
    days = [("A", 24.0 * i, 1000 + 5 * i, 0) for i in range(10)]
    ok = history([*days, ("A", 24.0 * 10, 1045 + 50, 0)])
    high = history([*days, ("A", 24.0 * 10, 1045 + 60, 0)])
    assert judge(keys("A", 240), ok, meters("A"), CFG).height == 0
    found = judge(keys("A", 240), high, meters("A"), CFG)
    assert "above 10 × the meter's usual daily usage (5.00 kWh a day in the last 90 days)" \
        in found["detail"][0]
    # with less than implausible_min_history_days of history the rule does not judge
    short = history([("A", 0, 1000, 0), ("A", 24, 1005, 0), ("A", 48, 1065, 0)])
    assert judge(keys("A", 48), short, meters("A"), CFG).height == 0


def test_a_held_read_is_never_the_basis_of_the_next() -> None:
    # a forged 50,000 held yesterday; today's 1,010 is judged against 1,000, not 50,000
    h = history([("A", 0, 1000, 0), ("A", 24, 50_000, 1), ("A", 48, 1010, 0)])
    assert judge(keys("A", 48), h, meters("A"), CFG).height == 0
    # and a read with nothing before it cannot be judged (nothing to compare with)
    assert judge(keys("A", 0), h, meters("A"), CFG).height == 0


@pytest.mark.parametrize(("raw", "message"), [
    ({"implausible_max_kw": 0}, r"\[vee\] implausible_max_kw must be positive"),
    ({"implausible_history_days": "a lot"}, r"\[vee\] implausible_history_days must be like 90"),
    ({"implausible_min_kwh": -1}, r"\[vee\] implausible_min_kwh must not be negative"),
])
def test_bad_settings_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VeeConfig.from_raw({"vee": raw})
