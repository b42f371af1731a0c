"""Meter reads and VEE findings over REST: an account's reads by date, paged; a customer sees
only their own account's reads; the findings need a bounded window."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def test_quarantine_of_a_customers_import_is_clear_only_for_pii_read(client: TestClient,
                                                                     db: Database,
                                                                     tmp_path: Path) -> None:
    """Issue 17: a rejected customers row is masked for everyone but a role with ``pii:read``;
    opening it is audited; a customer user cannot read the quarantine at all."""
    from sqlalchemy import text

    from dianfei.core.clock import FixedClock
    from dianfei.metering.imports import import_file

    csv = (tmp_path / "c.csv")
    csv.write_text("customer_id,name,customer_class,region,address,phone,tariff_id,low_income,"
                   "protected,payment_mode,opened_on\n"
                   "C77,孙悟空,residential,城关镇,花果山水帘洞1号,1370000000x,cn-zj-residential,0,0,"
                   "postpaid,2022-01-01\n", encoding="utf-8")
    res = import_file(db, "customers", csv, clock=FixedClock(datetime(2026, 3, 1, tzinfo=UTC)))
    assert res.rejected == 1
    path = f"/api/v1/imports/{res.batch_id}/quarantine"
    masked = get(client, path, "auditor")  # reads:read without pii:read
    assert masked.status_code == 200, masked.text
    body = masked.json()
    assert (body["kind"], body["pii"], body["total"]) == ("customers", "masked", 1)
    [row] = body["items"]
    assert (row["line"], row["reason"], row["sealed"]) == (2, "bad_phone", True)
    assert row["raw"].startswith("C77,孙**,residential,城关镇,花果山水****,137****000x,")
    assert "1370000000x" not in masked.text and "孙悟空" not in masked.text
    clear = get(client, path, "billing_clerk").json()  # pii:read: the one who fixes customer files
    assert clear["pii"] == "clear"
    assert clear["items"][0]["raw"].startswith("C77,孙悟空,residential,城关镇,花果山水帘洞1号,1370000000x,")
    with db.engine.connect() as conn:
        actors = conn.execute(text("SELECT actor FROM audit_records WHERE action = "
                                   "'pii.revealed'")).scalars().all()
    assert actors == ["user:billing_clerk"]
    assert get(client, path, "c1").status_code == 403
    assert get(client, "/api/v1/imports/nope/quarantine", "billing_clerk").status_code == 404


def test_a_held_read_is_released_or_rejected_by_a_role_that_may(client: TestClient,
                                                               db: Database) -> None:
    """Issue 17: the review of a read held as implausible over REST — the clerk's decision is
    recorded once under the clerk's name, audited, and the read counts from then on; roles
    without ``vee:review`` and wrong requests change nothing."""
    from datetime import date, timedelta

    import polars as pl
    from sqlalchemy import text
    from tests.collections.test_prepay import daily_reads
    from tests.web.api_world import auth

    from dianfei.audit.service import verify
    from dianfei.core.clock import FixedClock
    from dianfei.metering.service import reads_of_mode_between, store_reads
    from dianfei.metering.vee.plausibility import hold_implausible

    # C1's meter read 10 kWh a day for ten days, then 50,000 kWh: held as implausible
    daily_reads(db, "MC1", {date(2026, 2, 20) + timedelta(days=i): 1100 + 10 * i
                            for i in range(10)})
    huge_at = datetime(2026, 3, 1, 16, tzinfo=UTC)  # 2 March 00:00 in Beijing
    huge = pl.DataFrame({"meter_id": ["MC1"], "read_at": [huge_at], "register": ["total"],
                         "value": [5_000_000], "source": ["ami"]},
                        schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                "register": pl.String, "value": pl.Int64, "source": pl.String})
    with db.engine.begin() as conn:
        store_reads(conn, huge)
    clock = FixedClock(datetime(2026, 3, 2, 10, tzinfo=UTC))
    assert hold_implausible(db, clock, huge.select("meter_id", "read_at", "register")) == 1

    def _counted(_db: Database) -> list[int]:
        got = reads_of_mode_between(db.engine, "postpaid", huge_at - timedelta(hours=1),
                                    huge_at + timedelta(hours=1))
        return [int(v) for v in got["value"].to_list()]

    path = "/api/v1/vee/held-reads/review"
    body = {"meter_id": "MC1", "read_at": "2026-03-02T00:00:00+08:00", "decision": "release",
            "reason": "meter tested on site: it did register it"}

    def post(user: str | None, **change: str) -> Any:
        return client.post(path, json={**body, **change},
                           headers=auth(client, user) if user else {})

    assert post(None).status_code == 401
    for role in ("c1", "cashier", "collector", "auditor"):
        assert post(role).status_code == 403, role
    bad = post("billing_clerk", decision="maybe")
    assert bad.status_code == 422 and "release" in bad.json()["message"]
    naive = post("billing_clerk", read_at="2026-03-02T00:00:00")
    assert naive.status_code == 422
    assert post("billing_clerk", read_at="2026-03-03T00:00:00+08:00").status_code == 404
    assert _counted(db) == []  # still held: nothing above changed it

    ok = post("billing_clerk")
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"meter_id": "MC1", "read_at": "2026-03-02T00:00:00+08:00",
                         "decision": "released", "decided_by": "billing_clerk",
                         "reason": body["reason"], "recorded": True}
    assert _counted(db) == [5_000_000]
    again = post("billing_clerk")
    assert again.status_code == 200 and again.json()["recorded"] is False
    other = post("supervisor", decision="reject")
    assert other.status_code == 409 and "already released" in other.json()["message"]
    with db.engine.connect() as conn:
        audited = [(r[0], r[1]) for r in conn.execute(text(
            "SELECT action, subject FROM audit_records WHERE action LIKE 'read.%' ORDER BY seq"))]
    assert audited == [("read.released", "MC1")]
    assert verify(db.engine).intact
