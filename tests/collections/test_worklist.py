"""Daily worklists: every account the ladder sends to a collector on exactly one list, ranked by
expected recovery and explained; rules as data; reassignment and balancing audited; the
supervisor view."""

from __future__ import annotations

from datetime import UTC, timedelta

import polars as pl
import pytest
from sqlalchemy import select, text

from dianfei.collections import worklist as wl
from dianfei.collections.assignment import parse_rules
from dianfei.collections.models import CollectionTask
from dianfei.core.clock import FixedClock
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.db.engine import Database
from dianfei.payments.service import post_payments_frame
from tests.collections.worklist_fixtures import DAY, PEOPLE, add_tasks, at, load

CLOCK = FixedClock(at(DAY, 18))


def _audit(db: Database, action: str) -> list[str]:
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT subject FROM audit_records "
                                                "WHERE action = :a ORDER BY 1"), {"a": action})]


def test_every_account_on_exactly_one_list_ranked_and_explained(db: Database) -> None:
    load(db)
    report = wl.build_worklists(db, DAY, clock=CLOCK)
    assert report == {"day": DAY.isoformat(), "accounts": 7, "added": 7, "collectors": 4}
    rows = wl.worklists(db, DAY)
    assert sorted(r["account"] for r in rows) == sorted(PEOPLE)
    # by default each customer goes to its own (active) collector
    assert {r["account"]: r["collector"] for r in rows} == {c: p[1] for c, p in PEOPLE.items()}
    assert {r["rule"] for r in rows} == {"own collector"}
    for k in ("K1", "K2", "K3", "K4"):
        mine = [r for r in rows if r["collector"] == k]
        assert [r["rank"] for r in mine] == list(range(1, len(mine) + 1))
        exp = [int(r["expected_recovery"].replace(".", "")) for r in mine]
        assert exp == sorted(exp, reverse=True)
    c01 = next(r for r in rows if r["account"] == "C01")
    assert c01["overdue_amount"] == "500.00" and c01["days_overdue"] == 40
    assert c01["reason"].startswith("¥500.00 overdue 40 days; ")
    assert "% likely to pay; reasons: " in c01["reason"]
    assert c01["account_id"] == "C01" and c01["task_kinds"] == ["collector_visit"]
    # the top of each list is the same rows, the rest left out
    assert wl.worklists(db, DAY, top=1) == [r for r in rows if r["rank"] <= 1]
    assert len(wl.worklists(db, DAY, top=1)) == 4
    # building again adds nothing; a task opened since adds only that account
    assert wl.build_worklists(db, DAY, clock=CLOCK)["added"] == 0
    assert _audit(db, "worklist.built") == [DAY.isoformat()]


def test_expected_recovery_is_probability_times_amount_times_age() -> None:
    from dianfei.collections.assignment import Rules, rank

    work = pl.DataFrame({"account_id": ["A", "B", "C"], "amount_overdue": [100_000, 100_000, 100],
                         "days_overdue": [0, 90, 0], "p_default": [0.2, 0.2, None],
                         "risk_reasons": ["late bills 2", "", None]})
    out = rank(work, Rules(age_half_life_days=90))
    assert out["account_id"].to_list() == ["A", "B", "C"]
    assert out["expected"].to_list() == [80_000, 40_000, 50]  # 0.8×1000; ×½ at one half-life
    assert out["reason"][0] == "¥1,000.00 overdue 0 days; 80% likely to pay; reasons: late bills 2"
    assert out["reason"][2].endswith("50% likely to pay; reasons: no risk signals")


def test_rules_route_by_language_and_refuse_an_inactive_collector(db: Database) -> None:
    load(db)
    rules = parse_rules('[pools]\ntibetan = ["K2", "K3"]\n'
                        '[[rule]]\nname = "Tibetan speakers"\nlanguages = ["bo"]\npool = "tibetan"\n'
                        '[[rule]]\nname = "big S2 debts"\nstations = ["S2"]\nmin_amount = "100.00"\n'
                        'collector = "K3"\n')
    wl.set_roster(db, "K3", by="boss", active=False)
    with pytest.raises(ValidationError, match="assignment rule 'big S2 debts': collector 'K3' "
                                              "is inactive"):
        wl.build_worklists(db, DAY, clock=CLOCK, rules=rules)
    assert wl.worklists(db, DAY) == []  # nothing stored
    wl.set_roster(db, "K3", by="boss", active=True)
    wl.set_roster(db, "K1", by="boss", active=False)
    wl.build_worklists(db, DAY, clock=CLOCK, rules=rules)
    rows = {r["account"]: (r["collector"], r["rule"]) for r in wl.worklists(db, DAY)}
    # C06 speaks Tibetan (first rule wins over the amount rule); the pool's least loaded takes
    # each in rank order; K1 is off duty, so its customers go to the least-loaded of S1
    assert rows["C03"][1] == rows["C06"][1] == "Tibetan speakers"
    assert (rows["C03"][0], rows["C06"][0]) == ("K2", "K3")
    assert rows["C01"] == ("K2", "station least loaded")
    assert rows["C02"][0] == "K2" and rows["C04"] == ("K2", "own collector")
    assert rows["C05"] == ("K3", "big S2 debts") and rows["C07"] == ("K4", "own collector")


def test_an_off_duty_collectors_customers_go_to_a_colleague_who_speaks_their_language(
        db: Database) -> None:
    load(db)
    wl.set_roster(db, "K4", by="boss", active=False)
    wl.set_roster(db, "K3", by="boss", languages=["zh", "bo"])
    wl.build_worklists(db, DAY, clock=CLOCK)
    rows = {r["account"]: (r["collector"], r["rule"]) for r in wl.worklists(db, DAY)}
    assert rows["C06"] == ("K3", "station least loaded, speaks bo")
    assert rows["C07"] == ("K3", "station least loaded")


def test_reassign_and_balance_are_audited(db: Database) -> None:
    load(db)
    wl.build_worklists(db, DAY, clock=CLOCK)
    wl.set_roster(db, "K2", by="boss", active=False)
    with pytest.raises(ValidationError, match="reassignment: collector 'K2' is inactive"):
        wl.reassign(db, DAY, to="K2", by="boss", reason="cover", account_id="C01")
    wl.set_roster(db, "K2", by="boss", active=True)
    with pytest.raises(NotFoundError, match="no worklist"):
        wl.reassign(db, DAY, to="K2", by="boss", reason="cover", account_id="C05x")
    out = wl.reassign(db, DAY, to="K2", by="boss", reason="K1 at training", account_id="C01")
    assert out["moved"] == 1
    # a retried request moves nothing more and is recorded once
    assert wl.reassign(db, DAY, to="K2", by="boss", reason="K1 at training",
                       account_id="C01")["moved"] == 0
    assert _audit(db, "worklist.reassigned") == ["C01"]
    moved = wl.reassign(db, DAY, to="K4", by="boss", reason="K3 sick", from_collector="K3")
    assert moved["moved"] == 1
    rows = {r["account"]: r for r in wl.worklists(db, DAY)}
    assert rows["C01"]["collector"] == "K2" and rows["C01"]["moved_from"] == "K1"
    assert rows["C05"]["collector"] == "K4"
    # K4 now has 3 rows and a capacity of 1: two lowest-ranked go to the S2 colleague with room
    wl.set_roster(db, "K4", by="boss", capacity=1)
    res = wl.balance_worklists(db, DAY, by="boss")
    assert res["moved"] == 2 and {m["to"] for m in res["moves"]} == {"K3"}
    after = [r for r in wl.worklists(db, DAY) if r["collector"] == "K4"]
    assert [r["account"] for r in after] == ["C06"]  # the best-ranked stays
    assert _audit(db, "worklist.balanced") == [DAY.isoformat()]


def test_supervisor_view_counts_worked_paid_and_recovered(db: Database) -> None:
    load(db)
    wl.build_worklists(db, DAY, clock=CLOCK)
    with db.session() as s:
        task = s.scalars(select(CollectionTask).where(CollectionTask.account_id == "C02")).one()
        task.status, task.done_at, task.done_by = "done", at(DAY + timedelta(days=1)), "K1"
    with db.engine.begin() as conn:
        post_payments_frame(conn, pl.DataFrame(
            {"channel": ["alipay"], "transaction_id": ["T1"], "account_id": ["C01"],
             "amount": [30_000], "paid_at": [at(DAY + timedelta(days=1), 10).astimezone(UTC)]},
            schema={"channel": pl.String, "transaction_id": pl.String, "account_id": pl.String,
                    "amount": pl.Int64, "paid_at": pl.Datetime("us", "UTC")}),
            clock=FixedClock(at(DAY + timedelta(days=1), 10)), source="test")
    view = wl.supervisor_view(db, DAY, DAY + timedelta(days=1))
    k1 = next(c for c in view["collectors"] if c["collector"] == "K1")
    assert k1 == {"collector": "K1", "name": "张三", "list_size": 2, "accounts": 2, "worked": 1,
                  "visits": 0, "paid": 1, "recovered": "300.00"}
    assert {s["station"]: s["recovered"] for s in view["stations"]} == {"S1": "300.00",
                                                                          "S2": "0.00"}
    assert [r["region"] for r in view["regions"]] == ["R1", "R2"]


def test_run_day_builds_the_days_lists(db: Database) -> None:
    from dianfei.collections.service import run_day
    from tests.collections.fakes import FakeNotifier, FakeSwitch

    load(db)
    report = run_day(db, DAY, clock=CLOCK, switch=FakeSwitch(), notifier=FakeNotifier())
    assert report.worklist_accounts == 7
    add_tasks(db, ["C01"], kind="plan_offer")  # not collector-bound by the packaged rules
    run_day(db, DAY, clock=CLOCK, switch=FakeSwitch(), notifier=FakeNotifier())
    assert len(wl.worklists(db, DAY)) == 7


def test_timeline_reads_every_source_oldest_first(db: Database) -> None:
    from dianfei.collections.timeline import account_timeline
    from tests.factories import Reads

    load(db)
    Reads().add("C01", at(DAY - timedelta(days=60), 0), 100_000).store(db)
    wl.build_worklists(db, DAY, clock=CLOCK)
    items = account_timeline(db, "C01", clock=FixedClock(at(DAY, 19)))
    kinds = [i["kind"] for i in items]
    assert kinds == ["read", "task", "worklist", "risk"]
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    assert items[0]["summary"] == "meter MC01 read 1000.00 kWh (ami)"
    assert items[1]["summary"] == "task collector_visit (test) opened, open"
    assert items[2]["summary"].startswith("on collector K1's list for 2026-03-02 (own collector): ¥500.00")
    assert items[3]["summary"].startswith("risk score ")
    assert all(i["account"] == "C01" and i["account_id"] == "C01" for i in items)
    with pytest.raises(NotFoundError):
        account_timeline(db, "nobody", clock=CLOCK)


def test_each_row_shows_the_contact_data_quality(db: Database) -> None:
    from dianfei.collections.contacts import verify_contact

    load(db)
    wl.build_worklists(db, DAY, clock=CLOCK)
    rows = {r["account"]: r for r in wl.worklists(db, DAY)}
    # nobody's phone was verified yet; no flag is open before the day's contact check
    assert all(r["phone_verified"] is False for r in rows.values())
    assert all(r["contact_flag"] is None for r in rows.values())
    with db.session() as s:
        verify_contact(s, account_id="C01", field="phone", verified_by="desk", clock=CLOCK)
    after = {r["account"]: r for r in wl.worklists(db, DAY)}
    assert after["C01"]["phone_verified"] is True and after["C02"]["phone_verified"] is False
