"""REST and CLI of collector operations: one path per action (the same service functions), every
route guarded — supervisors see all, a collector only their own tasks, customers nothing."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from tests.factories import Person, load_people
from typer.testing import CliRunner

from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.web.app import create_app

PASSWORD = "correct horse battery"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=BUSINESS_TZ)


def add_user(name: str, role: str, customer: str | None = None) -> None:
    args = ["users", "add", name, "--role", role, "--password-stdin"]
    if customer:
        args += ["--customer", customer]
    res = CliRunner().invoke(cli, args, input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output


@pytest.fixture
def client(db: Database) -> TestClient:
    load_people(db, [Person("A"), Person("B")])
    add_user("boss", "supervisor")
    add_user("wang", "collector")
    add_user("liu", "collector")
    add_user("c1", "customer", "A")
    return TestClient(create_app(db, FixedClock(NOW)), raise_server_exceptions=False)


def login(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_tasks_over_rest_supervisor_all_collector_own_customer_nothing(client: TestClient) -> None:
    boss, wang, liu, c1 = (login(client, u) for u in ("boss", "wang", "liu", "c1"))
    body = {"account_id": "A", "kind": "meter_check", "owner": "wang", "note": "reads stopped"}
    r = client.post("/api/v1/tasks", json=body, headers={**boss, "Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["account"], t["account_id"], t["department"], t["owner"], t["status"]) == (
        "A", "A", "marketing", "wang", "open")
    # a retry with the same key opens nothing new
    again = client.post("/api/v1/tasks", json=body, headers={**boss, "Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json()["task_id"] == t["task_id"]
    other = client.post("/api/v1/tasks", json={"account_id": "B", "kind": "billing_correction",
                                               "owner": "liu"}, headers=boss).json()
    # a wrong request is refused naming the rule and the value; nothing stored
    bad = client.post("/api/v1/tasks", json={"account_id": "A", "kind": "teleport"}, headers=boss)
    assert bad.status_code == 422 and "teleport" in bad.json()["message"]
    assert len(client.get("/api/v1/tasks", headers=boss).json()) == 2
    # the collector sees only their own, even when asking for another's
    mine = client.get("/api/v1/tasks", params={"owner": "liu"}, headers=wang).json()
    assert [x["task_id"] for x in mine] == [t["task_id"]]
    # and completes only their own: another's task is "not found"
    r = client.post(f"/api/v1/tasks/{other['task_id']}/done", json={"outcome": "corrected"},
                    headers=wang)
    assert r.status_code == 404
    r = client.post(f"/api/v1/tasks/{t['task_id']}/done", json={"outcome": "meter_ok"}, headers=wang)
    assert r.status_code == 200 and r.json()["outcome"] == "meter_ok"
    assert r.json()["done_by"] == "wang"
    # a collector may not open, assign or escalate; a customer may do nothing here
    assert client.post("/api/v1/tasks", json=body, headers=liu).status_code == 403
    assert client.post(f"/api/v1/tasks/{other['task_id']}/assign", json={"owner": "liu"},
                       headers=liu).status_code == 403
    for path in ("/api/v1/tasks", "/api/v1/contacts/flags", "/api/v1/contacts/coverage",
                 "/api/v1/incentives/report"):
        assert client.get(path, headers=c1).status_code == 403, path
    # hand-over to another department by the supervisor
    r = client.post(f"/api/v1/tasks/{other['task_id']}/assign",
                    json={"owner": "zhao", "department": "customer_service"}, headers=boss)
    assert r.status_code == 200 and r.json()["department"] == "customer_service"
    assert client.post("/api/v1/tasks/escalate", headers=boss).json() == {"escalated": 0}


def test_contacts_and_ratings_over_rest(client: TestClient) -> None:
    boss = login(client, "boss")
    cov = client.get("/api/v1/contacts/coverage", headers=boss).json()
    assert cov[-1] == {"station_id": "(total)", "accounts": 2, "phone_on_file": 2,
                       "phone_verified": 0, "flagged": 0, "verified_share": "0.0000"}
    r = client.post("/api/v1/contacts/A/verify", json={"field": "phone"}, headers=boss)
    assert r.status_code == 200, r.text
    assert r.json()["verified_by"] == "boss"
    st = client.get("/api/v1/contacts/status", params={"account_id": ["A", "B"]}, headers=boss)
    assert sorted((x["account_id"], x["phone_verified"]) for x in st.json()) == [
        ("A", True), ("B", False)]
    bad = client.post("/api/v1/contacts/A/verify", json={"field": "fax"}, headers=boss)
    assert bad.status_code == 422 and "fax" in bad.json()["message"]
    assert client.get("/api/v1/incentives/ratings/A", headers=boss).status_code == 404


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), env={"DIANFEI_NOW": NOW.isoformat()})
    return res.exit_code, res.stdout, res.stderr if res.stderr_bytes is not None else ""


def test_cli_task_contact_incentives(db: Database) -> None:
    load_people(db, [Person("A")])
    code, out, err = run("task", "open", "--account", "A", "--kind", "contact_update", "--owner",
                         "zhao", "--key", "cli-1", "--json")
    assert code == 0, err
    t = json.loads(out)
    assert (t["department"], t["due_at"]) == ("customer_service", "2026-03-07T10:00:00+08:00")
    code, out, _ = run("task", "list", "--department", "customer_service", "--json")
    assert [x["task_id"] for x in json.loads(out)] == [t["task_id"]]
    code, _, err = run("task", "done", str(t["task_id"]), "--outcome", "lunch", "--by", "zhao")
    assert code == 2 and "outcome of a contact_update task must be one of" in err
    code, out, _ = run("task", "done", str(t["task_id"]), "--outcome", "unreachable", "--by",
                       "zhao", "--json")
    assert code == 0 and json.loads(out)["outcome"] == "unreachable"
    code, out, _ = run("contact", "verify", "--account", "A", "--field", "phone", "--by", "zhao",
                       "--value", "13912345678", "--json")
    assert code == 0 and json.loads(out)["field"] == "phone"
    code, out, _ = run("contact", "coverage", "--json")
    assert json.loads(out)[0]["phone_verified"] == 1
    code, out, _ = run("contact", "flags", "--status", "all", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run("task", "escalate", "--json")
    assert code == 0 and json.loads(out) == {"escalated": 0}
    code, out, _ = run("incentives", "report", "--json")
    assert code == 0 and [r["segment"] for r in json.loads(out)] == [
        "standard", "low_income", "repeat_defaulter"]
    code, out, _ = run("incentives", "ratings", "--json")
    assert code == 0 and json.loads(out) == []


def test_the_bill_shows_the_rating(db: Database) -> None:
    from tests.factories import Reads, month_end

    from dianfei.billing.service import run_bill_run
    from dianfei.billing.view import bill_view
    from dianfei.collections.incentives import rate_accounts
    from dianfei.core.clock import Period

    load_people(db, [Person("A")])
    add_user("boss", "supervisor")
    (Reads().add("A", month_end(Period(2025, 12)), 1000_00).add("A", month_end(Period(2026, 1)),
                                                                 1100_00).store(db))
    run_bill_run(db, Period(2026, 1), FixedClock(datetime(2026, 2, 3, 9, tzinfo=BUSINESS_TZ)))
    client = TestClient(create_app(db, FixedClock(NOW)), raise_server_exceptions=False)
    boss = login(client, "boss")
    assert client.get("/api/v1/bills/A/2026-01", headers=boss).json()["credit_rating"] is None
    rate_accounts(db, NOW.date(), clock=FixedClock(NOW))
    doc = client.get("/api/v1/bills/A/2026-01", headers=boss).json()
    assert doc["credit_rating"] == {"grade": "B", "points": "60", "as_of": "2026-03-02"}
    view = bill_view(doc, "zh-CN")
    [section] = [s for s in view.sections if s.key == "credit_rating"]
    assert "B" in section.paragraphs[0] and "60" in section.paragraphs[0]
