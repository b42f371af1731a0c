"""Bill delivery through notify and its audit, with a real SMTP server (aiosmtpd), the fake
Alibaba SMS gateway and PDF letters: which bills reached their customer, per channel."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader
from tests.billing.bills_data import LAST, build
from tests.fakes.sms_gateway import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, FakeSmsGateway
from tests.notify._util import (
    SMS_TEMPLATES,
    SmtpInbox,
    email_sender,
    settings,
    smtp_inbox,  # noqa: F401  (the fixture)
)

from dianfei.billing.delivery import deliver_period, delivery_audit, delivery_key
from dianfei.billing.rendering import render_period
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.notify import service as notify
from dianfei.notify.channels import Senders
from dianfei.notify.letters import LetterSender
from dianfei.notify.sms import AliyunSmsSender, AliyunSmsSettings

TEMPLATES = {**SMS_TEMPLATES, "bill_issued": "SMS_0009"}
NOW = FixedClock(datetime(2026, 3, 4, 10, 0, tzinfo=BUSINESS_TZ))


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # the key tests/factories.py encrypts phone numbers with
    monkeypatch.setenv("DIANFEI_SECRET_KEY", base64.urlsafe_b64encode(b"k" * 32).decode())


@pytest.fixture
def gateway() -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway(templates={code: [] for code in TEMPLATES.values()}) as gw:
        yield gw


@pytest.fixture
def utility(db: Database) -> Database:
    """C1 (e-mail c1@…), C2 (an address the mail server refuses), C3 (no e-mail, opted out of
    SMS): February's bills rendered to PDF."""
    build(db)
    with db.session() as s:
        notify.set_contact(s, customer_id="C1", email="c1@example.cn")
        notify.set_contact(s, customer_id="C2", email="gone@example.cn")
        notify.opt_out(s, customer_id="C3", channel="sms", reason="回复TD", clock=NOW)
    res = render_period(db, LAST, as_of=NOW.now().date())
    assert (res.bills, res.rendered, res.failed) == (3, 3, [])
    return db


def senders(inbox: SmtpInbox, gw: FakeSmsGateway, letters: Path) -> Senders:
    sms = AliyunSmsSender(AliyunSmsSettings(
        access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET, sign_name=SIGN_NAME,
        endpoint=gw.endpoint, timeout=5, templates=TEMPLATES))
    return Senders(sms=sms, email=email_sender(inbox), letter=LetterSender(letters))


def test_bills_are_delivered_and_the_audit_names_the_one_that_never_arrived(
        utility: Database, smtp_inbox: SmtpInbox, gateway: FakeSmsGateway,  # noqa: F811
        tmp_path: Path, db_env: dict[str, str]) -> None:
    smtp_inbox.refuse["gone@example.cn"] = "550 5.1.1 no such user"
    first = deliver_period(utility, LAST, clock=NOW)
    assert (first.queued, first.not_rendered) == ({"email": 3, "sms": 3}, [])
    # delivering again queues nothing new
    again = deliver_period(utility, LAST, clock=NOW)
    assert (again.queued, again.already_queued) == ({"email": 0, "sms": 0}, {"email": 3, "sms": 3})
    audit = delivery_audit(utility, LAST)
    assert (audit["issued"], audit["rendered"], audit["queued"], audit["sent"],
            audit["pending"]) == (3, 3, 3, 0, 3)

    notify.dispatch(utility, clock=NOW, senders=senders(smtp_inbox, gateway, tmp_path / "letters"),
                    settings=settings())

    # the e-mail carries the bill's PDF, whose text is the bill
    [mail] = smtp_inbox.messages()
    assert mail["To"].addresses[0].addr_spec == "c1@example.cn" and "2026-02" in mail["Subject"]
    [pdf] = [p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "C1-202602-1.zh-CN.pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.get_content())).pages)
    assert "电费账单" in text and "C1-202602-1" in text
    # the SMS carries the link and the amount due
    assert sorted(m["params"]["account_id"] for m in gateway.sent) == ["C1", "C2"]
    assert all("https://95598.example.cn/bills/" in m["params"]["bill_link"] for m in gateway.sent)

    audit = delivery_audit(utility, LAST)
    assert (audit["sent"], audit["delivered"], audit["failed"], audit["pending"],
            audit["never_delivered_count"]) == (2, 0, 0, 0, 1)
    assert audit["channels"] == {"email": {"failed": 1, "sent": 1, "suppressed": 1},
                                 "sms": {"opted_out": 1, "sent": 2}}
    [never] = audit["never_delivered"]
    assert (never["account"], never["bill_id"], never["rendered"]) == ("C3", "C3-202602-1", True)
    assert sorted((c["channel"], c["status"]) for c in never["channels"]) == [
        ("email", "suppressed"), ("sms", "opted_out")]

    # a delivery receipt for C1's SMS makes its bill delivered
    [c1_sms] = notify.deliveries(utility, key_prefix=delivery_key("2026-02", "C1-202602-1", "sms"))
    with utility.session() as s:
        notify.mark_delivered(s, outbox_id=c1_sms.outbox_id, clock=NOW)

    # the fallback: a letter for the bills that reached nobody, and only for them
    letters = deliver_period(utility, LAST, clock=NOW, channels=("letter",), only_undelivered=True)
    assert letters.queued == {"letter": 1}
    notify.dispatch(utility, clock=NOW, senders=senders(smtp_inbox, gateway, tmp_path / "letters"),
                    settings=settings())
    assert [p.name[-7:] for p in (tmp_path / "letters").iterdir()] == ["-C3.pdf"]

    # the CLI prints the same audit
    proc = subprocess.run([sys.executable, "-m", "dianfei", "bill", "delivery", "--period",
                           "2026-02", "--json"], env={**os.environ, **db_env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout)
    assert (final["sent"], final["delivered"], final["never_delivered"]) == (3, 1, [])
    assert final["channels"]["letter"] == {"sent": 1}


def test_a_bill_without_its_pdf_is_not_emailed_and_bad_input_is_refused(db: Database) -> None:
    build(db)
    res = deliver_period(db, LAST, clock=NOW, channels=("email", "sms"))
    assert res.queued == {"email": 0, "sms": 3}
    assert res.not_rendered == ["C1-202602-1", "C2-202602-1", "C3-202602-1"]
    with pytest.raises(ValidationError, match="--channel must be one of"):
        deliver_period(db, LAST, clock=NOW, channels=("fax",))
    with pytest.raises(ValidationError, match="no bills for period 2030-01"):
        delivery_audit(db, Period(2030, 1))


def test_rendering_again_skips_unchanged_bills_and_redraws_changed_ones(
        db: Database, tmp_path: Path) -> None:
    from sqlalchemy import text

    build(db)
    day = NOW.now().date()
    first = render_period(db, LAST, out_dir=tmp_path / "out", as_of=day, chunk_size=2)
    assert (first.rendered, first.skipped) == (3, 0)
    again = render_period(db, LAST, out_dir=tmp_path / "out", as_of=day, chunk_size=2)
    assert (again.rendered, again.skipped) == (0, 3)
    # a file gone from disk is drawn again; so is an English version (another file)
    (tmp_path / "out" / "2026-02" / "C2-202602-1.zh-CN.pdf").unlink()
    assert render_period(db, LAST, out_dir=tmp_path / "out", as_of=day).rendered == 1
    assert render_period(db, LAST, out_dir=tmp_path / "out", as_of=day, lang="en").rendered == 3
    # the content changes (the customer's name, as a stand-in for any change): C1 is redrawn
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET name = '李四' WHERE customer_id = 'C1'"))
    changed = render_period(db, LAST, out_dir=tmp_path / "out", as_of=day)
    assert (changed.rendered, changed.skipped) == (1, 2)
    path = tmp_path / "out" / "2026-02" / "C1-202602-1.zh-CN.pdf"
    assert "李四" in "".join(p.extract_text() for p in PdfReader(path).pages)
