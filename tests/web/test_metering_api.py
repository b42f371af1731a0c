"""Meter reads and VEE findings over REST: an account's reads by date, paged; a customer sees
only their own account's reads; the findings need a bounded window."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.web.api_world import client_for, get

from dianfei.db.engine import Database


@pytest.fixture
def client(db: Database) -> TestClient:
    return client_for(db)


def test_reads_of_an_account_by_date_and_paged(client: TestClient) -> None:
    r = get(client, "/api/v1/accounts/C2/reads", "billing_clerk")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 2
    assert [(x["meter_id"], x["read_at"], x["value"]) for x in body["items"]] == [
        ("MC2", "2026-01-01T00:00:00+08:00", "1000.00"),
        ("MC2", "2026-02-01T00:00:00+08:00", "1200.00")]
    # from … to are business days, both included
    jan = get(client, "/api/v1/accounts/C2/reads", "billing_clerk", **{"from": "2026-01-15"})
    assert [x["value"] for x in jan.json()["items"]] == ["1200.00"]
    dec = get(client, "/api/v1/accounts/C2/reads", "billing_clerk", to="2026-01-01")
    assert [x["value"] for x in dec.json()["items"]] == ["1000.00"]
    paged = get(client, "/api/v1/accounts/C2/reads", "billing_clerk", limit=1, offset=1).json()
    assert [x["value"] for x in paged["items"]] == ["1200.00"] and paged["total"] == 2
    assert get(client, "/api/v1/accounts/C2/reads", "billing_clerk", register="peak"
               ).json()["total"] == 0


def test_reads_ownership_and_refusals(client: TestClient) -> None:
    assert get(client, "/api/v1/accounts/C1/reads", "c1").json()["total"] == 2
    other = get(client, "/api/v1/accounts/C2/reads", "c1")
    assert other.status_code == 404 and "1200.00" not in other.text
    assert get(client, "/api/v1/accounts/C9/reads", "billing_clerk").status_code == 404
    assert get(client, "/api/v1/accounts/C1/reads", None).status_code == 401
    assert get(client, "/api/v1/accounts/C1/reads", "cashier").status_code == 403
    bad = get(client, "/api/v1/accounts/C1/reads", "billing_clerk", **{"from": "2026-02-30"})
    assert bad.status_code == 422 and bad.json()["field"] == "query.from"
    backwards = get(client, "/api/v1/accounts/C1/reads", "billing_clerk",
                    **{"from": "2026-02-01", "to": "2026-01-01"})
    assert backwards.status_code == 422 and backwards.json()["field"] == "to"
    far = get(client, "/api/v1/accounts/C1/reads", "billing_clerk", **{"from": "0001-01-01"})
    assert far.status_code == 422 and far.json()["field"] == "from"


def test_vee_findings_need_a_bounded_window(client: TestClient) -> None:
    r = get(client, "/api/v1/vee/findings", "supervisor", **{"from": "2026-01-01",
                                                              "to": "2026-01-31"})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"items", "total", "limit", "offset"}
    assert r.json()["total"] == len(r.json()["items"])
    assert get(client, "/api/v1/vee/findings", "supervisor").status_code == 422
    wide = get(client, "/api/v1/vee/findings", "supervisor", **{"from": "2025-01-01",
                                                                "to": "2026-01-31"})
    assert wide.status_code == 422 and "92 days" in wide.json()["message"]
    unknown = get(client, "/api/v1/vee/findings", "supervisor", rule="nope",
                  **{"from": "2026-01-01", "to": "2026-01-31"})
    assert unknown.status_code == 422 and "nope" in unknown.json()["message"]
    assert get(client, "/api/v1/vee/findings", "c1", **{"from": "2026-01-01",
                                                       "to": "2026-01-31"}).status_code == 403
