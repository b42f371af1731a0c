"""``dianfei visit …`` / ``dianfei ticket …`` and the field-work REST API call the same service
functions: what one records the other lists; retries are stored once; refusals name the rule;
collectors record and see only their own visits, supervisors decide tickets."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dianfei.cli.main import app as cli
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.web.app import create_app
from tests.collections.test_collections_e2e import at, setup

PASSWORD = "correct horse battery"
NOW = at(date(2026, 1, 30), 11)


def invoke(*args: str, input: str | None = None) -> Any:
    res = CliRunner().invoke(cli, list(args), input=input)
    assert res.exit_code == 0, res.output
    return json.loads(res.output) if "--json" in args else res.output


@pytest.fixture
def world(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    setup(db, {"A": {}, "B": {}})
    monkeypatch.setenv("DIANFEI_NOW", NOW.isoformat())
    for role in ("supervisor", "collector", "cashier"):
        invoke("users", "add", role, "--role", role, "--password-stdin", input=PASSWORD + "\n")
    return db


def login(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_cli_records_lists_and_works_tickets(world: Database) -> None:
    v = invoke("visit", "record", "--account", "A", "--collector", "K1", "--outcome", "promise",
               "--channel", "call", "--at", "2026-01-30T10:00", "--promise-on", "2026-02-06",
               "--promise-amount", "150.00", "--request-id", "cli-1", "--by", "zhang", "--json")
    assert (v["account"], v["account_id"], v["outcome"], v["promise"]["amount"]) == (
        "A", "A", "promise", "150.00")
    again = invoke("visit", "record", "--account", "A", "--collector", "K1", "--outcome",
                   "promise", "--channel", "call", "--at", "2026-01-30T10:00", "--promise-on",
                   "2026-02-06", "--promise-amount", "150.00", "--request-id", "cli-1", "--json")
    assert (again["visit_id"], again["replayed"]) == (v["visit_id"], True)
    assert [x["visit_id"] for x in invoke("visit", "list", "--account", "A", "--json")] == [
        v["visit_id"]]
    bad = CliRunner().invoke(cli, ["visit", "record", "--account", "A", "--collector", "K1",
                                   "--outcome", "promise", "--promise-on", "2026-01-01",
                                   "--promise-amount", "150.00"])
    assert bad.exit_code == 2 and "cannot be dated in the past" in bad.output
    t = invoke("ticket", "open", "--account", "B", "--category", "billing_dispute", "--bill",
               "B-202512-1", "--summary", "读数不对", "--by", "desk", "--json")
    assert (t["status"], t["sla_due_at"], t["bill_id"]) == (
        "open", "2026-02-05T00:00:00+08:00", "B-202512-1")
    e = invoke("ticket", "escalate", str(t["ticket_id"]), "--by", "desk", "--json")
    assert (e["status"], e["escalated_to"]) == ("escalated", "supervisor")
    d = invoke("ticket", "decide", str(t["ticket_id"]), "--decision", "bill corrected",
               "--by", "li", "--json")
    assert (d["status"], d["decided_by"], d["decision"]) == ("decided", "li", "bill corrected")
    s = invoke("ticket", "survey", "--ticket", str(t["ticket_id"]), "--score", "4", "--json")
    assert (s["subject"], s["score"]) == ("ticket", 4)
    listed = invoke("ticket", "list", "--account", "B", "--json")
    assert [(x["ticket_id"], x["satisfaction"]) for x in listed] == [(t["ticket_id"], 4)]
    events = invoke("collect", "events", "--account", "B", "--json")
    assert [x["type"] for x in events if x["type"].startswith("ticket_") or x["type"] == "survey"
            ] == ["ticket_opened", "ticket_escalated", "ticket_decided", "survey"]


def test_rest_visits_tickets_surveys_and_who_may_do_what(world: Database) -> None:
    client = TestClient(create_app(world, clock=FixedClock(NOW)))
    sup, col, desk = login(client, "supervisor"), login(client, "collector"), login(client, "cashier")
    body = {"request_id": "api-1", "account_id": "A", "collector_id": "K1", "channel": "visit",
            "outcome": "dispute", "at": "2026-01-30T10:00:00+08:00", "bill_id": "A-202512-1"}
    r = client.post("/api/v1/visits", json=body, headers=sup)
    assert r.status_code == 201, r.text
    visit = r.json()
    assert client.post("/api/v1/visits", json=body, headers=sup).json()["visit_id"] == visit["visit_id"]
    # a refusal names the rule and stores nothing
    r = client.post("/api/v1/visits", json={**body, "request_id": "api-2", "outcome": "promise",
                                            "bill_id": None, "promise_on": "2026-02-02"},
                    headers=sup)
    assert r.status_code == 422 and "needs a date and an amount" in r.json()["message"]
    assert [v["visit_id"] for v in client.get("/api/v1/visits?account=A", headers=sup).json()] == [
        visit["visit_id"]]
    # a collector user not linked to a collector records nothing and sees nothing
    assert client.post("/api/v1/visits", json={**body, "request_id": "api-3"},
                       headers=col).status_code == 403
    assert client.get("/api/v1/visits", headers=col).json() == []
    # the dispute's ticket: the desk reads it, only a supervisor decides it
    tickets = client.get("/api/v1/tickets?account=A", headers=desk).json()
    assert [(t["category"], t["visit_id"]) for t in tickets] == [("billing_dispute", visit["visit_id"])]
    tid = tickets[0]["ticket_id"]
    assert client.post(f"/api/v1/tickets/{tid}/decision", json={"decision": "x"},
                       headers=col).status_code == 403
    r = client.post(f"/api/v1/tickets/{tid}/decision", json={"decision": "bill stands"}, headers=sup)
    assert r.status_code == 200 and r.json()["decided_by"] == "supervisor"
    r = client.post("/api/v1/tickets", json={"request_id": "t-2", "account_id": "B",
                                             "category": "collector_complaint"}, headers=desk)
    assert r.status_code == 201 and r.json()["opened_by"] == "cashier"
    r = client.post("/api/v1/surveys", json={"request_id": "s-1", "subject": "visit",
                                             "subject_id": visit["visit_id"], "score": 5},
                    headers=desk)
    assert r.status_code == 201 and r.json()["score"] == 5
    assert client.post("/api/v1/surveys", json={"request_id": "s-2", "subject": "visit",
                                                "subject_id": visit["visit_id"], "score": 5},
                       headers=col).status_code == 403
