"""Reconciliation, risk and KPIs over REST: the channel reports and the breaks worklist, an
account's risk with its reasons and the ranked list, the KPI figures by dimension — staff only,
each refusing bad input with a 422 naming the parameter."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient
from tests.payments.statements.builders import Line, alipay_csv
from tests.web.api_world import NOW, client_for, get

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database

DAY = date(2026, 2, 10)


@pytest.fixture
def client(db: Database) -> TestClient:
    from dianfei.payments import reconcile_service as rs
    from dianfei.payments.statements import parse_statement

    c = client_for(db)
    # an Alipay statement of a payment nobody ordered: a break on the worklist
    data = alipay_csv([Line("A3", 700, datetime(2026, 2, 10, 10, 0), "DFNOSUCH")])
    with db.session() as s:
        rs.reconcile_statement(s, parse_statement("alipay", data, name="ali.csv"), day=DAY,
                               clock=FixedClock(datetime(2026, 2, 11, 9, tzinfo=BUSINESS_TZ)))
    return c


def test_reconciliation_reports_and_worklist(client: TestClient) -> None:
    r = get(client, "/api/v1/reconciliation/reports", "auditor",
            **{"from": "2026-02-01", "to": "2026-02-28"})
    assert r.status_code == 200, r.text
    assert [(x["channel"], x["day"]) for x in r.json()["items"]] == [("alipay", "2026-02-10")]
    one = get(client, "/api/v1/reconciliation/reports/alipay/2026-02-10", "auditor")
    assert one.status_code == 200 and one.json()["channel"] == "alipay"
    missing = get(client, "/api/v1/reconciliation/reports/alipay/2026-02-11", "auditor")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    work = get(client, "/api/v1/reconciliation/worklist", "supervisor").json()
    assert [(x["kind"], x["transaction_id"]) for x in work["items"]] == [
        ("missing_in_ledger", "A3")]
    assert work["total"] == 1 and work["as_of"] == NOW.date().isoformat()
    assert get(client, "/api/v1/reconciliation/worklist", "supervisor", channel="wechatpay"
               ).json()["total"] == 0
    wide = get(client, "/api/v1/reconciliation/reports", "auditor",
               **{"from": "2020-01-01", "to": "2026-02-28"})
    assert wide.status_code == 422 and wide.json()["field"] == "to"
    assert get(client, "/api/v1/reconciliation/worklist", "cashier").status_code == 403
    assert get(client, "/api/v1/reconciliation/worklist", "c1").status_code == 403


def test_risk_of_an_account_and_the_ranked_list(client: TestClient) -> None:
    r = get(client, "/api/v1/risk/accounts/C1", "supervisor", as_of="2026-03-20")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["account"] == "C1" and body["band"] in ("low", "medium", "high")
    assert body["scorer"] == "rules" and body["reasons_en"] is not None
    assert get(client, "/api/v1/risk/accounts/C9", "supervisor").status_code == 404
    future = get(client, "/api/v1/risk/accounts/C1", "supervisor", as_of="2026-04-01")
    assert future.status_code == 422 and future.json()["field"] == "as_of"
    ranked = get(client, "/api/v1/risk/scores", "auditor", date="2026-03-20").json()
    assert ranked["total"] == 3 and ranked["date"] == "2026-03-20"
    probabilities = [x["probability"] for x in ranked["items"]]
    assert probabilities == sorted(probabilities, reverse=True)
    high = get(client, "/api/v1/risk/scores", "auditor", date="2026-03-20", band="high").json()
    assert all(x["band"] == "high" for x in high["items"])
    assert get(client, "/api/v1/risk/scores", "auditor", band="extreme").status_code == 422
    warnings = get(client, "/api/v1/risk/warnings", "auditor", date="2026-03-20")
    assert warnings.status_code == 200 and warnings.json()["total"] == 0  # the first scoring
    assert get(client, "/api/v1/risk/scores", "cashier").status_code == 403
    assert get(client, "/api/v1/risk/accounts/C1", "c1").status_code == 403


def test_kpis_by_period_and_dimension(client: TestClient) -> None:
    r = get(client, "/api/v1/kpis", "supervisor", period="2026-01", as_of="2026-03-20")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == "2026-01" and body["as_of"] == "2026-03-20"
    # 20.00 collected of the three bills by the as-of day
    assert 0 < body["collection_rate"] < 1
    by_region = get(client, "/api/v1/kpis", "auditor", period="2026-01", by="region").json()
    assert [g["region"] for g in by_region["groups"]] == ["R1"]
    by_collector = get(client, "/api/v1/kpis", "auditor", period="2026-01", by="collector").json()
    assert [g["collector"] for g in by_collector["groups"]] == ["K1"]
    by_segment = get(client, "/api/v1/kpis", "auditor", period="2026-01", as_of="2026-03-20",
                     by="segment")
    assert by_segment.status_code == 200, by_segment.text
    groups = by_segment.json()["groups"]
    assert groups and all(g["segment"] for g in groups)
    assert sum(g["bills"] for g in groups) == body["bills"]
    assert sum(g["customers"] for g in groups) == body["customers"]
    assert get(client, "/api/v1/kpis", "auditor", period="2026-01", by="weather"
               ).json()["field"] == "by"
    assert get(client, "/api/v1/kpis", "auditor", period="0000-01").json()["field"] == "period"
    early = get(client, "/api/v1/kpis", "auditor", period="2026-01", as_of="2025-12-31")
    assert early.status_code == 422 and early.json()["field"] == "as_of"
    assert get(client, "/api/v1/kpis", "auditor", period="2025-06").status_code == 422
    assert get(client, "/api/v1/kpis", "cashier", period="2026-01").status_code == 403
    assert get(client, "/api/v1/kpis", None, period="2026-01").status_code == 401
