"""The live arrears cases are screened as columns before any is loaded (thousands of waiting
cases a day at a million accounts): the screen keeps exactly the cases the per-case rule moves —
every one of them (none is left waiting) and no other (none is loaded to be left alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.collections.stops import LIVE
from dianfei.collections.suspension import _action, screen_cases

NOW = datetime(2026, 3, 18, 1, 0, tzinfo=UTC)
LADDERS = [SimpleNamespace(ladder_id="standard", level=lambda name: SimpleNamespace(actions=[
    SimpleNamespace(type=t) for t in ({"stop": ["suspension_order"], "notice": ["sms"]}[name])]))]

case = st.fixed_dictionaries({
    "status": st.sampled_from(LIVE),
    "has_facts": st.booleans(),
    "open_plan": st.booleans(),
    "protected": st.booleans(),
    "level": st.sampled_from(["stop", "notice"]),
    "days_overdue": st.integers(0, 120),
    "owed": st.one_of(st.none(), st.integers(-5_000, 50_000)),
    "stop_in_h": st.one_of(st.none(), st.integers(-200, 200)),
})


@settings(max_examples=300, deadline=None)
@given(st.lists(case, min_size=1, max_size=25), st.booleans(), st.integers(0, 60))
def test_the_screen_keeps_exactly_the_cases_the_rule_moves(cases: list[dict[str, Any]], window: bool,
                                                   min_days: int) -> None:
    ctx = SimpleNamespace(now=NOW, ladders=LADDERS, policy=SimpleNamespace(
        min_days_overdue=min_days, stop_allowed_at=lambda now: window))
    live = pl.DataFrame({
        "case_id": list(range(1, len(cases) + 1)),
        "account_id": [f"A{i}" for i in range(len(cases))],
        "status": [c["status"] for c in cases],
        "earliest_stop_at": [None if c["stop_in_h"] is None else NOW + timedelta(hours=c["stop_in_h"])
                             for c in cases]},
        schema={"case_id": pl.Int64, "account_id": pl.String, "status": pl.String,
                "earliest_stop_at": pl.Datetime("us", "UTC")})
    facts_rows = [{"account_id": f"A{i}", "ladder": "standard", "level": c["level"],
                   "days_overdue": c["days_overdue"], "protected": c["protected"],
                   "open_plan": c["open_plan"]} for i, c in enumerate(cases) if c["has_facts"]]
    facts = pl.DataFrame(facts_rows, schema={
        "account_id": pl.String, "ladder": pl.String, "level": pl.String,
        "days_overdue": pl.Int64, "protected": pl.Boolean, "open_plan": pl.Boolean})
    owed = {f"A{i}": c["owed"] for i, c in enumerate(cases) if c["owed"] is not None}
    screened = set(screen_cases(ctx, live, facts, owed)["case_id"].to_list())
    by_account = {r["account_id"]: r for r in facts_rows}
    for i, c in enumerate(cases):
        stop_at = None if c["stop_in_h"] is None else NOW + timedelta(hours=c["stop_in_h"])
        if c["status"] == "noticed" and stop_at is None:
            continue  # a noticed case always has its earliest stop (set when the notice went)
        moved = _action(ctx, c["status"], by_account.get(f"A{i}"), owed.get(f"A{i}", 0),
                        stop_at)
        if moved is not None:
            assert i + 1 in screened, (c, moved)
        else:
            assert i + 1 not in screened, ("screened in, left alone", c)
