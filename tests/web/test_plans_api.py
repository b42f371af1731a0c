"""Payment plans over REST: a collector proposes (their name, not the body's, is the proposer),
a supervisor approves, a retry with the same Idempotency-Key is stored once, refusals name the
policy rule, a collector sees only their own plans, the report is for supervisors."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.collections.test_collections_e2e import at
from tests.factories import Person, load_people
from tests.web.test_security import add_user, token

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.web.app import create_app

NOW = FixedClock(at(date(2026, 1, 20), 10))


@pytest.fixture
def client(db: Database) -> TestClient:
    # B owes 3,000 yuan (above the 2,000-yuan approval limit), A 200 yuan
    load_people(db, [Person("A"), Person("B")])
    with db.session() as s:
        for cid, amount in (("A", 20_000), ("B", 300_000)):
            ledger.post_entry(s, clock=FixedClock(at(date(2026, 1, 3))), account_id=cid,
                              customer_id=cid, kind="bill", amount=amount,
                              reference=f"{cid}-202512-1", due_on=date(2026, 1, 18))
    add_user("li", "collector")
    add_user("zhao", "collector")
    add_user("wang", "supervisor")
    return TestClient(create_app(db, clock=NOW), raise_server_exceptions=False)


def test_collector_proposes_supervisor_approves(client: TestClient, db: Database) -> None:
    li, zhao, wang = token(client, "li"), token(client, "zhao"), token(client, "wang")
    body = {"account_id": "B", "kind": "pay_plan", "down_payment": "600.00", "instalments": 6}
    r = client.post("/api/v1/plans", json=body, headers={**li, "Idempotency-Key": "k-1"})
    assert r.status_code == 201, r.text
    plan = r.json()
    assert (plan["status"], plan["requested_by"], plan["total"], len(plan["instalments"])) == (
        "proposed", "li", "3000.00", 7)
    again = client.post("/api/v1/plans", json=body, headers={**li, "Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json()["plan_id"] == plan["plan_id"]
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM payment_plans")).scalar() == 1
    pid = plan["plan_id"]
    # a collector may not approve; the supervisor does, as themself
    assert client.post(f"/api/v1/plans/{pid}/approval", headers=li).status_code == 403
    r = client.post(f"/api/v1/plans/{pid}/approval", headers=wang)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["approved_by"]) == ("active", "wang")
    # collectors see their own plans only
    assert [p["plan_id"] for p in client.get("/api/v1/plans", headers=li).json()] == [pid]
    assert client.get("/api/v1/plans", headers=zhao).json() == []
    assert client.get(f"/api/v1/plans/{pid}", headers=zhao).status_code == 404
    assert client.get(f"/api/v1/plans/{pid}", headers=li).json()["account_id"] == "B"
    assert [p["plan_id"] for p in client.get("/api/v1/plans", headers=wang).json()] == [pid]
    # the report is a supervisor's
    assert client.get("/api/v1/plans/report?from=2026-01-01&to=2026-01-31",
                      headers=li).status_code == 403
    rep = client.get("/api/v1/plans/report?from=2026-01-01&to=2026-01-31&by=collector",
                     headers=wang)
    assert rep.status_code == 200, rep.text
    assert rep.json()["rows"] == [{"collector": "K1", "in_force": 1, "kept": 1, "broken": 0,
                                   "completed": 0, "recovered": "0.00", "kept_rate": "100.0"}]


def test_refusals_name_the_rule_and_store_nothing(client: TestClient, db: Database) -> None:
    li = token(client, "li")
    r = client.post("/api/v1/plans", headers=li, json={
        "account_id": "A", "kind": "instalment", "down_payment": "40.00",
        "instalments": [{"amount": "100.00"}, {"amount": "60.00"}]})
    assert r.status_code == 201, r.text  # within policy: active at once, periods of the bills
    assert r.json()["status"] == "active"
    assert [i["period"] for i in r.json()["instalments"]] == [None, "2025-12", "2026-01"]
    r = client.post("/api/v1/plans", headers=li, json={
        "account_id": "B", "kind": "pay_plan", "down_payment": "100.00", "instalments": 3})
    assert r.status_code == 422
    assert r.json()["message"].startswith("plan refused by policy residential.standard: "
                                          "down_payment_min — the down payment 100.00 is below "
                                          "600.00")
    r = client.post("/api/v1/plans", headers=li, json={
        "account_id": "B", "kind": "pay_plan", "instalments": [{"amount": "3000.00"}]})
    assert r.status_code == 422 and "need due_on" in r.json()["message"]
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM payment_plans")).scalar() == 1
