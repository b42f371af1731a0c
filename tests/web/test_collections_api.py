"""The worklist REST API: a collector sees only their own list and the timelines of its
accounts; supervisors see all, reassign and balance; customers see nothing of it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.collections.worklist_fixtures import DAY, at, load
from typer.testing import CliRunner

from dianfei.cli.main import app as cli
from dianfei.collections import worklist as wl
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.web.app import create_app

PASSWORD = "correct horse battery"


def add_user(name: str, role: str, customer: str | None = None) -> None:
    args = ["users", "add", name, "--role", role, "--password-stdin"]
    if customer:
        args += ["--customer", customer]
    res = CliRunner().invoke(cli, args, input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output


def token(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def client(db: Database) -> TestClient:
    load(db)
    for name, role in (("zhang", "collector"), ("boss", "supervisor"), ("nobody", "collector")):
        add_user(name, role)
    add_user("c01", "customer", "C01")
    wl.set_roster(db, "K1", by="admin", username="zhang")
    return TestClient(create_app(db, FixedClock(at(DAY, 18))), raise_server_exceptions=False)


def test_collectors_see_only_their_own_list(client: TestClient) -> None:
    zhang, boss = token(client, "zhang"), token(client, "boss")
    r = client.get("/api/v1/worklists", params={"date": DAY.isoformat()}, headers=zhang)
    assert r.status_code == 200, r.text
    assert {row["collector"] for row in r.json()} == {"K1"} and len(r.json()) == 2
    assert [row["rank"] for row in r.json()] == [1, 2]
    r = client.get("/api/v1/worklists", params={"date": DAY.isoformat(), "collector": "K2"},
                   headers=zhang)
    assert r.status_code == 403
    r = client.get("/api/v1/worklists", params={"date": DAY.isoformat()},
                   headers=token(client, "nobody"))
    assert r.status_code == 200 and r.json() == []
    everyone = client.get("/api/v1/worklists", params={"date": DAY.isoformat()}, headers=boss)
    assert len(everyone.json()) == 7
    # a timeline: of an account on my list, yes; of another, as if it did not exist
    assert client.get("/api/v1/accounts/C01/timeline", headers=zhang).status_code == 200
    assert client.get("/api/v1/accounts/C05/timeline", headers=zhang).status_code == 404
    assert client.get("/api/v1/accounts/C05/timeline", headers=boss).status_code == 200
    c01 = token(client, "c01")
    assert client.get("/api/v1/worklists", params={"date": DAY.isoformat()},
                      headers=c01).status_code == 403
    assert client.get("/api/v1/accounts/C01/timeline", headers=c01).status_code == 403


def test_supervisor_reassigns_balances_and_reads_the_view(client: TestClient) -> None:
    boss, zhang = token(client, "boss"), token(client, "zhang")
    client.get("/api/v1/worklists", params={"date": DAY.isoformat()}, headers=boss)
    body = {"date": DAY.isoformat(), "to": "K2", "reason": "K1 on leave", "from_collector": "K1"}
    assert client.post("/api/v1/worklists/reassign", json=body, headers=zhang).status_code == 403
    r = client.post("/api/v1/worklists/reassign", json=body, headers=boss)
    assert r.status_code == 200 and r.json()["moved"] == 2, r.text
    bad = client.post("/api/v1/worklists/reassign", headers=boss,
                      json={**body, "from_collector": None})
    assert bad.status_code == 422 and "exactly one" in bad.json()["message"]
    r = client.post("/api/v1/worklists/balance", json={"date": DAY.isoformat()}, headers=boss)
    assert r.status_code == 200 and r.json()["moved"] == 0
    r = client.get("/api/v1/worklists/supervisor", params={"from": DAY.isoformat()}, headers=boss)
    assert r.status_code == 200
    assert {c["collector"]: c["list_size"] for c in r.json()["collectors"]} == {
        "K2": 4, "K3": 1, "K4": 2}
