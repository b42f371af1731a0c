"""Properties of the worklist arithmetic (no database): every account on exactly one active
collector's list, none dropped, none twice; balancing keeps every account and only moves rows
within a station to collectors with room."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.collections.assignment import Rule, Rules, assign, balance, rank, with_ranks

STATIONS = ["S1", "S2", "S3"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, Rules]:
    n_coll = draw(st.integers(1, 8))
    coll = [f"K{i}" for i in range(n_coll)]
    stations = [draw(st.sampled_from(STATIONS)) for _ in coll]
    active = [draw(st.booleans()) for _ in coll]
    active[draw(st.integers(0, n_coll - 1))] = True  # somebody is on duty
    caps = [draw(st.integers(0, 6)) for _ in coll]
    spoken = [draw(st.sampled_from([None, "bo", "zh,bo"])) for _ in coll]
    roster = pl.DataFrame({"collector_id": coll, "station_id": stations, "active": active,
                           "capacity": caps, "languages": spoken},
                          schema_overrides={"languages": pl.String})
    n = draw(st.integers(0, 40))
    work = pl.DataFrame({
        "account_id": [f"A{i:03d}" for i in range(n)],
        "amount_overdue": [draw(st.integers(0, 10**7)) for _ in range(n)],
        "days_overdue": [draw(st.integers(0, 400)) for _ in range(n)],
        "p_default": [draw(st.one_of(st.none(), st.floats(0, 1))) for _ in range(n)],
        "risk_reasons": [None] * n,
        "station_id": [draw(st.sampled_from([*STATIONS, None])) for _ in range(n)],
        "region_id": ["R1"] * n,
        "customer_class": [draw(st.sampled_from(["residential", "commercial"])) for _ in range(n)],
        "language": [draw(st.sampled_from([None, "bo"])) for _ in range(n)],
        "collector_id": [draw(st.sampled_from([*coll, None])) for _ in range(n)],
    }, schema_overrides={"account_id": pl.String, "amount_overdue": pl.Int64,
                         "days_overdue": pl.Int64, "region_id": pl.String,
                         "customer_class": pl.String, "p_default": pl.Float64, "risk_reasons": pl.String,
                         "station_id": pl.String, "language": pl.String,
                         "collector_id": pl.String})
    on_duty = [c for c, a in zip(coll, active, strict=True) if a]
    pool = draw(st.lists(st.sampled_from(on_duty), min_size=1, unique=True))
    rules = Rules(pools={"p": tuple(pool)}, rules=(
        Rule("commercial to the pool", customer_classes=frozenset({"commercial"}), pool="p"),
        Rule("bo to one", languages=frozenset({"bo"}), collector=on_duty[0])))
    return work, roster, rules


@settings(max_examples=150, deadline=None)
@given(cases())
def test_each_account_on_exactly_one_active_list(case: tuple[pl.DataFrame, pl.DataFrame, Rules]) -> None:
    work, roster, rules = case
    out = assign(rank(work, rules), roster, rules)
    assert sorted(out["account_id"].to_list()) == sorted(work["account_id"].to_list())
    assert out["account_id"].n_unique() == out.height
    on_duty = set(roster.filter(pl.col("active"))["collector_id"].to_list())
    assert set(out["collector_id"].to_list()) <= on_duty
    ranks = with_ranks(out)
    for _, g in ranks.group_by("collector_id"):
        assert sorted(g["rank"].to_list()) == list(range(1, g.height + 1))


@settings(max_examples=150, deadline=None)
@given(cases())
def test_balancing_moves_within_station_to_room(case: tuple[pl.DataFrame, pl.DataFrame, Rules]) -> None:
    work, roster, rules = case
    entries = assign(rank(work, rules), roster, rules).select(
        "account_id", "collector_id", "expected", "amount_overdue")
    moves = balance(entries, roster)
    assert moves["account_id"].n_unique() == moves.height
    station = dict(roster.select("collector_id", "station_id").iter_rows())
    cap = {c: (k if a else 0) for c, a, k in
           roster.select("collector_id", "active", "capacity").iter_rows()}
    for _a, frm, to in moves.iter_rows():
        assert station[frm] == station[to] and cap[to] > 0
    after = entries.join(moves.select("account_id", "to_collector"), on="account_id",
                         how="left").with_columns(
        pl.coalesce("to_collector", "collector_id").alias("collector_id"))
    assert sorted(after["account_id"].to_list()) == sorted(entries["account_id"].to_list())
    before = dict(entries.group_by("collector_id").len().iter_rows())
    load = dict(after.group_by("collector_id").len().iter_rows())
    for c, n in load.items():
        # a receiver never goes past its capacity; a giver never drops below it
        if c in set(moves["to_collector"].to_list()):
            assert n <= cap[c]
        if c in set(moves["from_collector"].to_list()):
            assert n >= min(cap[c], before[c])


def test_malformed_rule_files_are_refused_naming_the_rule() -> None:
    import pytest

    from dianfei.collections.assignment import load_rules, parse_rules
    from dianfei.core.errors import ValidationError

    assert load_rules().task_kinds == ("collector_visit",)  # the packaged file loads
    bad = {
        '[[rule]]\nname = "x"\n': "rule 'x': name exactly one of collector or pool",
        '[[rule]]\nname = "x"\ncollector = "K1"\npool = "p"\n': "exactly one",
        '[[rule]]\nname = "x"\npool = "p"\n': "rule 'x': pool 'p' is not defined",
        '[[rule]]\nname = "x"\ncollector = "K1"\nstation = ["S1"]\n': "unknown key\\(s\\) station",
        '[[rule]]\nname = "x"\ncollector = "K1"\nmin_amount = "9"\nmax_amount = "1"\n':
            "min_amount above max_amount",
        '[[rule]]\nname = "x"\ncollector = "K1"\nmin_amount = 1.5\n': "min_amount",
        "task_kinds = []\n": "task_kinds must be a non-empty list",
        "[ranking]\nmin_probability = 0.9\nmax_probability = 0.1\n": "min_probability",
    }
    for text, why in bad.items():
        with pytest.raises(ValidationError, match=why):
            parse_rules(text, "a.toml")


def test_a_deployment_names_its_own_rules_file(tmp_path: object) -> None:
    from pathlib import Path
    from types import SimpleNamespace

    from dianfei.collections.worklist import rules_for

    f = Path(str(tmp_path)) / "mine.toml"
    f.write_text('task_kinds = ["collector_visit", "plan_offer"]\ndefault_capacity = 25\n',
                 encoding="utf-8")
    db = SimpleNamespace(settings=SimpleNamespace(raw={"collections": {"assignment_file": str(f)}}))
    rules = rules_for(db)  # type: ignore[arg-type]
    assert rules.task_kinds == ("collector_visit", "plan_offer") and rules.default_capacity == 25
    assert rules_for(SimpleNamespace(settings=SimpleNamespace(raw={})))\
        .task_kinds == ("collector_visit",)  # type: ignore[arg-type]


def test_a_settled_account_with_an_open_task_stays_listed_last_saying_why() -> None:
    work = pl.DataFrame({"account_id": ["A", "B"], "amount_overdue": [0, 500],
                         "days_overdue": [0, 3], "p_default": [0.1, 0.9],
                         "risk_reasons": [None, None]},
                        schema_overrides={"risk_reasons": pl.String})
    out = rank(work, Rules())
    assert out["account_id"].to_list() == ["B", "A"]
    assert out["reason"][1].startswith("nothing overdue now")
