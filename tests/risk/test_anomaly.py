"""Theft and anomaly warnings on the synthetic county's planted tampering (docs/sim.md: a
``tamper`` meter records 30–60 % of the usage from ``tamper_month`` on)."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.risk import anomaly
from tests.risk.sim_history import county, months_after_start

AS_OF = Period(2026, 9)


def truth(scored: pl.DataFrame, facts: pl.DataFrame, as_of: Period) -> pl.Series:
    """Tampering in progress at the end of ``as_of`` (begun in or before that month)."""
    j = scored.select("account_id").join(facts, on="account_id", how="left")
    return ((j["behaviour"] == "tamper")
            & (j["tamper_month"] <= months_after_start(as_of)).fill_null(False))


def test_points_score_finds_the_planted_tampering() -> None:
    from tests.risk.sim_history import county_tou

    history, facts = county()
    scored = anomaly.score(anomaly.features(history, facts, AS_OF))
    m = anomaly.evaluate(scored["score"], truth(scored, facts, AS_OF))
    # measured 0.959 / 0.65 on the kWh alone, 0.976 / 0.775 with the valley share (the sim's
    # night bypasses; docs/risk-insight.md); floors leave room for noise
    assert m["positives"] >= 30
    assert m["auc"] >= 0.93
    assert m["precision_top"] >= 0.6
    tou, _ = county_tou()
    both = anomaly.score(anomaly.features(history, facts, AS_OF, tou=tou))
    m2 = anomaly.evaluate(both["score"], truth(both, facts, AS_OF))
    assert m2["auc"] >= 0.95 and m2["auc"] > m["auc"]
    assert m2["precision_top"] >= 0.7


def test_isolation_forest_is_a_second_view_well_above_chance() -> None:
    history, facts = county()
    feats = anomaly.features(history, facts, AS_OF)
    m = anomaly.evaluate(anomaly.isolation_scores(feats), truth(feats, facts, AS_OF))
    assert m["auc"] >= 0.85


def test_supervised_model_learns_from_inspections_and_needs_enough_of_them() -> None:
    history, facts = county()
    # given inspections of the top 3 % of the worklist six months earlier, outcome = the truth
    earlier = Period(2026, 3)
    feats = anomaly.score(anomaly.features(history, facts, earlier))
    visited = feats.sort("score", descending=True).head(120)
    train = visited.with_columns(truth(visited, facts, earlier).alias("theft"))
    assert anomaly.supervised_scores(train.head(10), feats) is None  # too few to learn from
    assert anomaly.supervised_scores(train.with_columns(pl.lit(True).alias("theft")),
                                     feats) is None  # one outcome only
    now = anomaly.score(anomaly.features(history, facts, AS_OF))
    sup = anomaly.supervised_scores(train, now)
    assert sup is not None
    assert anomaly.evaluate(sup, truth(now, facts, AS_OF))["auc"] >= 0.9


def test_no_look_ahead_months_after_as_of_change_nothing() -> None:
    history, facts = county()
    later = pl.col("period") > str(AS_OF)
    scrambled = history.with_columns(pl.when(later).then(pl.col("kwh") * 7 + 5)
                                     .otherwise(pl.col("kwh")).alias("kwh"))
    a = anomaly.score(anomaly.features(history, facts, AS_OF)).sort("account_id")
    b = anomaly.score(anomaly.features(scrambled, facts, AS_OF)).sort("account_id")
    assert a.equals(b)


def months(values: list[int], account: str = "A1", first: Period = Period(2025, 1)) -> pl.DataFrame:
    rows, p = [], first
    for v in values:
        rows.append({"account_id": account, "period": str(p), "kwh": v})
        p = p.next()
    return pl.DataFrame(rows, schema={"account_id": pl.String, "period": pl.String,
                                      "kwh": pl.Int64})


def peers(n: int, level: int, months_n: int) -> pl.DataFrame:
    """``n`` steady neighbours of the same class with a summer peak (the class moves)."""
    season = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2] * 3
    return pl.concat([months([int(level * season[i] * (1 + 0.01 * (k % 5)))
                              for i in range(months_n)], f"P{k:03d}") for k in range(n)])


FACTS = pl.DataFrame({"account_id": ["A1", *[f"P{k:03d}" for k in range(40)]],
                      "customer_class": ["residential"] * 41})


def test_zero_run_on_an_occupied_profile_fires() -> None:
    season = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
    me = months([int(20_000 * s) for s in season[:9]] + [0, 0, 0])
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                         Period(2025, 12)))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert a1["zero_run"] == 3
    assert "3 months at zero on an occupied profile" in a1["reasons"]
    assert a1["score"] == out["score"].max()


def test_months_without_power_are_no_evidence() -> None:
    # the same zero run, but the supply was cut for arrears in October and is still off
    season = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
    me = months([int(20_000 * s) for s in season[:9]] + [0, 0, 0])
    off = pl.DataFrame({"account_id": ["A1"] * 3, "period": ["2025-10", "2025-11", "2025-12"]})
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                         Period(2025, 12), interrupted=off))
    # no month of the recent window is evidence: A1 is not on the list at all
    assert "A1" not in out["account_id"].to_list()
    # cut off in December only: October and November (zero, with power) still fire
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                         Period(2025, 12), interrupted=off.tail(1)))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert a1["zero_run"] == 2 and a1["score"] == out["score"].max()
    # the neighbours score as without it
    plain = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                           Period(2025, 12)))
    assert plain.filter(pl.col("account_id") != "A1").sort("account_id")["score"].to_list() == \
        out.filter(pl.col("account_id") != "A1").sort("account_id")["score"].to_list()


def test_flat_line_fires_when_the_class_moves_and_the_meter_does_not() -> None:
    season = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
    me = months([int(20_000 * s) for s in season[:8]] + [25_000] * 4)
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                         Period(2025, 12)))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert a1["flat_line"] and "flat line" in a1["reasons"]
    assert not out.filter(pl.col("account_id") != "A1")["flat_line"].any()


@settings(max_examples=25, deadline=None)
@given(keep=st.floats(0.2, 0.6), level=st.integers(5_000, 200_000))
def test_a_sustained_drop_scores_above_every_steady_neighbour(keep: float, level: int) -> None:
    season = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
    me = months([int(level * s * (keep if i >= 9 else 1.0)) for i, s in enumerate(season)])
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, level, 12)]), FACTS,
                                         Period(2025, 12)))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert a1["months_low"] == 3
    assert a1["score"] > out.filter(pl.col("account_id") != "A1")["score"].max()
    assert a1["reasons"].startswith("sustained drop")


def test_vacant_homes_are_not_suspects() -> None:
    me = months([200, 0, 300, 100, 0, 200, 300, 0, 0, 100, 0, 0])  # 0–3 kWh a month
    out = anomaly.score(anomaly.features(pl.concat([me, peers(40, 20_000, 12)]), FACTS,
                                         Period(2025, 12)))
    assert out.filter(pl.col("account_id") == "A1")["score"].item() == 0.0


def test_metrics_refuse_a_truth_without_both_kinds() -> None:
    with pytest.raises(ValidationError, match="both"):
        anomaly.evaluate(pl.Series([0.1, 0.2]), pl.Series([False, False]))


def test_a_history_with_a_malformed_period_is_refused_by_name() -> None:
    bad = pl.DataFrame({"account_id": ["A1"], "period": ["2026-13"], "kwh": [100]})
    with pytest.raises(ValidationError, match=r"consumption history: period month must be 01\.\.12"):
        anomaly.features(bad, FACTS, Period(2026, 12))


# -- night/day pattern break and station line loss --------------------------------------------

def tou_months(shares: list[float], totals: list[int], account: str) -> pl.DataFrame:
    rows, p = [], Period(2025, 1)
    for share, total in zip(shares, totals, strict=True):
        rows.append({"account_id": account, "period": str(p), "valley": int(total * share),
                     "kwh": total})
        p = p.next()
    return pl.DataFrame(rows, schema={"account_id": pl.String, "period": pl.String,
                                      "valley": pl.Int64, "kwh": pl.Int64})


SEASON12 = [1.0, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]


def night_county(bypass: float = 0.1, total_holds: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A1 and 40 steady TOU neighbours (valley ≈ 40 %); A1's valley share falls to ``bypass``
    for the last 3 months of 2025, its total holding (or falling with the night energy)."""
    totals = [int(20_000 * s) for s in SEASON12]
    parts = []
    for k in range(40):
        parts.append(tou_months([0.38 + 0.01 * (k % 5) + 0.005 * (i % 2) for i in range(12)],
                                [int(t * (1 + 0.01 * (k % 5))) for t in totals], f"P{k:03d}"))
    mine = [0.40] * 9 + [bypass] * 3
    mine_totals = totals if total_holds else [
        t if i < 9 else int(t * (1 - 0.40 + bypass)) for i, t in enumerate(totals)]
    parts.append(tou_months(mine, mine_totals, "A1"))
    tou = pl.concat(parts)
    return tou.select("account_id", "period", "kwh"), tou


def test_a_night_bypass_is_found_while_the_total_holds() -> None:
    history, tou = night_county()
    out = anomaly.score(anomaly.features(history, FACTS, Period(2025, 12), tou=tou))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    assert abs(a1["drop"]) < 0.05 and a1["months_low"] == 0  # the kWh signals see nothing
    assert a1["night_months"] == 3
    assert a1["valley_share_now"] == pytest.approx(0.10) and a1["valley_share_before"] == pytest.approx(0.40)
    assert a1["reasons"] == "night-time share fell: valley 10% of its energy, was 40%"
    assert a1["reasons_zh"] == "夜间（谷段）用电占比骤降：现为 10%，此前 40%"
    assert a1["score"] > 40 and a1["score"] > out.filter(pl.col("account_id") != "A1")["score"].max()
    # without the time-of-use energy the same account scores nothing
    plain = anomaly.score(anomaly.features(history, FACTS, Period(2025, 12)))
    assert plain.filter(pl.col("account_id") == "A1")["score"].item() < 1
    assert plain["night_drop"].null_count() == plain.height


@settings(max_examples=20, deadline=None)
@given(k=st.integers(2, 50), bypass=st.floats(0.0, 0.3))
def test_night_signals_are_invariant_to_scaling_a_class(k: int, bypass: float) -> None:
    _, tou = night_county(bypass)
    scaled = tou.with_columns(pl.col("valley") * k, pl.col("kwh") * k)
    a = anomaly.night_features(tou, FACTS, Period(2025, 12)).sort("account_id")
    b = anomaly.night_features(scaled, FACTS, Period(2025, 12)).sort("account_id")
    assert a.equals(b)


def station_county(thief_keep: float, honest_fall: float) -> tuple[pl.DataFrame, pl.DataFrame,
                                                                   pl.DataFrame]:
    """20 accounts of station S1 for 24 months (2025-01 … 2026-12); from 2026-01 A1's meter
    records ``thief_keep`` of its use (a bypass), from 2026-10 P000 really uses ``honest_fall``
    less. Supply = what they truly used × 1.05. (An honest fall in the very months the loss
    rose could not be told from a bypass by the station meter: that is for the inspection.)"""
    rows, supply, p = [], [], Period(2025, 1)
    accounts = ["A1", *[f"P{k:03d}" for k in range(19)]]
    for i in range(24):
        true_sum = 0
        for n, a in enumerate(accounts):
            use = int(20_000 * SEASON12[i % 12] * (1 + 0.01 * (n % 5))
                      * (1 + 0.02 * ((i * n) % 3)))
            if a == "P000" and i >= 21:
                use = int(use * (1 - honest_fall))
            true_sum += use
            rows.append({"account_id": a, "period": str(p),
                         "kwh": int(use * thief_keep) if a == "A1" and i >= 12 else use})
        supply.append({"station_id": "S1", "period": str(p), "kwh": round(true_sum * 1.05)})
        p = p.next()
    facts = pl.DataFrame({"account_id": accounts, "customer_class": ["residential"] * 20,
                          "station_id": ["S1"] * 20})
    return pl.DataFrame(rows), pl.DataFrame(supply), facts


def test_station_loss_names_the_account_whose_fall_moved_with_it_not_an_honest_fall() -> None:
    history, supply, facts = station_county(thief_keep=0.5, honest_fall=0.5)
    losses = anomaly.station_losses(history, facts, supply, Period(2026, 12)).row(0, named=True)
    assert losses["loss_before"] == pytest.approx(0.05 / 1.05, abs=1e-4)
    # A1 hides half of ~1/20 of the station's energy: the loss rises by about 2.5 points
    assert 0.02 < losses["rise"] < 0.03
    out = anomaly.score(anomaly.features(history, facts, Period(2026, 12), supply=supply))
    a1 = out.filter(pl.col("account_id") == "A1").row(0, named=True)
    honest = out.filter(pl.col("account_id") == "P000").row(0, named=True)
    # both use half of what they did; only the bypass left the station's meter behind, when
    # it began
    assert a1["drop"] == pytest.approx(honest["drop"], abs=0.05)
    assert a1["station_corr"] > 0.9 and a1["station_share"] > 0.5
    assert honest["station_corr"] < 0.5
    assert "station S1 line loss up" in a1["reasons"] and "station" not in honest["reasons"]
    assert "所属台区 S1 线损率上升" in a1["reasons_zh"]
    assert a1["score"] > honest["score"] + 20


def test_new_signals_see_no_month_after_as_of() -> None:
    history, supply, facts = station_county(thief_keep=0.5, honest_fall=0.0)
    _, tou = night_county()
    as_of = Period(2025, 10)
    later = pl.col("period") > str(as_of)
    a = anomaly.score(anomaly.features(history, facts, as_of, tou=tou, supply=supply))
    b = anomaly.score(anomaly.features(
        history.with_columns(pl.when(later).then(pl.col("kwh") * 3).otherwise(pl.col("kwh"))),
        facts, as_of,
        tou=tou.with_columns(pl.when(later).then(0).otherwise(pl.col("valley")).alias("valley")),
        supply=supply.with_columns(pl.when(later).then(pl.col("kwh") * 2)
                                   .otherwise(pl.col("kwh")))))
    assert a.sort("account_id").equals(b.sort("account_id"))


def test_bad_signal_inputs_are_refused_by_name() -> None:
    history, supply, facts = station_county(thief_keep=0.5, honest_fall=0.0)
    with pytest.raises(ValidationError, match="station supply needs each account's station_id"):
        anomaly.features(history, facts.drop("station_id"), Period(2026, 12), supply=supply)
    with pytest.raises(ValidationError, match="station S1 2025-03: supply 0 is not positive"):
        anomaly.station_losses(history, facts, supply.with_columns(
            pl.when(pl.col("period") == "2025-03").then(0).otherwise(pl.col("kwh")).alias("kwh")),
            Period(2026, 12))
    _, tou = night_county()
    with pytest.raises(ValidationError, match=r"time-of-use history of A1: valley energy .* outside 0"):
        anomaly.night_features(tou.with_columns(
            pl.when(pl.col("account_id") == "A1").then(pl.col("kwh") + 1)
            .otherwise(pl.col("valley")).alias("valley")), FACTS, Period(2025, 12))


def test_the_sim_plants_night_bypasses_the_signal_finds() -> None:
    from tests.risk.sim_history import county_tou

    history, facts = county()
    tou, truth_night = county_tou()
    feats = anomaly.score(anomaly.features(history, facts, AS_OF, tou=tou))
    night = feats.join(truth_night, on="account_id", how="inner").filter(
        pl.col("tamper_month") <= months_after_start(AS_OF) - 2)
    assert night.height >= 2
    assert (night["night_months"] >= 2).all()
    assert (night["score"] >= 40).all()
