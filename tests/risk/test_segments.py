"""Customer segments: the rules file, first-match order, lateness without look-ahead, and the
segments checked against the synthetic county's hidden behaviours."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.risk import anomaly, segments
from tests.risk.sim_history import county, county_bills

AS_OF = date(2027, 1, 1)


def test_county_segments_match_the_hidden_behaviours() -> None:
    history, facts = county()
    bills = county_bills()
    sim = facts.join(pl.DataFrame({"account_id": facts["account_id"]}), on="account_id")
    accounts = sim.with_columns(pl.lit(False).alias("protected"))
    pf = segments.payment_facts(bills.drop("paid_in_full_on"), bills, AS_OF)
    theft = anomaly.score(anomaly.features(history, facts, Period(2026, 12)))
    got = segments.assign(segments.segment_facts(accounts, pf, theft, history)).join(
        facts, on="account_id")

    def share(behaviour: str, segment: str) -> float:
        rows = got.filter(pl.col("behaviour") == behaviour)
        return rows.filter(pl.col("segment") == segment).height / rows.height

    # measured on this county (docs/risk-insight.md): vacant 1.00, tamper 0.8, chronic
    # arrears 0.8, on_time 0.8; floors leave room for noise
    assert share("vacant", "vacant") == 1.0
    assert share("tamper", "suspected_theft") >= 0.6
    assert share("chronic_arrears", "chronic") >= 0.6
    assert share("on_time", "on_time") >= 0.7
    assert share("on_time", "chronic") <= 0.01
    assert set(got["segment"].unique().to_list()) <= set(segments.SEGMENTS)


def test_the_first_rule_that_holds_wins_and_says_why() -> None:
    facts = pl.DataFrame({
        "account_id": ["A", "B", "C", "D"],
        "customer_class": ["residential", "large_industry", "residential", "residential"],
        "low_income": [True, False, False, False], "protected": [False] * 4,
        "theft_score": [80.0, 0.0, 0.0, None], "months_low": [3, 0, 0, None],
        "usual_kwh": [20_000.0, 9e6, 20_000.0, None], "late_12m": [9, 0, 1, 0],
        "overdue_amount": [0, 0, 0, 0]})
    out = segments.assign(facts)
    assert out["segment"].to_list() == ["suspected_theft", "strategic", "occasionally_late",
                                        "on_time"]
    assert out["why"][0] == "theft_score >= 40 and months_low >= 2"
    assert out["why"][3] == "no other rule matched"  # unknown facts do not satisfy a rule


def test_payment_facts_do_not_see_payments_after_the_day() -> None:
    bills = pl.DataFrame({"account_id": ["A", "A"], "bill_id": ["b1", "b2"],
                          "amount": [10_000, 12_000],
                          "due_on": [date(2026, 5, 18), date(2026, 6, 18)]})
    paid = pl.DataFrame({"bill_id": ["b1", "b2"],
                         "paid_in_full_on": [date(2026, 5, 10), date(2026, 7, 20)]})
    before = segments.payment_facts(bills, paid, date(2026, 7, 1)).row(0, named=True)
    after = segments.payment_facts(bills, paid, date(2026, 8, 1)).row(0, named=True)
    assert (before["late_12m"], before["overdue_amount"], before["days_overdue"]) == (1, 12_000, 13)
    assert (after["late_12m"], after["overdue_amount"], after["days_overdue"]) == (1, 0, 0)


@pytest.mark.parametrize(("text", "message"), [
    ('[[segment]]\nname = "on_time"\nall = ["score >= 1"]\n', "unknown column 'score'"),
    ('[[segment]]\nname = "on_time"\nall = ["late_12m ~ 1"]\n', "is not '<column> <op> <value>'"),
    ('[[segment]]\nname = "gold"\n', "segment name must be one of"),
    ('[[segment]]\nname = "chronic"\nall = ["late_12m >= 6"]\n', "last segment must have no"),
    ('[[segment\n', "cannot read segment rules"),
])
def test_a_bad_rules_file_is_refused_with_where(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "segments.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError, match=message) as err:
        segments.load_rules(f)
    assert "segments.toml" in str(err.value)
