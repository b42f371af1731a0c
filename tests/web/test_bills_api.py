"""Bills and payments over REST: bills by account, customer and period with paid, open and
overdue amounts and a state; payments by account and filters; a customer sees only their own."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.web.api_world import client_for, get

from dianfei.db.engine import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return client_for(db)


def test_bills_with_paid_open_and_overdue(client: TestClient) -> None:
    r = get(client, "/api/v1/bills", "cashier", period="2026-01")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and [b["bill_id"] for b in body["items"]] == [
        "C3-202601-1", "C2-202601-1", "C1-202601-1"]
    c1 = body["items"][2]
    assert (c1["amount"], c1["paid_amount"], c1["open_amount"], c1["overdue_amount"],
            c1["state"]) == ("53.80", "20.00", "33.80", "33.80", "overdue")
    overdue = get(client, "/api/v1/bills", "cashier", period="2026-01", state="overdue").json()
    assert overdue["total"] == 3
    assert get(client, "/api/v1/bills", "cashier", period="2026-01", state="paid"
               ).json()["total"] == 0
    one = get(client, "/api/v1/bills", "cashier", account_id="C2").json()
    assert [b["bill_id"] for b in one["items"]] == ["C2-202601-1"]
    assert get(client, "/api/v1/bills", "cashier", customer_id="C3").json()["total"] == 1
    assert get(client, "/api/v1/bills", "cashier", period="2025-12").json()["total"] == 0
    paged = get(client, "/api/v1/bills", "cashier", period="2026-01", limit=1, offset=2).json()
    assert [b["bill_id"] for b in paged["items"]] == ["C1-202601-1"] and paged["total"] == 3


def test_bills_refusals_and_ownership(client: TestClient) -> None:
    none = get(client, "/api/v1/bills", "cashier")
    assert none.status_code == 422 and none.json()["field"] == "account_id"
    bad = get(client, "/api/v1/bills", "cashier", period="2026-13")
    assert bad.status_code == 422 and bad.json()["field"] == "period"
    assert get(client, "/api/v1/bills", "cashier", state="late",
               period="2026-01").json()["field"] == "state"
    # a customer without a filter gets their own bills; another's id answers 404
    own = get(client, "/api/v1/bills", "c1").json()
    assert [b["bill_id"] for b in own["items"]] == ["C1-202601-1"]
    assert get(client, "/api/v1/bills", "c1", period="2026-01").json()["total"] == 1
    for other in ({"customer_id": "C2"}, {"account_id": "C2"}, {"account_id": "C9"}):
        r = get(client, "/api/v1/bills", "c1", **other)
        assert r.status_code == 404 and "C2-202601-1" not in r.text, other
    assert get(client, "/api/v1/bills", None, period="2026-01").status_code == 401
    assert get(client, "/api/v1/bills", "monitor", period="2026-01").status_code == 403


def test_payments_by_account_and_filters(client: TestClient) -> None:
    r = get(client, "/api/v1/payments", "cashier", account_id="C1")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(p["account_id"], p["channel"], p["amount"]) for p in items] == [
        ("C1", "counter", "20.00")]
    assert get(client, "/api/v1/payments", "cashier", customer_id="C1", channel="alipay"
               ).json()["total"] == 0
    assert get(client, "/api/v1/payments", "cashier", account_id="C1",
               **{"from": "2026-02-11"}).json()["total"] == 0
    assert get(client, "/api/v1/payments", "cashier", account_id="C1",
               **{"from": "2026-02-10", "to": "2026-02-10"}).json()["total"] == 1
    assert get(client, "/api/v1/payments", "cashier").status_code == 422
    # the customer: their own, without a filter; another's → 404
    assert get(client, "/api/v1/payments", "c1").json()["total"] == 1
    assert get(client, "/api/v1/payments", "c2").json()["total"] == 0
    assert get(client, "/api/v1/payments", "c2", account_id="C1").status_code == 404
    assert get(client, "/api/v1/payments", "billing_clerk", account_id="C1").status_code == 403


def test_bare_list_routes_take_an_optional_window(client: TestClient) -> None:
    """The documented bare lists stay bare; ``?limit=&offset=`` cuts them, the count in
    ``X-Total-Count``."""
    whole = get(client, "/api/v1/payments/C1", "cashier")
    assert whole.status_code == 200 and len(whole.json()) == 1
    assert whole.headers["x-total-count"] == "1"
    none = get(client, "/api/v1/payments/C1", "cashier", offset=1)
    assert none.json() == [] and none.headers["x-total-count"] == "1"
    bills = get(client, "/api/v1/customers/C1/bills", "c1", limit=1)
    assert [b["bill_id"] for b in bills.json()] == ["C1-202601-1"]
    assert get(client, "/api/v1/exceptions/2026-01", "billing_clerk", limit=5).json() == []
    assert get(client, "/api/v1/payments/C1", "cashier", limit=0).status_code == 422
    assert get(client, "/api/v1/bills/C1/0000-01", "cashier").json()["field"] == "period"



def test_the_bill_document_is_as_of_the_applications_day(client: TestClient) -> None:
    """The bill's account position is read on the app clock's day (a FixedClock here, 20 March
    2026), as the status beside it — never the machine's calendar."""
    from tests.web.api_world import NOW, auth

    doc = get(client, "/api/v1/bills/C1/2026-01", "cashier").json()
    assert doc["account_position"]["as_of"] == NOW.date().isoformat() == "2026-03-20"
    page = client.get("/bills/C1/2026-01", headers=auth(client, "cashier"))
    assert page.status_code == 200 and "截至 2026-03-20" in page.text
