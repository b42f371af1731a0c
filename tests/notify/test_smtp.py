"""E-mail against a real SMTP server (aiosmtpd on a loopback port)."""

from __future__ import annotations

from datetime import timedelta
from email.header import decode_header
from pathlib import Path

from sqlalchemy import select

from dianfei.core.clock import FixedClock
from dianfei.core.crypto import pii_context
from dianfei.db.engine import Database
from dianfei.notify import service
from dianfei.notify.channels import Senders
from dianfei.notify.letters import LetterSender
from dianfei.notify.models import OutboxMessage
from dianfei.notify.smtp import SmtpSender, SmtpSettings, load_smtp_settings
from tests.notify._util import CIPHER, STOP, SmtpInbox, _free_port, email_sender, settings

EMAIL_C1 = pii_context("notify_contacts", "email_enc", "C1")


def _enqueue_stop(db: Database, clock: FixedClock, email: str, key: str = "stop:C1:email",
                  locale: str | None = None) -> int:
    with db.session() as s:
        service.set_contact(s, customer_id="C1", email=email, locale=locale, clock=clock, cipher=CIPHER)
        return service.enqueue(s, key=key, account_id="C1", customer_id="C1", notice="stop_notice",
                               channel="email", context=STOP, clock=clock)


def _dispatch(db: Database, clock: FixedClock, sender: SmtpSender,
              letters: Path | None = None) -> service.DispatchReport:
    senders = Senders(email=sender, letter=LetterSender(letters) if letters else None)
    return service.dispatch(db, clock=clock, senders=senders, cipher=CIPHER, settings=settings())


def test_the_received_message_has_encoded_chinese_subject_text_and_html(
        people: Database, clock: FixedClock, smtp_inbox: SmtpInbox) -> None:
    oid = _enqueue_stop(people, clock, "zhang.san@example.cn")
    assert _dispatch(people, clock, email_sender(smtp_inbox)).sent == 1
    [envelope] = smtp_inbox.envelopes
    assert envelope.mail_from == "notice@gdj.example.cn"
    assert envelope.rcpt_tos == ["zhang.san@example.cn"]
    raw = envelope.content.decode("ascii")  # every header and body is 7-bit on the wire
    raw_subject = next(line for line in raw.splitlines() if line.startswith("Subject:"))
    assert "=?utf-8?" in raw_subject.lower()
    [msg] = smtp_inbox.messages()
    subject = "".join(part.decode(cs) if isinstance(part, bytes) else part
                      for part, cs in decode_header(msg["Subject"]))
    assert subject == "【城关供电公司】欠费停电通知：户号C1将于2026-11-09中止供电"
    assert msg["To"] == "用户C1 <zhang.san@example.cn>"
    assert msg["From"] == "城关供电所 <notice@gdj.example.cn>"
    assert msg["X-Dianfei-Outbox"] == str(oid)
    assert msg["Content-Language"] == "zh-CN"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "欠交电费 123.45 元" in text and "2026-11-09" in text and "支付宝、微信、营业厅" in text
    assert "https://pay.example.cn/b/C1-202609-1" in text
    assert '<a href="https://pay.example.cn/b/C1-202609-1"' in html and "123.45 元" in html
    d = service.deliveries(people)[0]
    assert d.provider_ref == msg["Message-ID"] and msg["Message-ID"].endswith("@gdj.example.cn>")


def test_english_for_a_customer_who_prefers_it(people: Database, clock: FixedClock,
                                               smtp_inbox: SmtpInbox) -> None:
    _enqueue_stop(people, clock, "li@example.com", locale="en")
    _dispatch(people, clock, email_sender(smtp_inbox))
    [msg] = smtp_inbox.messages()
    # the standard library folds before a leading "[" (valid RFC 5322: unfolding restores the
    # space after the colon); readers strip it
    assert msg["Subject"].strip() == (
        "[Power Supply Company] supply to account C1 will be stopped on 2026-11-09")
    assert "owes 123.45 yuan" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_email_is_encrypted_at_rest(people: Database, clock: FixedClock) -> None:
    _enqueue_stop(people, clock, "zhang.san@example.cn")
    with people.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT email_enc FROM notify_contacts").scalar_one()
    assert "zhang" not in stored and CIPHER.decrypt(stored, EMAIL_C1) == "zhang.san@example.cn"
    assert service.mask_email("zhang.san@example.cn") == "z***@example.cn"


def test_a_refused_mailbox_fails_without_retry(people: Database, clock: FixedClock,
                                               smtp_inbox: SmtpInbox, letters_dir: Path) -> None:
    smtp_inbox.refuse["gone@example.cn"] = "550 5.1.1 mailbox unavailable"
    _enqueue_stop(people, clock, "gone@example.cn")
    report = _dispatch(people, clock, email_sender(smtp_inbox), letters_dir)
    # a stop notice that cannot be e-mailed is put on paper
    assert (report.failed, report.retry_scheduled, report.fallback_letters) == (1, 0, 1)
    email, letter = service.deliveries(people)
    assert (email.status, email.last_error) == ("failed", "smtp_550: 5.1.1 mailbox unavailable")
    assert (letter.channel, letter.status, letter.fallback_of) == ("letter", "sent", email.outbox_id)
    assert smtp_inbox.envelopes == []


def test_a_temporary_refusal_is_retried(people: Database, clock: FixedClock, smtp_inbox: SmtpInbox) -> None:
    smtp_inbox.refuse["busy@example.cn"] = "451 4.3.0 try again later"
    _enqueue_stop(people, clock, "busy@example.cn")
    assert _dispatch(people, clock, email_sender(smtp_inbox)).retry_scheduled == 1
    del smtp_inbox.refuse["busy@example.cn"]
    clock.advance(timedelta(minutes=1))
    assert _dispatch(people, clock, email_sender(smtp_inbox)).sent == 1
    assert len(smtp_inbox.envelopes) == 1


def test_no_server_listening_is_retried(people: Database, clock: FixedClock) -> None:
    _enqueue_stop(people, clock, "zhang@example.cn")
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=_free_port(), timeout=2))
    assert _dispatch(people, clock, sender).retry_scheduled == 1
    with people.session() as s:
        row = s.execute(select(OutboxMessage)).scalar_one()
        assert (row.status, row.last_error is not None and row.last_error.startswith("smtp_connect")) == (
            "queued", True)


def test_settings_from_file_and_environment() -> None:
    cfg = {"smtp": {"host": "mail.example.cn", "port": 587, "starttls": True, "from": "a@example.cn"}}
    s = load_smtp_settings(cfg, env={"DIANFEI_SMTP_PASSWORD": "pw", "DIANFEI_SMTP_PORT": "2525"})
    assert s is not None
    assert (s.host, s.port, s.starttls, s.ssl, s.password, s.sender) == (
        "mail.example.cn", 2525, True, False, "pw", "a@example.cn")
    assert load_smtp_settings({}, env={}) is None


def test_only_one_plain_mailbox_is_an_email_address(people: Database, clock: FixedClock) -> None:
    """Found in review: ``a@x.cn,b@evil.cn`` passed and mailed two people."""
    import pytest

    from dianfei.core.errors import ValidationError
    from dianfei.notify.smtp import mailbox_problem

    for good in ("zhang.san@example.cn", "z+bill@mail.example.com.cn", "a_b-c@x-y.cn"):
        assert mailbox_problem(good) is None, good
    for bad in ("a@x.cn,b@evil.cn", "a@x.cn;b@evil.cn", "张三 <a@x.cn>", "a@x.cn\nBcc: b@evil.cn",
                "a@@x.cn", "a@x", "@x.cn", "a@x.cn.", "a b@x.cn", ".a@x.cn", "a..b@x.cn",
                "a@-x.cn", "x" * 65 + "@x.cn", "a@" + "x" * 250 + ".cn"):
        assert mailbox_problem(bad) is not None, bad
    with people.session() as s, pytest.raises(ValidationError, match="not one address"):
        service.set_contact(s, customer_id="C1", email="a@x.cn,b@evil.cn", clock=clock, cipher=CIPHER)


def test_a_bad_address_already_stored_is_never_sent(people: Database, clock: FixedClock,
                                                    smtp_inbox: SmtpInbox) -> None:
    _enqueue_stop(people, clock, "zhang@example.cn")
    from sqlalchemy import text

    with people.engine.begin() as conn:  # as if written before the check existed
        conn.execute(text("UPDATE notify_contacts SET email_enc = :e"),
                     {"e": CIPHER.encrypt("a@x.cn,b@evil.cn", EMAIL_C1)})
    assert _dispatch(people, clock, email_sender(smtp_inbox)).retry_scheduled == 0
    email = service.deliveries(people)[0]
    assert (email.channel, email.status) == ("email", "failed")
    assert email.last_error is not None and email.last_error.startswith("bad_address")
    assert smtp_inbox.envelopes == []


def test_a_password_never_crosses_the_network_in_clear() -> None:
    import pytest

    from dianfei.core.errors import ValidationError

    plain = {"smtp": {"host": "mail.example.cn", "user": "u", "password": "pw"}}
    with pytest.raises(ValidationError, match="need ssl = true or starttls = true"):
        load_smtp_settings(plain, env={})
    assert load_smtp_settings({"smtp": {**plain["smtp"], "starttls": True}}, env={}) is not None
    assert load_smtp_settings(plain, env={"DIANFEI_SMTP_ALLOW_PLAIN_LOGIN": "1"}) is not None
    assert load_smtp_settings({"smtp": {"host": "127.0.0.1", "user": "u"}}, env={}) is not None
