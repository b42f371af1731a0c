"""The small world the REST API tests share: three customers billed for January 2026 (C1 paid
part of its bill at the counter), C2 with its own phone, one user per role and customer users
c1 (of C1) and c2 (of C2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from tests.factories import Person, Reads, load_people, month_end
from tests.web.test_security import PASSWORD, add_user

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.crypto import PiiCipher
from dianfei.db.engine import Database
from dianfei.security.service import ROLES
from dianfei.web.app import create_app

JAN = Period(2026, 1)
#: the bills are issued on 2026-02-03; "now" is after their due date
ISSUED = datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)
NOW = datetime(2026, 3, 20, 10, 0, tzinfo=BUSINESS_TZ)
C2_PHONE = "13912345678"


def build(db: Database) -> None:
    from dianfei.customers.service import set_phone
    from dianfei.payments.channels.base import ChannelPayment
    from dianfei.payments.service import post_channel_payment

    load_people(db, [Person("C1", name="王小明"), Person("C2", name="李四"),
                     Person("C3", name="王大锤")])
    dec = month_end(Period(2025, 12))
    (Reads().add("C1", dec, 1000_00).add("C1", month_end(JAN), 1100_00)
     .add("C2", dec, 1000_00).add("C2", month_end(JAN), 1200_00)
     .add("C3", dec, 500_00).add("C3", month_end(JAN), 550_00).store(db))
    run_bill_run(db, JAN, FixedClock(ISSUED))
    with db.session() as s:
        set_phone(s, customer_id="C2", phone=C2_PHONE, cipher=PiiCipher(b"k" * 32))
        post_channel_payment(s, ChannelPayment(
            channel="counter", transaction_id="T1", amount=2000,
            paid_at=datetime(2026, 2, 10, 9, 30, tzinfo=BUSINESS_TZ), account_id="C1"),
            clock=FixedClock(datetime(2026, 2, 10, 9, 31, tzinfo=BUSINESS_TZ)), source="counter")
    for role in ROLES:
        if role != "customer":
            add_user(role, role)
    add_user("c1", "customer", "C1")
    add_user("c2", "customer", "C2")


def client_for(db: Database) -> TestClient:
    build(db)
    return TestClient(create_app(db, FixedClock(NOW)), raise_server_exceptions=False)


def auth(client: TestClient, user: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def get(client: TestClient, path: str, user: str | None, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(client, user) if user else {})
