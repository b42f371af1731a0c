"""Every console page and API route refuses a caller without the token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dianfei.db.engine import Database
from dianfei.web.app import create_app

ROUTES = ["/", "/exceptions/2026-01", "/bills/C1/2026-01", "/api/v1/periods",
          "/api/v1/bills/C1/2026-01", "/api/v1/exceptions/2026-01"]


@pytest.fixture
def client(db: Database, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("DIANFEI_CONSOLE_TOKEN", "s3cret-token")
    return TestClient(create_app(db))


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_needs_the_token(client: TestClient, route: str) -> None:
    assert client.get(route).status_code == 401
    assert client.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_openapi_is_open_and_routes_work_with_the_token(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    ok = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/api/v1/periods", headers=ok).json() == []
    missing = client.get("/api/v1/bills/C1/2026-01", headers=ok)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get("/api/v1/bills/C1/2026-13", headers=ok).status_code == 422


def test_session_sets_a_cookie_for_the_pages(client: TestClient) -> None:
    assert client.get("/session", params={"token": "nope"}, follow_redirects=False
                      ).status_code == 401
    r = client.get("/session", params={"token": "s3cret-token"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/")
    assert page.status_code == 200 and "Billed periods" in page.text
