"""/vee/held (issue 17): the reads held as implausible, and a person's decision on each from the
console — the same decision as ``dianfei vee review`` and the REST route: recorded once under
the signed-in user's name, audited; roles without ``vee:review`` see the list but cannot decide;
a refused form stores nothing and says why next to the field."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.collections.test_prepay import daily_reads
from tests.factories import Person, load_people
from typer.testing import CliRunner

from dianfei.audit.service import verify
from dianfei.cli.main import app as cli
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.metering.service import store_reads
from dianfei.metering.vee.plausibility import hold_implausible
from dianfei.metering.vee.service import held_reads
from dianfei.web.app import create_app
from dianfei.web.csrf import csrf_token

PASSWORD = "correct horse battery"
CLOCK = FixedClock(datetime(2026, 3, 2, 18, 0, tzinfo=BUSINESS_TZ))
HUGE_AT = datetime(2026, 3, 1, 16, tzinfo=UTC)  # 2 March 00:00 in Beijing
USERS = {"clerk": "billing_clerk", "sup": "supervisor", "aud": "auditor", "cash": "cashier"}
pytestmark = pytest.mark.db


def hold(db: Database, meter: str, at: datetime) -> None:
    """Ten days of ~10 kWh a day, then a reading 50,000 kWh higher: held as implausible."""
    daily_reads(db, meter, {date(2026, 2, 20) + timedelta(days=i): 1100 + 10 * i
                            for i in range(10)})
    huge = pl.DataFrame({"meter_id": [meter], "read_at": [at], "register": ["total"],
                         "value": [5_000_000], "source": ["ami"]},
                        schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                "register": pl.String, "value": pl.Int64, "source": pl.String})
    with db.engine.begin() as conn:
        store_reads(conn, huge)
    assert hold_implausible(db, CLOCK, huge.select("meter_id", "read_at", "register")) == 1


@pytest.fixture
def client(db: Database) -> TestClient:
    load_people(db, [Person("C00"), Person("C01")])
    hold(db, "MC00", HUGE_AT)
    hold(db, "MC01", HUGE_AT)
    for name, role in USERS.items():
        res = CliRunner().invoke(cli, ["users", "add", name, "--role", role, "--password-stdin"],
                                 input=PASSWORD + "\n")
        assert res.exit_code == 0, res.output
    return TestClient(create_app(db, CLOCK), raise_server_exceptions=False)


def sign_in(client: TestClient, user: str) -> str:
    client.cookies.clear()
    r = client.post("/session", data={"username": user, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_token(client.cookies["dianfei_session"])


def decisions(db: Database) -> list[tuple[str, str, str]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(text(
            "SELECT meter_id, decision, decided_by FROM vee_read_reviews ORDER BY meter_id"))]


def test_the_held_reads_are_listed_and_a_clerk_releases_one(client: TestClient,
                                                           db: Database) -> None:
    token = sign_in(client, "clerk")
    page = client.get("/vee/held")
    assert page.status_code == 200, page.text
    assert "MC00" in page.text and "MC01" in page.text and "2026-03-02T00:00:00+08:00" in page.text
    assert "50000.00" in page.text  # the held reading, kWh
    assert "held for a person" in page.text  # why, in words
    links = re.findall(r'href="(/vee/held/review\?[^"]+)"', page.text)
    assert len(links) == 2
    form = client.get(links[0].replace("&amp;", "&"))
    assert form.status_code == 200 and 'name="decision"' in form.text

    body = {"csrf_token": token, "meter_id": "MC00",
            "read_at": HUGE_AT.isoformat(), "decision": "release",
            "reason": "meter tested on site: it did register it"}
    # refused forms: nothing stored, the reason next to the field
    no_reason = client.post("/vee/held/review", data={**body, "reason": ""})
    assert no_reason.status_code == 422 and 'id="reason-error"' in no_reason.text
    no_choice = client.post("/vee/held/review", data={**body, "decision": ""})
    assert no_choice.status_code == 422 and 'id="decision-error"' in no_choice.text
    no_csrf = client.post("/vee/held/review", data={**body, "csrf_token": "forged"})
    assert no_csrf.status_code == 403
    assert decisions(db) == []

    done = client.post("/vee/held/review", data=body, follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/vee/held?done=MC00&decision=released"
    assert decisions(db) == [("MC00", "released", "clerk")]
    after = client.get(done.headers["location"])
    assert "表 MC00 的读数已放行" in after.text
    # the list shows what is still awaiting; "all" shows the decision too
    assert "MC01" in after.text and len(re.findall(r"/vee/held/review\?", after.text)) == 1
    every = client.get("/vee/held?show=all")
    assert "已放行（clerk）" in every.text
    # the other decision on the same read is refused in words, and changes nothing
    sign_in(client, "sup")
    token = csrf_token(client.cookies["dianfei_session"])
    other = client.post("/vee/held/review", data={**body, "csrf_token": token,
                                                   "decision": "reject"})
    assert other.status_code == 409 and "already released" in other.text
    assert decisions(db) == [("MC00", "released", "clerk")]
    with db.engine.connect() as conn:
        audited = conn.execute(text("SELECT action, subject FROM audit_records "
                                    "WHERE action LIKE 'read.%'")).all()
    assert [(a, s) for a, s in audited] == [("read.released", "MC00")]
    assert verify(db.engine).intact


def test_roles_without_the_permission_may_not_decide(client: TestClient, db: Database) -> None:
    token = sign_in(client, "aud")
    listed = client.get("/vee/held")
    assert listed.status_code == 200 and "MC00" in listed.text
    assert "/vee/held/review" not in listed.text  # no action offered
    q = f"?meter_id=MC00&read_at={HUGE_AT.isoformat().replace('+', '%2B')}"
    assert client.get("/vee/held/review" + q).status_code == 403
    posted = client.post("/vee/held/review", data={
        "csrf_token": token, "meter_id": "MC00", "read_at": HUGE_AT.isoformat(),
        "decision": "release", "reason": "x"})
    assert posted.status_code == 403
    sign_in(client, "cash")
    assert client.get("/vee/held").status_code == 403
    client.cookies.clear()
    assert client.get("/vee/held", follow_redirects=False).status_code in (303, 401)
    assert decisions(db) == []


def test_a_read_that_is_not_held_is_named(client: TestClient) -> None:
    sign_in(client, "clerk")
    other = (HUGE_AT + timedelta(days=1)).isoformat().replace("+", "%2B")
    missing = client.get(f"/vee/held/review?meter_id=MC00&read_at={other}")
    assert missing.status_code == 404 and "no held read of meter MC00" in missing.text
    naive = client.get("/vee/held/review?meter_id=MC00&read_at=2026-03-02T00:00:00")
    assert naive.status_code == 422 and "offset" in naive.text


def test_held_reads_page_in_sql(client: TestClient, db: Database) -> None:
    """The service pages in the database: awaiting first, one row per meter and instant."""
    rows, total = held_reads(db, 0, 1)
    assert total == 2 and len(rows) == 1 and rows[0]["decision"] is None
    assert rows[0]["read_at"] == HUGE_AT and rows[0]["value_wh"] == 50_000_000
    rest, _ = held_reads(db, 1, 10)
    assert {rows[0]["meter_id"], rest[0]["meter_id"]} == {"MC00", "MC01"}
    one, n = held_reads(db, 0, 10, meter_id="MC01", read_at=HUGE_AT)
    assert n == 1 and one[0]["meter_id"] == "MC01"
