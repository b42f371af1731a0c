"""A day's visits recorded together (``record_visits``): the same rows, events and audit records
as one ``record_visit`` after the other; one refused request refuses the batch and stores
nothing; retries inside a batch are answered from what was stored."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from dianfei.audit.service import verify
from dianfei.collections.visits import VisitRequest, list_visits, record_visits, visit_json
from dianfei.core.clock import FixedClock
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.db.engine import Database
from tests.collections.test_collections_e2e import at, setup
from tests.collections.test_fieldwork import CLOCK, counts

#: one of each kind of follow-up, on two accounts, by two collectors
DAY = [
    {"request_id": "d1", "account_id": "A", "collector_id": "K1", "outcome": "refused"},
    {"request_id": "d2", "account_id": "B", "collector_id": "K1", "outcome": "promise",
     "promise_on": date(2026, 2, 5), "promise_amount_fen": 7_000},
    {"request_id": "d3", "account_id": "A", "collector_id": "K1", "outcome": "dispute",
     "bill_id": "A-202512-1", "note": "账单有误"},
    {"request_id": "d4", "account_id": "B", "collector_id": "K1", "outcome": "hardship",
     "note": "失业"},
    {"request_id": "d5", "account_id": "A", "collector_id": "K1", "outcome": "vacant"},
]


def _request(i: int, kw: dict[str, Any]) -> VisitRequest:
    args: dict[str, Any] = {"channel": "visit", "at": at(date(2026, 1, 30), 9, i),
                            "recorded_by": "zhang"}
    args.update(kw)
    return VisitRequest(**args)


def test_a_day_recorded_together(db: Database) -> None:
    setup(db, {"A": {}, "B": {}})
    with db.session() as s:
        got = record_visits(s, [_request(i, kw) for i, kw in enumerate(DAY)], clock=CLOCK)
    out = [visit_json(r) for r in got]
    # stored in the order given, each with its follow-up
    assert [o["request_id"] for o in out] == ["d1", "d2", "d3", "d4", "d5"]
    ids = [o["visit_id"] for o in out]
    assert ids == sorted(ids) and not any(o["replayed"] for o in out)
    assert out[1]["promise"]["amount"] == "70.00" and out[1]["promise"]["due_on"] == "2026-02-05"
    assert out[2]["ticket_id"] is not None
    assert [o.get("task") for o in out[3:]] == [
        {"key": f"visit:{ids[3]}:plan_offer", "kind": "plan_offer"},
        {"key": f"visit:{ids[4]}:meter_check", "kind": "meter_check"}]
    # what the batch answered is what is stored (read back as `dianfei visit list` reads it)
    with db.session() as s:
        back = {v["request_id"]: v for v in map(visit_json, list_visits(s))}
    for o in out:
        stored = back[o["request_id"]]
        assert {k: v for k, v in stored.items() if k != "task"} == \
            {k: v for k, v in o.items() if k != "task"}
    with db.engine.connect() as c:
        types = sorted(r[0] for r in c.execute(text("SELECT type FROM collection_events")))
        acts = [r[0] for r in c.execute(text("SELECT action FROM audit_records ORDER BY seq")
                                        ) if r[0] in ("visit.recorded", "ticket.opened")]
        ticket = c.execute(text("SELECT visit_id, bill_id, account_id FROM service_tickets")
                           ).one()
    assert types.count("visit_recorded") == 5 and types.count("promise_made") == 1
    assert types.count("ticket_opened") == 1
    # each visit's record follows its ticket's, in the order the visits were given
    assert acts == ["visit.recorded", "visit.recorded", "ticket.opened", "visit.recorded",
                    "visit.recorded", "visit.recorded"]
    assert tuple(ticket) == (ids[2], "A-202512-1", "A")
    assert verify(db.engine).intact


@pytest.mark.parametrize(("bad", "error", "rule"), [
    ({"account_id": "NOPE"}, NotFoundError, "visit request 'd3': account NOPE does not exist"),
    ({"collector_id": "K9"}, NotFoundError, "visit request 'd3': collector 'K9' is not in"),
    ({"outcome": "promise", "promise_on": date(2026, 2, 5), "promise_amount_fen": 100},
     ValidationError, "visit request 'd3': a promise covers at least"),
    ({"bill_id": "X-1"}, NotFoundError, "visit request 'd3': no bill entry for X-1"),
    ({"at": at(date(2026, 1, 30), 12)}, ValidationError, "visit request 'd3': .*in the future"),
])
def test_one_refused_request_refuses_the_batch_and_stores_nothing(
        db: Database, bad: dict[str, Any], error: type[Exception], rule: str) -> None:
    setup(db, {"A": {}, "B": {}})
    before = counts(db)
    day = [dict(kw) for kw in DAY]
    day[2] = {**day[2], **bad}
    if "promise_on" in bad:
        day[2].pop("bill_id")
        day[2].pop("note")
    with pytest.raises(error, match=rule), db.session() as s:
        record_visits(s, [_request(i, kw) for i, kw in enumerate(day)], clock=CLOCK)
    assert counts(db) == before


def test_retries_in_a_batch_are_answered_from_what_was_stored(db: Database) -> None:
    setup(db, {"A": {}, "B": {}})
    with db.session() as s:
        first = record_visits(s, [_request(0, DAY[0]), _request(1, DAY[1])], clock=CLOCK)
    before = counts(db)
    new = {"request_id": "d9", "account_id": "B", "collector_id": "K1", "outcome": "refused"}
    with db.session() as s:
        again = record_visits(s, [_request(1, DAY[1]), _request(9, new)], clock=CLOCK)
    assert again[0].replayed and not again[1].replayed
    assert again[0].visit.visit_id == first[1].visit.visit_id
    assert again[0].promise is not None and first[1].promise is not None
    assert again[0].promise.promise_id == first[1].promise.promise_id
    after = counts(db)
    assert after[0] == before[0] + 1 and after[1] == before[1]  # one visit more, no promise
    with pytest.raises(ValidationError, match="'d9' is given twice"), db.session() as s:
        record_visits(s, [_request(9, new), _request(10, new)], clock=CLOCK)
    with db.session() as s:  # an empty day records nothing
        assert record_visits(s, [], clock=FixedClock(CLOCK.now())) == []
    assert counts(db) == after
