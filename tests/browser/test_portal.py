"""The customer portal in a phone's browser: a customer signs in with the code the SMS fake
received, opens the bill a notice links to, pays it with Alipay (the order is created), and —
after Alipay's signed notification reaches the callback — sees the bill paid."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.crypto import PiiCipher
from dianfei.customers.service import set_phone
from dianfei.db.engine import Database
from dianfei.notify.sms import AliyunSmsSender, AliyunSmsSettings
from tests.browser.conftest import LiveServer, shot
from tests.factories import Person, Reads, load_people, month_end
from tests.fakes.alipay import FakeAlipay
from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, FakeSmsGateway

JAN = Period(2026, 1)
PHONE = "13900000001"


def test_a_customer_signs_in_by_code_views_a_bill_and_pays(
        db: Database, phone: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alipay = FakeAlipay()
    for k, v in alipay.env(tmp_path / "alipay.pem").items():
        monkeypatch.setenv(k, v)
    load_people(db, [Person("C1", name="王芳"), Person("C2")])
    dec = month_end(Period(2025, 12))
    (Reads().add("C1", dec, 1000_00).add("C1", month_end(JAN), 1100_00)
     .add("C2", dec, 1000_00).add("C2", month_end(JAN), 1200_00).store(db))
    run_bill_run(db, JAN, FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ)))
    with db.session() as s:
        set_phone(s, customer_id="C1", phone=PHONE, cipher=PiiCipher(b"k" * 32))
    clock = FixedClock(datetime(2026, 2, 10, 10, 0, tzinfo=BUSINESS_TZ))
    with FakeSmsGateway(templates={"SMS_900001": ["code", "minutes"]}) as gateway, \
            LiveServer(db, clock) as server:
        server.server.config.app.state.portal_sms = AliyunSmsSender(AliyunSmsSettings(
            access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET,
            sign_name=SIGN_NAME, endpoint=gateway.endpoint,
            templates={"portal_otp": "SMS_900001"}))
        base = server.url
        # the link a reminder carries (collections/context.py): sign in first, then the bill
        phone.goto(f"{base}/portal/bills/C1-202601-1")
        assert phone.locator("input[name=phone]").is_visible()
        phone.fill("input[name=phone]", PHONE)
        shot(phone, "1-phone")
        phone.click("form[action='/portal/login/code'] button[type=submit]")
        phone.wait_for_selector("#sent")
        [sms] = gateway.wait_sent(1)
        assert sms["phone"] == PHONE
        phone.fill("input[name=code]", sms["params"]["code"])
        shot(phone, "2-code")
        phone.click("form[action='/portal/login/verify'] button[type=submit]")
        phone.wait_for_load_state("networkidle")
        assert phone.url.endswith("/portal/bills/C1-202601-1")
        assert phone.locator(".portal-bar").is_visible()
        assert "53.80" in phone.content()
        shot(phone, "3-bill")
        phone.click("button.pay[data-channel=alipay]")
        phone.wait_for_selector("#order-no")
        order_no = phone.inner_text("#order-no").strip()
        assert phone.inner_text("#pay-amount").strip() == "53.80"
        assert phone.locator(".qr svg").is_visible()
        shot(phone, "4-pay")
        # Alipay's signed notification for the order reaches the (public) callback
        body, ctype = alipay.notification(order_no, "2026021022001400777", 5380)
        answer = httpx.post(f"{base}/api/v1/payments/notify/alipay", content=body,
                            headers={"content-type": ctype}, timeout=30)
        assert (answer.status_code, answer.text) == (200, "success")
        phone.goto(f"{base}/portal/bills")
        item = phone.locator("li[data-bill='C1-202601-1'] .state")
        assert item.inner_text().strip() == "已缴清"
        assert phone.inner_text("#due").strip() == "0.00"
        shot(phone, "5-paid")
        phone.goto(f"{base}/portal/usage")
        phone.wait_for_selector("#usage-chart canvas")
        shot(phone, "6-usage")
        phone.goto(f"{base}/portal/plan")
        assert phone.inner_text("#owed").strip() == "0.00"  # paid: nothing to spread
        assert phone.locator("#nothing").is_visible()
        shot(phone, "7-plan")
        phone.goto(f"{base}/portal/complaint")
        phone.fill("textarea[name=summary]", "抄表员未按约定时间上门，请核实。")
        phone.click("form[action='/portal/complaint'] button[type=submit]")
        phone.wait_for_selector("#done")
        shot(phone, "8-complaint")
        # another customer's bill is not there for this customer
        assert phone.goto(f"{base}/portal/bills/C2-202601-1").status == 404
