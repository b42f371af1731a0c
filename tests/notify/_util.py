"""Helpers and fixtures of the notify tests: a population, a real SMTP server, the fake SMS gateway."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.crypto import PiiCipher
from dianfei.db.engine import Database
from dianfei.notify.channels import Senders
from dianfei.notify.letters import LetterSender
from dianfei.notify.rules import NotifySettings
from dianfei.notify.sms import AliyunSmsSender, AliyunSmsSettings
from dianfei.notify.smtp import SmtpSender, SmtpSettings
from tests.factories import Person, load_people
from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, FakeSmsGateway

#: the key tests/factories.py encrypts phone numbers with
CIPHER = PiiCipher(b"k" * 32)
SMS_TEMPLATES = {"reminder": "SMS_0001", "final_reminder": "SMS_0002", "stop_notice": "SMS_0003",
                 "pre_stop": "SMS_0004", "prepay_warning": "SMS_0005", "cutoff_notice": "SMS_0006",
                 "reconnected": "SMS_0007", "payment_receipt": "SMS_0008"}


def local(text: str) -> datetime:
    """An Asia/Shanghai wall-clock instant, e.g. local("2026-11-02 10:00")."""
    return datetime.fromisoformat(text).replace(tzinfo=BUSINESS_TZ)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIANFEI_SECRET_KEY", base64.urlsafe_b64encode(b"k" * 32).decode())


@pytest.fixture
def people(db: Database) -> Database:
    """Customers C1, C2, C3 (phone 13800138000, address 测试路1号) in the database."""
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    return db


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(local("2026-11-02 10:00"))


@dataclass
class SmtpInbox:
    host: str
    port: int
    envelopes: list[Any] = field(default_factory=list)
    #: RCPT addresses answered with a code: {"gone@example.cn": "550 5.1.1 no such user"}
    refuse: dict[str, str] = field(default_factory=dict)

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]  # type: ignore[misc]


class _Handler:
    def __init__(self, inbox: SmtpInbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.inbox.refuse:
            return self.inbox.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.inbox.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    from aiosmtpd.controller import Controller

    inbox = SmtpInbox("127.0.0.1", _free_port())
    controller = Controller(_Handler(inbox), hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def gateway() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(templates={code: [] for code in SMS_TEMPLATES.values()}) as gw:
        yield gw


def sms_sender(gw: FakeSmsGateway, timeout: float = 5.0) -> AliyunSmsSender:
    return AliyunSmsSender(AliyunSmsSettings(
        access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET, sign_name=SIGN_NAME,
        endpoint=gw.endpoint, timeout=timeout, templates=SMS_TEMPLATES))


def email_sender(inbox: SmtpInbox) -> SmtpSender:
    return SmtpSender(SmtpSettings(host=inbox.host, port=inbox.port, sender="notice@gdj.example.cn",
                                   sender_name="城关供电所", timeout=5))


@pytest.fixture
def letters_dir(tmp_path: Path) -> Path:
    return tmp_path / "letters"


@pytest.fixture
def senders(gateway: FakeSmsGateway, smtp_inbox: SmtpInbox, letters_dir: Path) -> Senders:
    return Senders(sms=sms_sender(gateway), email=email_sender(smtp_inbox),
                   letter=LetterSender(letters_dir))


def settings(**overrides: Any) -> NotifySettings:
    base: dict[str, Any] = {"utility_name": "城关供电公司", "hotline": "95598"}
    base.update(overrides)
    return NotifySettings(**base)


REMINDER = {"customer_name": "用户C1", "account_id": "C1", "amount_due": "123.45",
            "due_on": "2026-10-25", "bill_id": "C1-202609-1",
            "bill_link": "https://pay.example.cn/b/C1-202609-1", "pay_channels": "支付宝、微信、营业厅"}
STOP = {"customer_name": "用户C1", "account_id": "C1", "amount_due": "123.45", "stop_on": "2026-11-09",
        "bill_link": "https://pay.example.cn/b/C1-202609-1", "pay_channels": "支付宝、微信、营业厅"}
