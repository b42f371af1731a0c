"""Two collectors recording on the same account at once (PostgreSQL, two connections): both
visits are kept, in order, nothing overwritten; the same request sent twice at once is stored
once and both callers get the same visit."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text

from dianfei.collections.service import events_json
from dianfei.collections.visits import record_visit
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from tests.collections.test_collections_e2e import at, setup
from tests.conftest import backend

pytestmark = pytest.mark.skipif(backend() != "postgresql",
                                reason="concurrent writers need PostgreSQL (SQLite has one writer)")


def _race(db: Database, requests: list[dict[str, Any]]) -> list[int]:
    """Record each request on its own connection, all released at the same instant."""
    gate = threading.Barrier(len(requests))
    got: list[int] = []
    errors: list[BaseException] = []

    def work(kw: dict[str, Any]) -> None:
        try:
            with db.session() as s:  # a connection and transaction of its own
                gate.wait()
                r = record_visit(s, account_id="A", channel="visit", recorded_by=kw["collector_id"],
                                 at=at(date(2026, 1, 30), 10),
                                 clock=FixedClock(at(date(2026, 1, 30), 11)), **kw)
                s.commit()
                got.append(r.visit.visit_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(kw,)) for kw in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return got


def test_two_collectors_at_once_both_kept_in_order(db: Database) -> None:
    setup(db, {"A": {}})
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO collectors (collector_id, name, station_id) "
                       "VALUES ('K2', '李四', 'S1')"))
    got = _race(db, [{"request_id": "k1-1", "collector_id": "K1", "outcome": "refused"},
                     {"request_id": "k2-1", "collector_id": "K2", "outcome": "vacant"}])
    assert len(set(got)) == 2
    with db.engine.connect() as c:
        rows = c.execute(text("SELECT visit_id, request_id, collector_id, outcome FROM "
                              "collection_visits ORDER BY visit_id")).all()
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("k1-1", "K1", "refused"),
                                                        ("k2-1", "K2", "vacant")]
    # each visit's event in the account's history, in the order the visits were stored
    ev = [e["visit_id"] for e in events_json(db, "A") if e["type"] == "visit_recorded"]
    assert ev == [r[0] for r in rows]


def test_the_same_request_twice_at_once_is_stored_once(db: Database) -> None:
    setup(db, {"A": {}})
    same = {"request_id": "retry-1", "collector_id": "K1", "outcome": "wrong_contact"}
    got = _race(db, [dict(same), dict(same)])
    assert len(got) == 2 and got[0] == got[1]
    with db.engine.connect() as c:
        counts = [c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                  for t in ("collection_visits", "collection_tasks")]
    assert counts == [1, 1]
