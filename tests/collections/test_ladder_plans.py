"""Ladder files are refused when a level overlaps or cannot be reached; plans pause dunning and
break on a missed instalment; waivers need a second person."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.collections.ladder import LadderError, evaluate, ladders, load_ladders, parse_ladder
from dianfei.collections.plans import agree_plan, waive_late_fees
from dianfei.collections.service import amount_due, events_json
from dianfei.core.clock import FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.risk.service import RulesScorer
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, run, setup

HEAD = 'ladder = "x"\nsource = "test"\ncustomer_classes = ["residential"]\n'


def level(name: str, extra: str, actions: str = '[{ type = "sms", notice = "reminder" }]') -> str:
    return f'[[level]]\nname = "{name}"\n{extra}\nactions = {actions}\n'


def test_packaged_ladders_load() -> None:
    assert sorted(ld.ladder_id for ld in ladders()) == ["business", "hardship", "low_income",
                                                         "repeat_defaulter", "residential",
                                                         "strategic", "suspected_theft"]


def test_overlapping_levels_refused_naming_file_and_levels() -> None:
    text = HEAD + level("a", "min_days = 1\nmax_days = 10") + level("b", "min_days = 10")
    with pytest.raises(LadderError, match=r"res\.toml: levels 'a' and 'b' overlap"):
        parse_ladder(text, "res.toml")


def test_disjoint_by_amount_or_band_is_not_overlap() -> None:
    text = (HEAD + level("a", 'min_days = 1\nmax_amount = "9.99"') +
            level("b", 'min_days = 1\nmin_amount = "10.00"\nrisk_bands = ["high"]') +
            level("c", 'min_days = 1\nmin_amount = "10.00"\nrisk_bands = ["low", "medium"]'))
    assert [lv.name for lv in parse_ladder(text, "ok.toml").levels] == ["a", "b", "c"]


@pytest.mark.parametrize(("extra", "why"), [
    ("min_days = 20\nmax_days = 10", "unreachable: min_days 20 > max_days 10"),
    ("min_days = -5\nmax_days = 0", "unreachable: max_days 0 < 1"),
    ('min_amount = "50.00"\nmax_amount = "10.00"', "unreachable: min_amount above max_amount"),
    ("risk_bands = []", "unreachable: risk_bands"),
    ('risk_bands = ["extreme"]', "unreachable: risk_bands"),
])
def test_unreachable_levels_refused(extra: str, why: str) -> None:
    with pytest.raises(LadderError, match=rf"f\.toml level bad.*{why.split(':')[0]}"):
        parse_ladder(HEAD + level("bad", extra), "f.toml")


def test_stop_level_that_could_match_protected_customers_refused() -> None:
    with pytest.raises(LadderError, match="protected customers, who are never suspended"):
        parse_ladder(HEAD + level("stop", "min_days = 30", '[{ type = "suspension_order" }]'), "p.toml")


def test_two_ladders_for_the_same_class_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(HEAD + level("a", "min_days = 1"))
    (tmp_path / "b.toml").write_text(HEAD.replace('"x"', '"y"') + level("a", "min_days = 1"))
    with pytest.raises(LadderError, match=r"b\.toml: ladder 'y' and 'x'"):
        load_ladders(tmp_path)


def test_evaluation_counts_from_the_due_date_and_is_deterministic() -> None:
    snap = pl.DataFrame({
        "account_id": ["A", "B", "C", "D"], "customer_class": ["residential"] * 3 + ["commercial"],
        "segment": ["standard"] * 4, "days_overdue": [1, 45, 45, 8],
        "amount_overdue": [100, 10_000, 10_000, 500], "risk_band": ["low", "low", "low", "high"],
        "protected": [False, False, True, False], "open_plan": [False, False, False, False]})
    out = evaluate(snap, ladders())
    assert out["level"].to_list() == ["reminder", "stop_notice", "protected_visit", "high_risk_visit"]
    assert evaluate(snap, ladders()).equals(out)
    # an open plan pauses the ladder
    paused = evaluate(snap.with_columns(pl.lit(True).alias("open_plan")), ladders())
    assert paused["level"].to_list() == [None] * 4


def test_rules_scorer_is_transparent() -> None:
    f = pl.DataFrame({"account_id": ["A", "B", "C"], "late_count": [0, 2, 5],
                      "avg_days_late": [0.0, 6.0, 20.0], "arrears": [0, 100, 60_000],
                      "broken_plans": [0, 0, 1]})
    out = RulesScorer().score(f)
    assert out["score"].to_list() == [0, 40, 100]  # B: 2 late × 10 + slow 10 + arrears 10
    assert out["band"].to_list() == ["low", "medium", "high"]
    assert out["reasons"][2] == "late bills 5; slow payer; arrears now; broken plans 1"


def test_plan_pauses_dunning_and_breaks_on_a_missed_instalment(db: Database) -> None:
    setup(db, {"A": {}})
    switch, notifier = FakeSwitch(), FakeNotifier()
    run(db, date(2026, 1, 18), date(2026, 2, 1), switch, notifier)
    with db.session() as s, pytest.raises(ValidationError, match="other than the requester"):
        agree_plan(s, account_id="A", instalments=[(date(2026, 2, 10), 10_000)],
                   requested_by="li", approved_by="li", clock=FixedClock(at(date(2026, 2, 2))))
    with db.session() as s:
        agree_plan(s, account_id="A", instalments=[(date(2026, 2, 10), 10_000),
                                                   (date(2026, 3, 10), 12_000)],
                   requested_by="li", approved_by="wang", clock=FixedClock(at(date(2026, 2, 2))))
    run(db, date(2026, 2, 2), date(2026, 2, 17), switch, notifier)
    evs = [e for e in events_json(db, "A") if e["type"] != "late_fee_accrued"
           and not e["type"].startswith(("rating_", "task_", "contact_"))]
    after = [(e["type"], e.get("level") or e.get("notice")) for e in evs if e["at"] >= "2026-02-02"]
    # nothing dunned while the plan stands; the missed 10 Feb instalment breaks it on the 11th and
    # the ladder resumes where it was (final reminder already sent once for this bill: not again)
    # until day 30 brings the stop notice
    assert after == [("plan_agreed", None), ("plan_broken", None), ("dunning_level", "stop_notice"),
                     ("notice_sent", "stop_notice"), ("notice_sent", "stop_notice")]
    assert [e["at"][:10] for e in evs if e["type"] == "plan_broken"] == ["2026-02-11"]


def test_waiver_needs_reason_and_a_second_person(db: Database) -> None:
    setup(db, {"A": {}})
    # 15 days at 1‰ on 200 yuan: 2.60 posted at the end of January, 0.40 accrued since
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    before = amount_due(db.engine.connect(), "A")
    assert before == 20_000 + 300
    with db.session() as s, pytest.raises(ValidationError, match="other than the requester"):
        waive_late_fees(s, bill_id="A-202512-1", reason="hospital stay", requested_by="li",
                        approved_by="li", clock=FixedClock(at(date(2026, 2, 2), 10)))
    with db.session() as s:
        w = waive_late_fees(s, bill_id="A-202512-1", reason="hospital stay", requested_by="li",
                            approved_by="wang", clock=FixedClock(at(date(2026, 2, 2), 10)))
        assert w.amount == 300
    assert amount_due(db.engine.connect(), "A") == before - 300
    # no more accrual on the waived bill
    run(db, date(2026, 2, 3), date(2026, 2, 8), FakeSwitch(), FakeNotifier())
    assert amount_due(db.engine.connect(), "A") == before - 300
    assert [e["amount"] for e in events_json(db, "A") if e["type"] == "waiver"] == ["3.00"]


def _lf_items(db: Database, account: str, bill: str) -> list[str]:
    from dianfei.payments.service import open_items

    with db.engine.connect() as conn:
        items = open_items(conn, [account])
    return [r for r in items["reference"].to_list() if r.startswith(f"LF:{bill}:")]


def test_waiver_reverses_the_fees_so_allocation_no_longer_sees_them(db: Database) -> None:
    from dianfei.payments.service import check
    from tests.collections.test_collections_e2e import pay

    # given A's 200-yuan bill accrued 3.00 yuan of late fees over 15 days (2.60 posted at the
    # end of January, 0.40 accrued since)
    setup(db, {"A": {}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    assert len(_lf_items(db, "A", "A-202512-1")) == 1  # one entry for January, not one a day
    before = amount_due(db.engine.connect(), "A")
    # when the fees are waived
    with db.session() as s:
        w = waive_late_fees(s, bill_id="A-202512-1", reason="hospital stay", requested_by="li",
                            approved_by="wang", clock=FixedClock(at(date(2026, 2, 2), 10)))
    # then every fee entry has a reversal with the waiver's reason, none is open any more,
    # what is due fell by exactly the waived amount, and a payment of the bill settles it all
    assert w.amount == 300
    with db.engine.connect() as conn:
        revs = conn.execute(text(
            "SELECT r.amount, r.reason FROM ledger_entries r JOIN ledger_entries e "
            "ON e.entry_id = r.reverses_entry_id WHERE e.kind = 'late_fee'")).all()
        assert sum(r[0] for r in revs) == -260 and {r[1] for r in revs} == {"hospital stay"}
        assert conn.execute(text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'adjustment'")
                            ).scalar_one() == 0
    assert _lf_items(db, "A", "A-202512-1") == []
    assert amount_due(db.engine.connect(), "A") == before - 300 == 20_000
    pay(db, "A", 20_000, at(date(2026, 2, 2), 11), "T-A-after-waiver")
    with db.engine.connect() as conn:
        assert check(conn) == []
        alloc = conn.execute(text("SELECT allocated_to, SUM(amount) FROM payment_allocations "
                                  "GROUP BY allocated_to ORDER BY allocated_to")).all()
    assert [tuple(r) for r in alloc] == [("bill", 20_000)]  # nothing went to a waived fee
    ev = [e for e in events_json(db, "A") if e["type"] == "waiver"]
    assert len(ev) == 1 and ev[0]["approved_by"] == "wang" and ev[0]["reason"] == "hospital stay"


def test_waiver_of_a_partly_paid_fee_returns_the_money_to_credit(db: Database) -> None:
    from dianfei.payments.service import check
    from tests.collections.test_collections_e2e import pay

    # given A paid the bill and 1.00 yuan of the 2.60 yuan of fees posted for January
    setup(db, {"A": {}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    pay(db, "A", 20_100, at(date(2026, 2, 2), 11), "T-A-part")
    with db.engine.connect() as conn:
        fee_paid = conn.execute(text("SELECT SUM(amount) FROM payment_allocations "
                                     "WHERE allocated_to = 'late_fee'")).scalar_one()
    assert fee_paid == 100
    # when the fees are waived
    with db.session() as s:
        waive_late_fees(s, bill_id="A-202512-1", reason="billing error", requested_by="li",
                        approved_by="wang", clock=FixedClock(at(date(2026, 2, 2), 12)))
    # then the 1.00 yuan paid on the fee is credit again; nothing is open; invariants hold
    assert _lf_items(db, "A", "A-202512-1") == []
    assert ledger.balance(db.engine.connect(), "A") == -100
    with db.engine.connect() as conn:
        assert check(conn) == []
        net = dict(conn.execute(text("SELECT allocated_to, SUM(amount) FROM payment_allocations "
                                     "GROUP BY allocated_to")).all())
    assert net == {"bill": 20_000, "late_fee": 0, "credit": 100}
    # and later days accrue nothing more on the waived bill
    run(db, date(2026, 2, 3), date(2026, 2, 6), FakeSwitch(), FakeNotifier())
    assert ledger.balance(db.engine.connect(), "A") == -100
