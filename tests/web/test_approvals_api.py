"""Approvals over REST: a collector asks for a waiver (their name, not the body's, is the maker),
a supervisor approves it and the fees are waived; the maker cannot decide their own (403
maker_is_checker), a role without the kind's permission gets 403, a second decision 409, a bad
payload 422 naming the field; the list pages and filters."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from tests.approvals.helpers import PASSWORD, add_staff, clock
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import run, setup

from dianfei.collections.service import amount_due
from dianfei.db.engine import Database
from dianfei.web.app import create_app

BILL = "A-202512-1"


@pytest.fixture
def client(db: Database) -> TestClient:
    setup(db, {"A": {}, "B": {"amount": 50_000}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    add_staff(db)
    return TestClient(create_app(db, clock=clock(date(2026, 2, 2))),
                      raise_server_exceptions=False)


def auth(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def due(db: Database, account: str = "A") -> int:
    with db.engine.connect() as conn:
        return amount_due(conn, account)


def test_ask_then_a_supervisor_approves(client: TestClient, db: Database) -> None:
    li, wang, zhao = auth(client, "li"), auth(client, "wang"), auth(client, "zhao")
    before = due(db)
    r = client.post("/api/v1/approvals", headers=li, json={
        "kind": "waiver", "bill_id": BILL, "reason": "hospital stay"})
    assert r.status_code == 201, r.text
    req = r.json()
    assert (req["state"], req["requested_by"], req["amount"]) == ("pending", "li", "3.00")
    rid = req["request_id"]
    assert client.get(f"/api/v1/approvals/{rid}", headers=wang).json()["state"] == "pending"
    # the collector may not decide; the supervisor does, as themself
    r = client.post(f"/api/v1/approvals/{rid}/approve", headers=li)
    assert r.status_code == 403
    r = client.post(f"/api/v1/approvals/{rid}/approve", headers=wang)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["decided_by"]) == ("executed", "wang")
    assert due(db) == before - 300
    r = client.post(f"/api/v1/approvals/{rid}/approve", headers=zhao)
    assert r.status_code == 409 and r.json()["error"] == "already_decided"
    r = client.post(f"/api/v1/approvals/{rid}/reject", headers=zhao, json={"reason": "no"})
    assert r.status_code == 409
    r = client.get("/api/v1/audit/verify", headers=auth(client, "sun"))
    assert r.status_code == 200 and r.json()["intact"] is True


def test_four_eyes_and_roles(client: TestClient, db: Database) -> None:
    wang, zhou, sun = auth(client, "wang"), auth(client, "zhou"), auth(client, "sun")
    r = client.post("/api/v1/approvals", headers=wang, json={
        "kind": "write_off", "reference": "B-202512-1", "reason": "uncollectable"})
    assert r.status_code == 201, r.text
    rid = r.json()["request_id"]
    r = client.post(f"/api/v1/approvals/{rid}/approve", headers=wang)
    assert r.status_code == 403 and r.json()["error"] == "maker_is_checker"
    r = client.post(f"/api/v1/approvals/{rid}/reject", headers=wang, json={"reason": "x"})
    assert r.status_code == 403 and r.json()["error"] == "maker_is_checker"
    # a billing clerk may ask for a write-off but not decide one; an auditor only reads
    r = client.post(f"/api/v1/approvals/{rid}/approve", headers=zhou)
    assert r.status_code == 403
    assert client.post("/api/v1/approvals", headers=sun, json={
        "kind": "waiver", "bill_id": BILL, "reason": "x"}).status_code == 403
    assert client.get("/api/v1/approvals", headers=sun).status_code == 200
    # a collector may ask for a waiver but not a write-off: the kind is checked (403 named)
    r = client.post("/api/v1/approvals", headers=auth(client, "li"), json={
        "kind": "write_off", "reference": BILL, "reason": "x"})
    assert r.status_code == 403 and r.json()["error"] == "approval_forbidden"
    assert due(db, "B") >= 50_000  # nothing written off
    r = client.post(f"/api/v1/approvals/{rid}/reject", headers=auth(client, "zhao"),
                    json={"reason": "collect it first"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert r.json()["decision_reason"] == "collect it first"


def test_bad_bodies_are_422_naming_the_field(client: TestClient) -> None:
    wang = auth(client, "wang")
    for body, field in (
            ({"kind": "waiver", "reason": "x"}, "bill_id"),
            ({"kind": "waiver", "bill_id": BILL}, "reason"),
            ({"kind": "refund", "bill_id": BILL, "reason": "x"}, "kind"),
            ({"kind": "waiver", "bill_id": BILL, "reason": "x", "amount": "9"}, "amount"),
            ({"kind": "tariff_change", "tariff_id": "../x", "toml": "a", "reason": "x"},
             "tariff_id"),
            ({"kind": "bill_correction", "bill_id": BILL, "rebill": "maybe", "reason": "x"},
             "rebill")):
        r = client.post("/api/v1/approvals", headers=wang, json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.text, (field, r.text)
    r = client.post("/api/v1/approvals", headers=wang, json={
        "kind": "waiver", "bill_id": "NO-SUCH", "reason": "x"})
    assert r.status_code == 404 and "no late fees" in r.json()["message"]
    r = client.post("/api/v1/approvals/1/reject", headers=wang, json={})
    assert r.status_code == 422
    assert client.get("/api/v1/approvals/99", headers=wang).status_code == 404
    assert client.get("/api/v1/approvals?state=done", headers=wang).status_code == 422
    assert client.get("/api/v1/approvals?limit=0", headers=wang).status_code == 422


def test_the_list_pages_and_filters(client: TestClient) -> None:
    li, zhou = auth(client, "li"), auth(client, "zhou")
    ids = [client.post("/api/v1/approvals", headers=li, json={
        "kind": "waiver", "bill_id": BILL, "reason": "x"}).json()["request_id"]]
    ids.append(client.post("/api/v1/approvals", headers=zhou, json={
        "kind": "write_off", "reference": "B-202512-1", "reason": "y"}).json()["request_id"])
    ids.append(client.post("/api/v1/approvals", headers=zhou, json={
        "kind": "bill_correction", "bill_id": "B-202512-1", "reason": "z"}).status_code)
    page = client.get("/api/v1/approvals?limit=1", headers=li).json()
    assert (page["total"], [r["request_id"] for r in page["items"]]) == (2, [ids[1]])
    page = client.get("/api/v1/approvals?limit=1&offset=1", headers=li).json()
    assert [r["request_id"] for r in page["items"]] == [ids[0]]
    page = client.get("/api/v1/approvals?kind=waiver&state=pending", headers=li).json()
    assert [r["request_id"] for r in page["items"]] == [ids[0]]
    assert ids[2] == 404  # B's debit has no bill document in this fixture: named, not stored
