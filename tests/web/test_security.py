"""Signing in, roles and ownership over HTTP: every route of the OpenAPI document (and every
console page) refuses anonymous callers (401) and roles without its permission (403); a
customer reaches only their own bills; wrong credentials say nothing about which part was
wrong; the sign-in's ``next`` never leaves the site; no stack trace reaches a caller."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end
from typer.testing import CliRunner

from dianfei.billing.service import run_bill_run
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.security.service import ROLES, allows
from dianfei.web.app import create_app
from dianfei.web.auth import PUBLIC_PATHS

PASSWORD = "correct horse battery"
JAN = Period(2026, 1)


def add_user(name: str, role: str, customer: str | None = None,
             password: str = PASSWORD) -> None:
    args = ["users", "add", name, "--role", role, "--password-stdin"]
    if customer:
        args += ["--customer", customer]
    res = CliRunner().invoke(cli, args, input=password + "\n")
    assert res.exit_code == 0, res.output


@pytest.fixture
def world(db: Database) -> Database:
    """Two customers billed for January, one user per role (customer users C1 and C2)."""
    load_people(db, [Person("C1"), Person("C2")])
    dec = month_end(Period(2025, 12))
    (Reads().add("C1", dec, 1000_00).add("C1", month_end(JAN), 1100_00)
     .add("C2", dec, 1000_00).add("C2", month_end(JAN), 1200_00).store(db))
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    for role in ROLES:
        if role != "customer":
            add_user(role, role)
    add_user("c1", "customer", "C1")
    add_user("c2", "customer", "C2")
    return db


@pytest.fixture
def client(world: Database) -> TestClient:
    return TestClient(create_app(world), raise_server_exceptions=False)


def token(client: TestClient, user: str, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and len(body["access_token"]) >= 40
    return {"Authorization": f"Bearer {body['access_token']}"}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "2026-01" if "period" in m.group(0) else "C1", path)


def operations(client: TestClient) -> list[tuple[str, str, list[str]]]:
    """(method, path, permissions) of every operation in the OpenAPI document."""
    doc = client.get("/openapi.json").json()
    return [(method.upper(), path, op.get("x-permission", []))
            for path, item in doc["paths"].items() for method, op in item.items()]


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None
         ) -> Any:
    return client.request(method, concrete(path), headers=headers or {}, json={})


def test_every_openapi_route_refuses_anonymous_callers_and_wrong_roles(
        client: TestClient) -> None:
    tokens = {role: token(client, role if role != "customer" else "c1") for role in ROLES}
    checked = 0
    for method, path, permissions in operations(client):
        if path in PUBLIC_PATHS:
            assert not permissions
            continue
        # every other route declares what it needs, and enforces it
        assert permissions, f"{method} {path} has no permission"
        assert call(client, method, path).status_code == 401, (method, path)
        bad = {"Authorization": "Bearer not-a-token"}
        assert call(client, method, path, bad).status_code == 401, (method, path)
        for role, auth in tokens.items():
            status = call(client, method, path, auth).status_code
            if any(allows(role, p) for p in permissions):
                assert status not in (401, 403), (method, path, role, status)
            else:
                assert status == 403, (method, path, role, status)
        checked += 1
    assert checked >= 8


def test_every_route_of_the_app_is_guarded_or_public(world: Database) -> None:
    """Console pages are not in the OpenAPI document: every route of the application has the
    guard, or is one of the public paths."""
    app = create_app(world)
    anonymous = TestClient(app, raise_server_exceptions=False)
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in PUBLIC_PATHS:
            continue
        assert route.dependencies, route.path
        for method in route.methods:
            assert call(anonymous, method, route.path).status_code == 401, route.path


def test_public_routes_answer_without_a_user(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200
    # the payment channels' callbacks answer for themselves (refused: not signed by the channel)
    r = client.post("/api/v1/payments/notify/alipay", content=b"x=1",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 401) and r.text == "fail"


def test_a_customer_sees_their_own_bills_and_nobody_elses(client: TestClient) -> None:
    c1 = token(client, "c1")
    own = client.get("/api/v1/customers/C1/bills", headers=c1)
    assert own.status_code == 200
    assert [(b["bill_id"], b["amount"]) for b in own.json()] == [("C1-202601-1", "53.80")]
    for other in ("C2", "C3", "c1", "C1%20"):
        r = client.get(f"/api/v1/customers/{other}/bills", headers=c1)
        assert r.status_code in (403, 404) and "C2-202601-1" not in r.text
    # staff routes refuse the customer
    for path in ("/api/v1/users", "/api/v1/audit/verify", "/api/v1/periods",
                 "/api/v1/bills/C1/2026-01", "/api/v1/payments/C1", "/api/v1/payments-worklist",
                 "/api/v1/exceptions/2026-01"):
        assert client.get(path, headers=c1).status_code in (401, 403, 404), path
    # the start page sends a customer to their portal (web/portal.py), never the console
    home = client.get("/", headers=c1, follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/portal"
    # a cashier sees any customer's bills
    assert len(client.get("/api/v1/customers/C2/bills", headers=token(client, "cashier")
                          ).json()) == 1


def test_wrong_credentials_get_401_without_saying_which_part(client: TestClient) -> None:
    wrong_password = client.post("/api/v1/auth/token",
                                 json={"username": "cashier", "password": "nope nope nope"})
    no_user = client.post("/api/v1/auth/token",
                          json={"username": "nobody", "password": PASSWORD})
    assert wrong_password.status_code == no_user.status_code == 401
    assert wrong_password.json() == no_user.json()
    assert "access_token" not in wrong_password.text


def test_repeated_failures_are_rate_limited(client: TestClient) -> None:
    for _ in range(5):
        assert client.post("/api/v1/auth/token", json={"username": "auditor", "password": "x"}
                           ).status_code == 401
    # now even the right password waits
    r = client.post("/api/v1/auth/token", json={"username": "auditor", "password": PASSWORD})
    assert r.status_code == 429
    # other users are not locked out
    assert client.post("/api/v1/auth/token", json={"username": "cashier", "password": PASSWORD}
                       ).status_code == 200


def test_tokens_are_stored_hashed_and_expire_and_passwords_are_argon2(
        world: Database, client: TestClient) -> None:
    auth = token(client, "admin")
    raw = auth["Authorization"].split()[1]
    with world.engine.connect() as conn:
        hashes = [r[0] for r in conn.execute(text("SELECT token_hash FROM api_tokens"))]
        pw = conn.execute(text("SELECT password_hash FROM users WHERE username = 'admin'")
                          ).scalar_one()
    assert raw not in hashes and all(len(h) == 64 for h in hashes)
    assert pw.startswith("$argon2id$") and PASSWORD not in pw
    assert client.get("/api/v1/users", headers=auth).status_code == 200
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE api_tokens SET expires_at = :t"), {"t": datetime(2020, 1, 1)})
    assert client.get("/api/v1/users", headers=auth).status_code == 401


def test_a_disabled_user_is_refused_at_once(client: TestClient) -> None:
    auth = token(client, "collector")
    assert client.get("/api/v1/payments/C1", headers=auth).status_code == 200
    assert CliRunner().invoke(cli, ["users", "disable", "collector"]).exit_code == 0
    assert client.get("/api/v1/payments/C1", headers=auth).status_code == 401


@pytest.mark.parametrize("evil", [
    "//evil.example", "//evil.example/path", "https://evil.example/x", "/\\evil.example",
    "///evil.example", "http:evil.example", " //evil.example", "\t//evil.example",
    "/%0d%0aSet-Cookie:x=1", "javascript:alert(1)"])
def test_the_sign_in_never_redirects_to_another_host(client: TestClient, evil: str) -> None:
    r = client.post("/session", data={"username": "billing_clerk", "password": PASSWORD,
                                      "next": evil}, follow_redirects=False)
    assert r.status_code == 303
    target = r.headers["location"]
    parts = urlsplit(target)
    assert target.startswith("/") and not target.startswith(("//", "/\\"))
    assert not parts.scheme and not parts.netloc and "\r" not in target and "\n" not in target


def test_the_console_signs_in_with_a_session_cookie(client: TestClient) -> None:
    form = {"username": "billing_clerk", "password": PASSWORD}
    ok = client.post("/session", data={**form, "next": "/exceptions/2026-01"},
                     follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/exceptions/2026-01"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/").status_code == 200
    # a wrong password shows the form again, with no cookie
    bad = TestClient(client.app).post("/session", data={**form, "password": "wrong wrong"},
                                      follow_redirects=False)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers


def test_a_page_without_a_session_asks_to_sign_in_with_a_local_next(
        client: TestClient) -> None:
    r = client.get("/exceptions/2026-01")
    assert r.status_code == 401 and 'action="/session"' in r.text
    assert 'value="/exceptions/2026-01"' in r.text


def test_security_headers_on_every_response(client: TestClient) -> None:
    for r in (client.get("/openapi.json"), client.get("/api/v1/periods"),
              client.get("/api/v1/periods", headers=token(client, "supervisor"))):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["referrer-policy"] == "no-referrer"


def test_no_stack_trace_reaches_a_caller(world: Database) -> None:
    app = create_app(world)

    @app.get("/api/v1/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("secret internals /srv/dianfei/x.py line 3")

    r = TestClient(app, raise_server_exceptions=False).get("/api/v1/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "message": "internal error"}
    assert "Traceback" not in r.text and "secret" not in r.text


def test_bad_input_is_a_4xx_not_a_5xx(client: TestClient) -> None:
    auth = token(client, "admin")
    assert client.get("/api/v1/bills/C1/2026-13", headers=auth).status_code == 422
    assert client.get("/api/v1/bills/C9/2026-01", headers=auth).status_code == 404
    assert client.post("/api/v1/auth/token", json={"username": ""}).status_code == 422
    assert client.post("/api/v1/auth/token", content=b"{not json").status_code == 422


def test_users_add_validates_and_audits(world: Database) -> None:
    run = CliRunner().invoke
    assert run(cli, ["users", "add", "x", "--role", "wizard", "--password-stdin"],
               input=PASSWORD).exit_code != 0
    r = run(cli, ["users", "add", "x", "--role", "customer", "--password-stdin"], input=PASSWORD)
    assert r.exit_code != 0 and "--customer" in r.output
    r = run(cli, ["users", "add", "x", "--role", "customer", "--customer", "C404",
                  "--password-stdin"], input=PASSWORD)
    assert r.exit_code != 0 and "C404" in r.output
    assert run(cli, ["users", "add", "admin", "--role", "admin", "--password-stdin"],
               input=PASSWORD).exit_code != 0  # exists already
    assert run(cli, ["users", "add", "y", "--role", "cashier", "--password-stdin"],
               input="short").exit_code != 0
    assert run(cli, ["users", "add", "y", "--role", "cashier"]).exit_code != 0
    with world.engine.connect() as conn:
        added = conn.execute(text("SELECT subject, actor FROM audit_records "
                                  "WHERE action = 'user.added' ORDER BY seq")).all()
    assert [s for s, _ in added] == ["admin", "billing_clerk", "cashier", "collector",
                                     "supervisor", "auditor", "monitor", "c1", "c2"]
    assert all(a.startswith("cli:") for _, a in added)
    assert run(cli, ["audit", "verify"]).exit_code == 0
