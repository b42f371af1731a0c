"""Precision and recall floors of the spike and high/low usage rules on realistic synthetic
households (heating, cooling, EV charging, PV export, a shop, an irrigation pump, holidays,
vacancies) with planted faults. The figures over eight seeds are in docs/vee.md
(``python -m bench.vee_quality``); these two seeds keep the floors."""

from __future__ import annotations

import pytest

from tests.metering.vee import quality


@pytest.mark.parametrize("seed", [3, 5])
def test_spikes_and_usage_rules_keep_their_floors_on_households(seed: int) -> None:
    history = quality.households(seed)
    got = quality.score(history, quality.findings(history))
    spike, high, low = got["spike"], got["high_usage"], got["low_usage"]
    # not one false spike among 10 households over two years, and (almost) every planted one
    assert spike["false"] == 0 and spike["recall"] >= 0.9, spike
    assert high["precision"] >= 0.9 and high["recall"] >= 0.8, high
    assert low["precision"] >= 0.9 and low["recall"] >= 0.6, low


def test_no_spike_in_ordinary_household_peaks() -> None:
    # the complaint: ordinary evening peaks, EV charging and heat waves at a fixed
    # floor of 2.5 kWh per half-hour were ~1,100 false alarms; without planted faults: none
    history = quality.household_history(10, 730, seed=11, spikes=0, gaps=0, zero_runs=0)
    found = quality.findings(history)
    assert found.filter(found["rule"] == "spike").height == 0
    assert history.intervals.filter(history.intervals["wh"] > 2500).height > 1000
