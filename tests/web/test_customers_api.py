"""Customers and accounts over REST: search by id, name, phone suffix and meter number, paged;
phone and ID number masked unless the role has pii:read; an account with its balance; a
customer user sees only their own (another's → 404); bad input → 422 in the error envelope."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.web.api_world import C2_PHONE, client_for, get

from dianfei.db.engine import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return client_for(db)


def ids(r: object) -> list[str]:
    body = r.json()  # type: ignore[attr-defined]
    return [c["customer_id"] for c in body["items"]]


def test_search_by_id_name_phone_and_meter_paged(client: TestClient) -> None:
    r = get(client, "/api/v1/customers", "cashier")
    assert r.status_code == 200, r.text
    assert r.json() | {"items": None} == {"items": None, "total": 3, "limit": 50, "offset": 0}
    assert ids(r) == ["C1", "C2", "C3"]
    assert ids(get(client, "/api/v1/customers", "cashier", customer_id="C2")) == ["C2"]
    assert ids(get(client, "/api/v1/customers", "cashier", name="王")) == ["C1", "C3"]
    assert ids(get(client, "/api/v1/customers", "cashier", phone_suffix="5678")) == ["C2"]
    assert ids(get(client, "/api/v1/customers", "cashier", phone_suffix="8000")) == ["C1", "C3"]
    assert ids(get(client, "/api/v1/customers", "cashier", meter_id="MC3")) == ["C3"]
    assert ids(get(client, "/api/v1/customers", "cashier", name="王", meter_id="MC1")) == ["C1"]
    # a LIKE wildcard is a literal character, not "anything"
    assert ids(get(client, "/api/v1/customers", "cashier", name="%")) == []
    page = get(client, "/api/v1/customers", "cashier", limit=2, offset=1).json()
    assert [c["customer_id"] for c in page["items"]] == ["C2", "C3"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    # the phone of a search result is masked for the cashier
    assert get(client, "/api/v1/customers", "cashier", customer_id="C2"
               ).json()["items"][0]["phone"] == "139****5678"


def test_phone_and_id_number_masked_unless_pii_read(client: TestClient) -> None:
    masked = get(client, "/api/v1/customers/C2", "cashier").json()
    assert masked["phone"] == "139****5678" and masked["pii"] == "masked"
    assert C2_PHONE not in str(masked)
    clear = get(client, "/api/v1/customers/C2", "billing_clerk").json()
    assert clear["phone"] == C2_PHONE and clear["pii"] == "clear"
    assert clear["accounts"] == [{"account_id": "C2", "opened_on": "2020-01-01",
                                  "closed_on": None, "status": "open"}]
    assert get(client, "/api/v1/customers/C2", "admin").json()["phone"] == C2_PHONE
    # the customer themself sees their record, masked like any role without pii:read
    own = get(client, "/api/v1/customers/C2", "c2")
    assert own.status_code == 200 and own.json()["phone"] == "139****5678"


def test_account_with_balance_and_status(client: TestClient) -> None:
    r = get(client, "/api/v1/accounts/C1", "cashier")
    assert r.status_code == 200, r.text
    a = r.json()
    # bill 53.80, 20.00 paid at the counter; due in February, so overdue on 2026-03-20
    assert (a["balance"], a["open_amount"], a["overdue_amount"], a["in_arrears"]) == (
        "33.80", "33.80", "33.80", True)
    assert a["status"] == "open" and a["customer_id"] == "C1"
    assert [m["meter_id"] for m in a["meters"]] == ["MC1"]
    assert a["tariffs"][0]["tariff_id"] == "cn-zj-residential"
    assert get(client, "/api/v1/accounts/C9", "cashier").status_code == 404


def test_a_customer_reaches_only_their_own(client: TestClient) -> None:
    assert get(client, "/api/v1/customers/C1", "c1").status_code == 200
    assert get(client, "/api/v1/accounts/C1", "c1").status_code == 200
    for path in ("/api/v1/customers/C2", "/api/v1/accounts/C2", "/api/v1/customers/C9",
                 "/api/v1/accounts/C9"):
        r = get(client, path, "c1")
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
        assert "李四" not in r.text
    # another customer's and a missing one's answers are the same
    assert (get(client, "/api/v1/customers/C2", "c1").json()["message"].replace("C2", "X")
            == get(client, "/api/v1/customers/C9", "c1").json()["message"].replace("C9", "X"))
    assert get(client, "/api/v1/customers", "c1").status_code == 403


def test_anonymous_and_roles_without_permission(client: TestClient) -> None:
    assert get(client, "/api/v1/customers", None).status_code == 401
    assert get(client, "/api/v1/customers/C1", None).json()["error"] == "unauthenticated"
    r = get(client, "/api/v1/customers/C1", "monitor")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


def test_bad_input_is_a_422_naming_the_field(client: TestClient) -> None:
    r = get(client, "/api/v1/customers", "cashier", limit=501)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid" and body["field"] == "query.limit"
    assert body["message"].startswith("query.limit:")
    r = get(client, "/api/v1/customers", "cashier", phone_suffix="12a4")
    assert r.status_code == 422 and r.json()["field"] == "phone_suffix"
    assert get(client, "/api/v1/customers", "cashier", offset=-1).json()["field"] == "query.offset"


def test_a_nul_character_is_refused_wherever_it_is(client: TestClient) -> None:
    """PostgreSQL text cannot hold U+0000: refused as bad input, never a 500 (web/inputs.py)."""
    from tests.web.api_world import auth

    cashier = auth(client, "cashier")
    r = client.get("/api/v1/customers", params={"name": "王\x00"}, headers=cashier)
    assert r.status_code == 422 and r.json()["field"] == "query.name"
    assert client.get("/api/v1/customers/C1%00", headers=cashier).json()["field"] == "path"
    r = client.post("/api/v1/auth/token", json={"username": "a\x00b", "password": "x"})
    assert r.status_code == 422 and r.json() == {
        "error": "invalid", "field": "body.username",
        "message": "body.username: a NUL character (U+0000) is not allowed"}
    # the same body without the NUL goes through
    assert client.post("/api/v1/auth/token", json={"username": "ab", "password": "x"}
                       ).status_code == 401
