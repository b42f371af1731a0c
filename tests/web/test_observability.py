"""/readyz, /metrics and request ids: what an operator's monitoring reads."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.web.test_security import add_user, token

from dianfei.core.logs import JsonFormatter, configure_logging, request_id
from dianfei.db.engine import Database
from dianfei.web.app import create_app

pytestmark = pytest.mark.db


@pytest.fixture
def client(db: Database) -> TestClient:
    add_user("prom", "monitor")
    add_user("cashier", "cashier")
    return TestClient(create_app(db), raise_server_exceptions=False)


def test_readyz_checks_the_database_schema_and_keys(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready",
                        "checks": {"database": "ok", "schema": "ok", "keys": "ok"}}


def test_readyz_says_what_is_wrong(db: Database) -> None:
    client = TestClient(create_app(db), raise_server_exceptions=False)
    with db.engine.begin() as conn:  # as if the code were upgraded and the schema not yet
        conn.execute(text("UPDATE alembic_version SET version_num = '0019'"))
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["schema"] == "older than this code: run `dianfei migrate`"


def test_metrics_need_the_monitor_role_and_speak_prometheus(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=token(client, "cashier")).status_code == 403
    auth = token(client, "prom")
    client.get("/healthz")
    r = client.get("/metrics", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    body = r.text
    for name in ("dianfei_bills", "dianfei_payments_posted_total", "dianfei_notices",
                 "dianfei_meter_commands", "dianfei_events_pending", "dianfei_job_runs",
                 "dianfei_http_requests_total"):
        assert f"# TYPE {name} " in body, name
    # the request to /healthz was counted under its route
    assert re.search(r'dianfei_http_requests_total\{method="GET",process="\d+",'
                     r'route="/healthz",status="2xx"\} 1', body), body
    # every sample line is name{labels} number
    for line in body.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? -?[0-9.]+(e[+-]?[0-9]+)?', line), line


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "lb-4711"})
    assert mine.headers["x-request-id"] == "lb-4711"
    fresh = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("dianfei.web", logging.ERROR, __file__, 1, "boom %s", ("x",), None)
    token_ = request_id.set("abc123")
    try:
        record.request_id = request_id.get()
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token_)
    assert line["message"] == "boom x" and line["request_id"] == "abc123"
    assert line["level"] == "error" and line["logger"] == "dianfei.web"
    with pytest.raises(ValueError, match="DIANFEI_LOG_FORMAT must be text or json"):
        configure_logging("xml")
