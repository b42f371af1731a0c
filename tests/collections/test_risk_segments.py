"""Risk segments (客户分类) drive collections: the snapshot carries each account's segment by the
rules of risk/segments.toml, a ladder may name risk segments with a fixed precedence, and the
segment shows on the account, the worklists and the reports."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dianfei.collections.ladder import SEGMENTS, LadderError, evaluate, ladders, load_ladders, parse_ladder
from dianfei.collections.service import events_json, run_day
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.risk.segments import SEGMENTS as RISK_SEGMENTS
from dianfei.risk.segments import load_rules
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.factories import Person, load_people

CLASSES = ("residential", "commercial", "industrial", "large_industry", "agricultural")


def ladder_text(ladder_id: str, segments: list[str], classes: tuple[str, ...] = CLASSES,
                level: str = "reminder") -> str:
    return (f'ladder = "{ladder_id}"\nsource = "test"\ncustomer_classes = {json.dumps(list(classes))}\n'
            f"segments = {json.dumps(segments)}\n"
            f'[[level]]\nname = "{level}"\nmin_days = 1\n'
            'actions = [{ type = "sms", notice = "reminder" }]\n')


def snapshot(rows: list[dict[str, object]]) -> pl.DataFrame:
    base = {"days_overdue": 10, "amount_overdue": 10_000, "risk_band": "low", "protected": False,
            "open_plan": False}
    return pl.DataFrame([{**base, **r} for r in rows])


# -- the ladder file -------------------------------------------------------------------------------


def test_unknown_segment_refused_naming_file_and_segment() -> None:
    with pytest.raises(LadderError, match=r"odd\.toml: unknown segment 'hardshp'.*risk segments: "
                                          r"suspected_theft"):
        parse_ladder(ladder_text("odd", ["standard", "hardshp"]), "odd.toml")


def test_risk_segment_ladder_loads_and_two_ladders_on_one_segment_are_refused(tmp_path: Path) -> None:
    ld = parse_ladder(ladder_text("gentle", ["hardship"], ("residential",)), "gentle.toml")
    assert ld.segments == frozenset({"hardship"})
    (tmp_path / "a.toml").write_text(ladder_text("a", ["hardship"], ("residential",)))
    (tmp_path / "b.toml").write_text(ladder_text("b", ["hardship", "chronic"], ("residential",)))
    with pytest.raises(LadderError, match=r"b\.toml: ladder 'b' and 'a' \(a\.toml\) both apply to "
                                          r"class residential segment hardship"):
        load_ladders(tmp_path)


def test_packaged_risk_ladders_never_stop_protected_and_visit_before_any_stop() -> None:
    by_id = {ld.ladder_id: ld for ld in ladders()}
    for name in ("hardship", "strategic"):
        ld = by_id[name]
        stops = [lv for lv in ld.levels if {a.type for a in lv.actions}
                 & {"stop_notice", "suspension_order"}]
        visits = [lv for lv in ld.levels if any(a.type == "collector_visit" for a in lv.actions)]
        # every account reaches a visit before the first day any stop notice can go out
        assert min(v.min_days for v in visits) < min(s.min_days for s in stops), name
        assert all(lv.protected == frozenset({False}) for lv in stops), name
    # the hardship ladder's stop notice comes later than the standard residential one
    first_stop = {n: min(lv.min_days for lv in by_id[n].levels if lv.name == "stop_notice")
                  for n in ("hardship", "residential")}
    assert first_stop["hardship"] > first_stop["residential"]


# -- precedence ------------------------------------------------------------------------------------

PRECEDENCE_LADDERS = [
    parse_ladder(ladder_text("std", ["standard"]), "std.toml"),
    parse_ladder(ladder_text("low", ["low_income"]), "low.toml"),
    parse_ladder(ladder_text("rep", ["repeat_defaulter"]), "rep.toml"),
    parse_ladder(ladder_text("gentle", ["hardship"], ("residential",)), "gentle.toml"),
    parse_ladder(ladder_text("vip", ["strategic"]), "vip.toml"),
    parse_ladder(ladder_text("probe", ["suspected_theft"], ("residential", "commercial")),
                 "probe.toml"),
]
RISK_KEYS = {(c, s): ld.ladder_id for ld in PRECEDENCE_LADDERS for c in ld.customer_classes
             for s in ld.segments if s in RISK_SEGMENTS}


def arm_ladder_text(ladder_id: str, experiment: str, arms: list[str],
                    classes: tuple[str, ...] = CLASSES) -> str:
    return (f'ladder = "{ladder_id}"\nsource = "test"\ncustomer_classes = {json.dumps(list(classes))}\n'
            f'experiment = "{experiment}"\narms = {json.dumps(arms)}\n'
            '[[level]]\nname = "fast_reminder"\nmin_days = 1\n'
            'actions = [{ type = "sms", notice = "reminder" }]\n')


ARM_LADDERS = [*PRECEDENCE_LADDERS,
               parse_ladder(arm_ladder_text("challenger", "exp1", ["fast"], ("residential",
                                                                             "commercial")),
                            "challenger.toml")]


def expected_ladder(customer_class: str, dunning: str, risk: str | None,
                    arm: str | None = None) -> str:
    """The documented precedence: low-income first, then the experiment arm, then the risk
    segment, then the dunning."""
    if dunning == "low_income":
        return "low"
    if arm == "fast" and customer_class in ("residential", "commercial"):
        return "challenger"
    if risk is not None and (customer_class, risk) in RISK_KEYS:
        return RISK_KEYS[(customer_class, risk)]
    return {"standard": "std", "repeat_defaulter": "rep"}[dunning]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CLASSES), st.sampled_from(SEGMENTS),
                          st.none() | st.sampled_from(RISK_SEGMENTS)), min_size=1, max_size=30))
def test_each_account_gets_exactly_the_ladder_of_the_precedence(
        accounts: list[tuple[str, str, str | None]]) -> None:
    snap = snapshot([{"account_id": f"A{i}", "customer_class": c, "segment": d, "risk_segment": r}
                     for i, (c, d, r) in enumerate(accounts)])
    got = evaluate(snap, PRECEDENCE_LADDERS)
    assert got["account_id"].to_list() == snap["account_id"].to_list()  # one row per account
    assert got["ladder"].to_list() == [expected_ladder(c, d, r) for c, d, r in accounts]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CLASSES), st.sampled_from(SEGMENTS),
                          st.none() | st.sampled_from(RISK_SEGMENTS),
                          st.none() | st.sampled_from(("fast", "uniform", "holdout"))),
                min_size=1, max_size=30))
def test_an_experiment_arm_comes_after_low_income_and_before_the_segments(
        accounts: list[tuple[str, str, str | None, str | None]]) -> None:
    snap = snapshot([{"account_id": f"A{i}", "customer_class": c, "segment": d, "risk_segment": r,
                      "experiment_arm": a} for i, (c, d, r, a) in enumerate(accounts)])
    got = evaluate(snap, ARM_LADDERS)
    assert got["ladder"].to_list() == [expected_ladder(c, d, r, a) for c, d, r, a in accounts]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CLASSES), st.sampled_from(SEGMENTS),
                          st.sampled_from(RISK_SEGMENTS), st.integers(1, 400),
                          st.integers(1, 200_000), st.sampled_from(("low", "medium", "high")),
                          st.booleans(), st.booleans()), min_size=1, max_size=30))
def test_packaged_ladders_without_risk_ladders_behave_as_before(
        accounts: list[tuple[str, str, str, int, int, str, bool, bool]]) -> None:
    # the packaged files that name only dunning segments: a risk segment on the snapshot changes
    # nothing, exactly as before risk segments reached the ladder
    dunning_only = [ld for ld in ladders() if ld.segments <= set(SEGMENTS)]
    snap = snapshot([{"account_id": f"A{i}", "customer_class": c, "segment": d,
                      "risk_segment": r, "days_overdue": days, "amount_overdue": fen,
                      "risk_band": band, "protected": prot, "open_plan": plan}
                     for i, (c, d, r, days, fen, band, prot, plan) in enumerate(accounts)])
    with_risk = evaluate(snap, dunning_only)
    without = evaluate(snap.drop("risk_segment"), dunning_only)
    assert with_risk.equals(without)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(CLASSES), st.sampled_from(RISK_SEGMENTS),
                          st.integers(1, 400), st.integers(1, 200_000), st.booleans()),
                min_size=1, max_size=30))
def test_low_income_accounts_stay_on_the_low_income_ladder(
        accounts: list[tuple[str, str, int, int, bool]]) -> None:
    # the law: low-income status is never a reason to escalate, whatever the risk segment
    snap = snapshot([{"account_id": f"A{i}", "customer_class": c, "segment": "low_income",
                      "risk_segment": r, "days_overdue": days, "amount_overdue": fen,
                      "protected": prot}
                     for i, (c, r, days, fen, prot) in enumerate(accounts)])
    got = evaluate(snap, ladders())
    expected = evaluate(snap.drop("risk_segment"), ladders())
    assert got.equals(expected)
    assert set(got["ladder"].drop_nulls().to_list()) <= {"low_income", "business"}


def test_a_risk_segment_changes_the_chosen_level() -> None:
    # a large-industry customer 10 days overdue at low risk: the business ladder's final
    # reminder; as a strategic customer, the account manager's visit
    snap = snapshot([{"account_id": "X", "customer_class": "large_industry", "segment": "standard",
                      "risk_segment": None},
                     {"account_id": "Y", "customer_class": "large_industry", "segment": "standard",
                      "risk_segment": "strategic"}])
    got = {r["account_id"]: (r["ladder"], r["level"])
           for r in evaluate(snap, ladders()).iter_rows(named=True)}
    assert got == {"X": ("business", "final_reminder"), "Y": ("strategic", "account_manager_visit")}


@pytest.mark.parametrize(("text", "message"), [
    (ladder_text("x", ["standard"]).replace("[[level]]", 'experiment = "e"\n[[level]]', 1),
     r"x\.toml: an experiment ladder names both the experiment and its arms"),
    (arm_ladder_text("x", "e", ["fast"]).replace('experiment = "e"\n', 'experiment = "e"\n'
                                                   'segments = ["standard"]\n'),
     r"x\.toml: an experiment ladder applies to its arms, not to segments"),
])
def test_bad_experiment_ladders_are_refused(text: str, message: str) -> None:
    with pytest.raises(LadderError, match=message):
        parse_ladder(text, "x.toml")


def test_arm_ladders_of_two_experiments_or_one_arm_twice_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(arm_ladder_text("a", "e1", ["fast"]))
    (tmp_path / "b.toml").write_text(arm_ladder_text("b", "e2", ["slow"]))
    with pytest.raises(LadderError, match=r"arm ladders name more than one experiment \(e1 in "
                                          r"a\.toml, e2 in b\.toml\)"):
        load_ladders(tmp_path)
    (tmp_path / "b.toml").write_text(arm_ladder_text("b", "e1", ["fast"], ("residential",)))
    with pytest.raises(LadderError, match=r"b\.toml: ladder 'b' and 'a' \(a\.toml\) both apply "
                                          r"to class residential arm fast"):
        load_ladders(tmp_path)


# -- the rules: the law is checked when the file is read -------------------------------------------


def test_rules_refuse_low_income_leading_to_a_harsher_segment(tmp_path: Path) -> None:
    f = tmp_path / "harsh.toml"
    f.write_text('[[segment]]\nname = "chronic"\nany = ["low_income == true", "late_12m >= 6"]\n'
                 '[[segment]]\nname = "on_time"\n')
    with pytest.raises(ValidationError, match=r"low-income and protected status may only lead to "
                                              r"hardship") as exc:
        load_rules(f)
    assert exc.value.where == "harsh.toml segment #1"


# -- on a database: the daily run, the account, the worklist, the report ----------------------------

DUE = date(2026, 1, 18)


def at(day: date, hh: int = 9) -> datetime:
    return datetime.combine(day, time(hh), tzinfo=BUSINESS_TZ)


def setup(db: Database) -> None:
    """N: a standard residential customer; P: protected (hardship); L: low-income and protected;
    S: large industry (strategic) — each with one 200-yuan bill due 2026-01-18 and no history."""
    load_people(db, [Person("N"), Person("P"), Person("L", low_income=True),
                     Person("S", customer_class="large_industry")])
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET protected = :t WHERE customer_id IN ('P', 'L')"),
                     {"t": True})
    clock = FixedClock(at(date(2026, 1, 3)))
    with db.session() as s:
        for cid in ("N", "P", "L", "S"):
            ledger.post_entry(s, clock=clock, account_id=cid, customer_id=cid, kind="bill",
                              amount=20_000, reference=f"{cid}-202512-1", due_on=DUE)


def levels(db: Database) -> dict[str, tuple[str, str]]:
    with db.engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            text("SELECT account_id, ladder, level FROM dunning_state"))}


@pytest.mark.db
def test_the_daily_run_segments_its_accounts_and_their_ladders_follow(db: Database) -> None:
    setup(db)
    notifier, switch = FakeNotifier(), FakeSwitch()
    day = DUE + timedelta(days=10)
    report = run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
    # no history at all: what is overdue makes N occasionally late (the documented default);
    # protected P is a hardship household, L too (low-income), S strategic (large industry)
    assert report.segments == {"strategic": {"accounts": 1, "arrears": 20_000},
                               "hardship": {"accounts": 2, "arrears": 40_000},
                               "occasionally_late": {"accounts": 1, "arrears": 20_000}}
    assert report.to_json()["segments"]["hardship"] == {"accounts": 2, "arrears": "400.00"}
    assert levels(db) == {"N": ("residential", "final_reminder"), "P": ("hardship", "reminder"),
                          "L": ("low_income", "reminder"),
                          "S": ("strategic", "account_manager_visit")}
    steps = {e["account"]: e for e in events_json(db) if e["type"] == "dunning_level"}
    assert steps["S"]["segment"] == "strategic" and steps["S"]["ladder"] == "strategic"
    # the account manager is sent before any notice of suspension
    with db.engine.connect() as conn:
        kinds = {r[0] for r in conn.execute(
            text("SELECT kind FROM collection_tasks WHERE account_id = 'S'"))}
    assert "collector_visit" in kinds
    # 35 days overdue: N has its stop notice, protected P a visit with a plan offer, L the
    # low-income ladder's visit — no stop case for P or L
    for d in range(11, 36):
        run_day(db, DUE + timedelta(days=d), clock=FixedClock(at(DUE + timedelta(days=d))),
                switch=switch, notifier=notifier)
    got = levels(db)
    assert got["N"] == ("residential", "stop_notice")
    assert got["P"] == ("hardship", "visit_plan_offer")
    assert got["L"] == ("low_income", "collector_visit")
    with db.engine.connect() as conn:
        cased = {r[0] for r in conn.execute(text("SELECT account_id FROM stop_cases"))}
    assert "P" not in cased and "L" not in cased and "N" in cased


@pytest.mark.db
def test_account_show_worklist_and_report_show_the_segment(db: Database, tmp_path: Path) -> None:
    from dianfei.collections.account import account_segment, account_view
    from dianfei.collections.worklist import worklists
    from dianfei.reporting.report import segments_sheet

    setup(db)
    day = DUE + timedelta(days=10)
    run_day(db, day, clock=FixedClock(at(day)), switch=FakeSwitch(), notifier=FakeNotifier())
    seg = account_segment(db, "S", as_of=day)
    assert seg == {"name": "strategic", "label": "重要客户 strategic",
                   "rule": "customer_class == large_industry or kwh_percentile >= 0.995"}
    assert account_segment(db, "N", as_of=day) == {
        "name": "occasionally_late", "label": "偶尔逾期 occasionally late",
        "rule": "late_12m >= 1 or overdue_amount > 0"}
    # before the due date nothing is overdue: no history, nothing owed — on time
    assert account_segment(db, "N", as_of=DUE)["name"] == "on_time"  # type: ignore[index]
    # the worklist (the strategic customer's visit) carries the segment
    rows = worklists(db, day)
    assert [(r["account_id"], r["segment"], r["segment_label"]) for r in rows] == [
        ("S", "strategic", "重要客户 strategic")]
    sheet = segments_sheet(db, day)
    assert sheet.rows == [["strategic", "重要客户 strategic", 1, "200.00", 0.25],
                          ["hardship", "困难户 hardship", 2, "400.00", 0.5],
                          ["occasionally_late", "偶尔逾期 occasionally late", 1, "200.00", 0.25]]
    assert "2026-01-28" in sheet.note
    assert segments_sheet(db, day - timedelta(days=1)).rows == []
    with db.engine.connect() as conn:
        view = account_view(conn, "S", as_of=day)
    assert "segment" not in view  # the view's keys are unchanged; the CLI adds the segment


@pytest.mark.db
def test_account_show_json_keeps_its_keys_and_adds_the_segment(db: Database, db_env: dict[str, str]
                                                              ) -> None:
    from typer.testing import CliRunner

    from dianfei.cli.main import app

    setup(db)
    out = CliRunner().invoke(app, ["account", "show", "P", "--as-of", "2026-01-28", "--json"],
                             env=db_env)
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert list(got) == ["account", "customer_id", "name", "customer_class", "payment_mode", "as_of",
                         "balance", "amount_due", "owed", "overdue", "credit", "late_fees",
                         "open_items", "plan", "supply", "segment"]
    assert got["segment"] == {"name": "hardship", "label": "困难户 hardship",
                              "rule": "low_income == true or protected == true"}


@pytest.mark.db
def test_an_experiment_arm_is_dunned_by_its_ladder_from_the_start(db: Database) -> None:
    from dianfei.risk.service import create_experiment

    people = [f"E{k}" for k in range(8)]
    load_people(db, [Person(c) for c in people])
    clock = FixedClock(at(date(2026, 1, 3)))
    with db.session() as s:
        for cid in people:
            ledger.post_entry(s, clock=clock, account_id=cid, customer_id=cid, kind="bill",
                              amount=20_000, reference=f"{cid}-202512-1", due_on=DUE)
        arms = create_experiment(s, experiment_id="fast-2026", description="faster reminders",
                                 arms=[("uniform", 0.5), ("fast", 0.5)], seed=3,
                                 started_on=DUE + timedelta(days=2), clock=clock, accounts=people)
        s.commit()
    fast = set(arms.filter(pl.col("arm") == "fast")["account_id"].to_list())
    assert len(fast) == 4
    challenger = parse_ladder(arm_ladder_text("fast", "fast-2026", ["fast"], ("residential",)),
                              "fast.toml")
    own = [*ladders(), challenger]
    notifier, switch = FakeNotifier(), FakeSwitch()
    # before the start everyone is dunned the usual way
    day = DUE + timedelta(days=1)
    run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier, ladder_list=own)
    assert {ladder for ladder, _ in levels(db).values()} == {"residential"}
    # from the start the fast arm is dunned by the arm's ladder, the champion as before
    day = DUE + timedelta(days=2)
    run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier, ladder_list=own)
    got = levels(db)
    assert {a for a, (ladder, _) in got.items() if ladder == "fast"} == fast
    assert {lv for a, lv in got.items() if a not in fast} == {("residential", "reminder")}
    # a ladder naming an experiment nobody created stops the run, naming both
    ghost = parse_ladder(arm_ladder_text("ghost", "no-such", ["fast"]), "ghost.toml")
    with pytest.raises(LadderError, match=r"ghost\.toml: experiment 'no-such' does not exist"):
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier,
                ladder_list=[*ladders(), ghost])


def test_a_suspected_theft_gets_an_inspection_with_its_first_reminder() -> None:
    snap = snapshot([{"account_id": "T", "customer_class": "residential", "segment": "standard",
                      "risk_segment": "suspected_theft", "days_overdue": 3}])
    got = evaluate(snap, ladders()).row(0, named=True)
    assert (got["ladder"], got["level"]) == ("suspected_theft", "reminder_inspection")
    lv = {ld.ladder_id: ld for ld in ladders()}["suspected_theft"].level("reminder_inspection")
    assert {a.type for a in lv.actions} == {"sms", "inspection"}


@pytest.mark.db
def test_the_inspection_task_goes_to_the_inspectors_and_its_outcome_to_the_register(
        db: Database) -> None:
    from dianfei.collections.tasks import complete_task
    from dianfei.risk import service as risk

    load_people(db, [Person("T"), Person("U")])
    clock = FixedClock(at(date(2026, 1, 3)))
    with db.session() as s:
        for cid in ("T", "U"):
            ledger.post_entry(s, clock=clock, account_id=cid, customer_id=cid, kind="bill",
                              amount=20_000, reference=f"{cid}-202512-1", due_on=DUE)
    day = DUE + timedelta(days=3)
    # the theft warnings of the stored consumption facts say T's usage fell sharply
    risk.segment_consumption_facts(db, day)
    (kept,) = (db.settings.data_dir / "risk" / "segment_facts").glob("*.parquet")
    pl.DataFrame({"account_id": ["T", "U"], "theft_score": [62.0, 0.0], "months_low": [3, 0],
                  "usual_kwh": [15_000.0, 14_000.0], "kwh_percentile": [0.5, 0.4],
                  "bills_12m": [12, 12]},
                 schema_overrides={"months_low": pl.Int32, "bills_12m": pl.Int32}).write_parquet(kept)
    run_day(db, day, clock=FixedClock(at(day)), switch=FakeSwitch(), notifier=FakeNotifier())
    assert levels(db) == {"T": ("suspected_theft", "reminder_inspection"),
                          "U": ("residential", "reminder")}
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT task_id, account_id, department, due_at FROM "
                                 "collection_tasks WHERE kind = 'inspection'")).all()
    assert [(r[1], r[2]) for r in rows] == [("T", "marketing")] and rows[0][3] is not None
    with db.session() as s:
        complete_task(s, int(rows[0][0]), outcome="theft", by="inspector 王五",
                      clock=FixedClock(at(day + timedelta(days=2), 15)))
        s.commit()
    found = risk.inspections(db).row(0, named=True)
    assert (found["account_id"], found["outcome"], found["inspected_on"]) == (
        "T", "theft", day + timedelta(days=2))
