"""The outbox end to end: enqueue → dispatch → the real SMTP server / the fake SMS gateway."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.db.engine import Database
from dianfei.notify import service
from dianfei.notify.channels import Message, Senders, SendResult
from dianfei.notify.letters import LetterSender
from dianfei.notify.models import DeliveryAttempt, OutboxMessage
from tests.fakes.sms_gateway import FakeSmsGateway
from tests.notify._util import CIPHER, REMINDER, STOP, SmtpInbox, local, settings, sms_sender


def enqueue(db: Database, clock: FixedClock, *, key: str, channel: str = "sms", notice: str = "reminder",
            customer: str = "C1", context: dict[str, str] | None = None, **kw: object) -> int:
    ctx = dict(context or (STOP if notice == "stop_notice" else REMINDER))
    ctx["account_id"] = customer
    with db.session() as s:
        return service.enqueue(s, key=key, account_id=customer, customer_id=customer, notice=notice,
                               channel=channel, context=ctx, clock=clock, **kw)  # type: ignore[arg-type]


def dispatch(db: Database, clock: FixedClock, senders: Senders, **ns: object) -> service.DispatchReport:
    return service.dispatch(db, clock=clock, senders=senders, cipher=CIPHER, settings=settings(**ns))


def one(db: Database, key: str) -> service.Delivery:
    [d] = service.deliveries(db, key_prefix=key)
    return d


def outcomes(db: Database, outbox_id: int) -> list[tuple[str | None, str | None]]:
    with db.session() as s:
        rows = s.execute(select(DeliveryAttempt.outcome, DeliveryAttempt.error_code)
                         .where(DeliveryAttempt.outbox_id == outbox_id)
                         .order_by(DeliveryAttempt.attempt_no)).all()
    return [(r[0], r[1]) for r in rows]


# -- idempotency -----------------------------------------------------------------------------------

def test_the_same_key_twice_makes_one_row_and_one_email(people: Database, clock: FixedClock,
                                                        senders: Senders, smtp_inbox: SmtpInbox) -> None:
    # given a customer with an e-mail address
    with people.session() as s:
        service.set_contact(s, customer_id="C1", email="zhang@example.cn", clock=clock, cipher=CIPHER)
    # when collections enqueues the same reminder twice (a re-run of the same day)
    first = enqueue(people, clock, key="dun:C1:2026-10:reminder:email", channel="email")
    second = enqueue(people, clock, key="dun:C1:2026-10:reminder:email", channel="email",
                     context={**REMINDER, "amount_due": "999.99"})
    report = dispatch(people, clock, senders)
    again = dispatch(people, clock, senders)
    # then one row, one e-mail, and the first context won
    assert first == second
    with people.session() as s:
        assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 1
    assert report.sent == 1 and again.sent == 0
    assert len(smtp_inbox.envelopes) == 1
    assert "123.45" in smtp_inbox.messages()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    d = one(people, "dun:C1")
    assert (d.status, d.attempts, d.sent_at) == ("sent", 1, clock.now())


def test_enqueue_refuses_a_context_missing_a_required_variable(people: Database, clock: FixedClock) -> None:
    ctx = {k: v for k, v in STOP.items() if k != "stop_on"}
    with pytest.raises(ValidationError, match="context lacks stop_on"), people.session() as s:
        service.enqueue(s, key="k1", account_id="C1", customer_id="C1", notice="stop_notice",
                        channel="sms", context=ctx, clock=clock)
    assert service.deliveries(people) == []


def test_enqueue_refuses_unknown_notice_channel_and_naive_not_before(people: Database,
                                                                    clock: FixedClock) -> None:
    with people.session() as s:
        with pytest.raises(ValidationError, match="notice must be one of"):
            service.enqueue(s, key="k", account_id="C1", customer_id="C1", notice="hello", channel="sms",
                            context=REMINDER, clock=clock)
        with pytest.raises(ValidationError, match="channel must be one of"):
            service.enqueue(s, key="k", account_id="C1", customer_id="C1", notice="reminder",
                            channel="fax", context=REMINDER, clock=clock)
        with pytest.raises(ValidationError, match="timezone-aware"):
            service.enqueue(s, key="k", account_id="C1", customer_id="C1", notice="reminder",
                            channel="sms", context=REMINDER, clock=clock,
                            not_before=local("2026-11-03 09:00").replace(tzinfo=None))
    assert service.deliveries(people) == []


# -- timing: not_before, quiet hours, rate limits ---------------------------------------------------

def test_not_before_is_respected(people: Database, clock: FixedClock, senders: Senders,
                                 gateway: FakeSmsGateway) -> None:
    enqueue(people, clock, key="pre", notice="stop_notice", not_before=local("2026-11-02 15:30"))
    assert dispatch(people, clock, senders).sent == 0
    assert gateway.requests == 0
    clock.set(local("2026-11-02 15:30"))
    assert dispatch(people, clock, senders).sent == 1
    assert len(gateway.sent) == 1


def test_quiet_hours_defer_an_sms_to_eight_in_the_morning(people: Database, senders: Senders,
                                                         gateway: FakeSmsGateway) -> None:
    # given an SMS queued at 22:30 local time
    clock = FixedClock(local("2026-11-02 22:30"))
    enqueue(people, clock, key="night")
    # when dispatch runs at night
    report = dispatch(people, clock, senders)
    # then nothing reaches the gateway and the row waits for 08:00 tomorrow
    assert report.deferred_quiet_hours == 1 and report.sent == 0
    assert gateway.requests == 0
    d = one(people, "night")
    assert (d.status, d.attempts, d.next_attempt_at) == ("queued", 0, local("2026-11-03 08:00"))
    clock.set(local("2026-11-03 07:59"))
    assert dispatch(people, clock, senders).sent == 0
    assert gateway.requests == 0
    clock.set(local("2026-11-03 08:00"))
    assert dispatch(people, clock, senders).sent == 1
    assert [m["phone"] for m in gateway.sent] == ["13800138000"]


def test_email_is_not_held_by_quiet_hours(people: Database, senders: Senders, smtp_inbox: SmtpInbox) -> None:
    clock = FixedClock(local("2026-11-02 23:00"))
    with people.session() as s:
        service.set_contact(s, customer_id="C1", email="zhang@example.cn", clock=clock, cipher=CIPHER)
    enqueue(people, clock, key="mail-at-night", channel="email")
    assert dispatch(people, clock, senders).sent == 1
    assert len(smtp_inbox.envelopes) == 1


def test_per_customer_daily_limit_defers_to_the_next_morning(
        people: Database, clock: FixedClock, senders: Senders, gateway: FakeSmsGateway) -> None:
    # given three SMS for one customer, and a limit of two a day
    for n in range(3):
        enqueue(people, clock, key=f"r{n}")
    report = dispatch(people, clock, senders, per_customer_daily={"sms": 2})
    # then two go out, the third waits for tomorrow after the quiet hours
    assert (report.sent, report.deferred_rate_limit) == (2, 1)
    assert len(gateway.sent) == 2
    assert one(people, "r2").next_attempt_at == local("2026-11-03 08:00")
    # and a legally required notice is not held back by the daily limit
    enqueue(people, clock, key="stop", notice="stop_notice")
    assert dispatch(people, clock, senders, per_customer_daily={"sms": 2}).sent == 1
    assert len(gateway.sent) == 3
    clock.set(local("2026-11-03 08:00"))
    assert dispatch(people, clock, senders, per_customer_daily={"sms": 2}).sent == 1
    assert one(people, "r2").status == "sent"


def test_channel_throughput_limit_holds_the_rest_for_a_later_pass(people: Database, clock: FixedClock,
                                                                  senders: Senders,
                                                                  gateway: FakeSmsGateway) -> None:
    for c in ("C1", "C2", "C3"):
        enqueue(people, clock, key=f"t:{c}", customer=c)
    report = dispatch(people, clock, senders, per_channel_per_minute={"sms": 2})
    assert (report.sent, report.deferred_throughput) == (2, 1)
    assert len(gateway.sent) == 2
    assert dispatch(people, clock, senders, per_channel_per_minute={"sms": 2}).sent == 0
    clock.advance(timedelta(seconds=61))
    assert dispatch(people, clock, senders, per_channel_per_minute={"sms": 2}).sent == 1
    assert sorted(d.status for d in service.deliveries(people, key_prefix="t:")) == ["sent"] * 3


# -- opt-outs, missing contacts, unconfigured channels ---------------------------------------------

def test_opt_out_is_honoured_and_recorded(people: Database, clock: FixedClock, senders: Senders,
                                          gateway: FakeSmsGateway) -> None:
    with people.session() as s:
        service.opt_out(s, customer_id="C1", channel="sms", reason="回复TD退订", clock=clock)
        service.opt_out(s, customer_id="C1", channel="sms", reason="again", clock=clock)  # idempotent
    enqueue(people, clock, key="r")
    report = dispatch(people, clock, senders)
    assert (report.opted_out, report.sent, report.fallback_letters) == (1, 0, 0)
    assert gateway.requests == 0
    d = one(people, "r")
    assert d.status == "opted_out" and d.last_error is not None and "回复TD退订" in d.last_error
    # opting back in lets the next notice through
    with people.session() as s:
        assert service.opt_in(s, customer_id="C1", channel="sms", clock=clock) is True
    enqueue(people, clock, key="r2")
    assert dispatch(people, clock, senders).sent == 1


def test_an_opted_out_stop_notice_falls_back_to_a_letter(people: Database, clock: FixedClock,
                                                         senders: Senders, gateway: FakeSmsGateway,
                                                         letters_dir: Path) -> None:
    with people.session() as s:
        service.opt_out(s, customer_id="C1", channel="sms", reason="不要短信", clock=clock)
        service.opt_out(s, customer_id="C1", channel="letter", reason="不要信件", clock=clock)
    original = enqueue(people, clock, key="stop:C1", notice="stop_notice")
    report = dispatch(people, clock, senders)
    assert (report.opted_out, report.fallback_letters, report.sent) == (1, 1, 1)
    assert gateway.requests == 0
    sms, letter = service.deliveries(people, key_prefix="stop:C1")
    assert (sms.channel, sms.status) == ("sms", "opted_out")
    assert (letter.key, letter.channel, letter.status, letter.fallback_of) == (
        "stop:C1#letter", "letter", "sent", original)
    assert letter.provider_ref is not None and Path(letter.provider_ref).parent == letters_dir


def test_unconfigured_channel_and_missing_contact_are_recorded_not_dropped(
        people: Database, clock: FixedClock, senders: Senders, smtp_inbox: SmtpInbox) -> None:
    enqueue(people, clock, key="wx", channel="wechat")
    enqueue(people, clock, key="mail", channel="email", customer="C2")  # C2 has no e-mail address
    enqueue(people, clock, key="stopmail", channel="email", customer="C3", notice="stop_notice")
    report = dispatch(people, clock, senders)
    assert report.suppressed == 3 and report.fallback_letters == 1 and report.sent == 1
    assert one(people, "wx").last_error == "wechat channel not configured"
    assert one(people, "mail").last_error == "no e-mail address on file"
    assert [(d.channel, d.status) for d in service.deliveries(people, key_prefix="stopmail")] == [
        ("email", "suppressed"), ("letter", "sent")]
    assert smtp_inbox.envelopes == []


# -- retries, terminal failures, the worklist ------------------------------------------------------

def test_gateway_throttle_is_retried_with_backoff_and_sends_exactly_once(
        people: Database, clock: FixedClock, senders: Senders, gateway: FakeSmsGateway) -> None:
    gateway.fail_next("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5")
    oid = enqueue(people, clock, key="r")
    first = dispatch(people, clock, senders)
    assert (first.retry_scheduled, first.sent) == (1, 0)
    d = one(people, "r")
    assert (d.status, d.attempts, d.next_attempt_at) == ("queued", 1, clock.now() + timedelta(seconds=60))
    assert dispatch(people, clock, senders).sent == 0  # not before the backoff
    clock.advance(timedelta(seconds=60))
    assert dispatch(people, clock, senders).sent == 1
    assert len(gateway.sent) == 1 and gateway.requests == 2
    assert outcomes(people, oid) == [("retry", "isv.BUSINESS_LIMIT_CONTROL"), ("sent", None)]
    assert (one(people, "r").status, one(people, "r").attempts) == ("sent", 2)


def test_http_500_is_retried(people: Database, clock: FixedClock, senders: Senders,
                             gateway: FakeSmsGateway) -> None:
    gateway.fail_next_http(500)
    oid = enqueue(people, clock, key="r")
    assert dispatch(people, clock, senders).retry_scheduled == 1
    clock.advance(timedelta(minutes=1))
    assert dispatch(people, clock, senders).sent == 1
    assert outcomes(people, oid) == [("retry", "http_500"), ("sent", None)]
    assert len(gateway.sent) == 1


def test_retries_back_off_exponentially_then_fail_onto_the_worklist(
        people: Database, clock: FixedClock, senders: Senders, gateway: FakeSmsGateway) -> None:
    gateway.fail_next("isp.SYSTEM_ERROR", times=3)
    oid = enqueue(people, clock, key="r")
    waits = []
    for _ in range(3):
        dispatch(people, clock, senders, max_attempts=3)
        d = one(people, "r")
        if d.status == "queued":
            assert d.next_attempt_at is not None
            waits.append(d.next_attempt_at - clock.now())
            clock.set(d.next_attempt_at)
    assert waits == [timedelta(seconds=60), timedelta(seconds=120)]
    d = one(people, "r")
    assert (d.status, d.attempts) == ("failed", 3)
    assert d.last_error == "isp.SYSTEM_ERROR: scripted failure after 3 attempts"
    assert [w.outbox_id for w in service.worklist(people)] == [oid]
    assert gateway.sent == []
    # an operator re-queues it; one more try succeeds
    with people.session() as s:
        service.retry(s, outbox_id=oid, reason="gateway fixed", clock=clock)
        with pytest.raises(ConflictError):
            service.retry(s, outbox_id=oid, reason="twice", clock=clock)
    assert dispatch(people, clock, senders, max_attempts=3).sent == 1
    assert len(gateway.sent) == 1 and service.worklist(people) == []


def test_terminal_gateway_error_fails_at_once(people: Database, clock: FixedClock, senders: Senders,
                                              gateway: FakeSmsGateway) -> None:
    gateway.fail_next("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
    oid = enqueue(people, clock, key="r")
    report = dispatch(people, clock, senders)
    assert (report.failed, report.retry_scheduled) == (1, 0)
    d = one(people, "r")
    assert (d.status, d.attempts, d.last_error) == ("failed", 1, "isv.MOBILE_NUMBER_ILLEGAL: 非法手机号")
    clock.advance(timedelta(hours=1))
    dispatch(people, clock, senders)
    assert gateway.requests == 1 and gateway.sent == []
    assert [w.outbox_id for w in service.worklist(people)] == [oid]


def test_a_read_timeout_is_an_unknown_outcome_and_never_resent(people: Database, clock: FixedClock,
                                                               gateway: FakeSmsGateway,
                                                               letters_dir: Path) -> None:
    # given a gateway that accepts the SMS but answers after the client gave up
    gateway.hang_next(1.5)
    senders = Senders(sms=sms_sender(gateway, timeout=0.5), letter=LetterSender(letters_dir))
    enqueue(people, clock, key="r")
    report = dispatch(people, clock, senders)
    # then the row goes to the worklist rather than risking a second SMS
    assert report.failed == 1
    d = one(people, "r")
    assert d.status == "failed" and d.last_error is not None and d.last_error.startswith("outcome unknown")
    clock.advance(timedelta(hours=2))
    dispatch(people, clock, senders)
    assert len(gateway.sent) == 1 and gateway.requests == 1


# -- a crash between 'sending' and the outcome -----------------------------------------------------

class Crash(BaseException):
    """What SIGKILL looks like from inside: nothing after it runs."""


class CrashAfterSend:
    """The real adapter sends, then the process 'dies' before the outcome is recorded."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.channel = inner.channel  # type: ignore[attr-defined]
        self.idempotent = inner.idempotent  # type: ignore[attr-defined]

    def send(self, message: Message) -> SendResult:
        self.inner.send(message)  # type: ignore[attr-defined]
        raise Crash()


def test_a_crash_after_the_sms_went_out_does_not_send_it_twice(people: Database, clock: FixedClock,
                                                               senders: Senders,
                                                               gateway: FakeSmsGateway) -> None:
    oid = enqueue(people, clock, key="r")
    with pytest.raises(Crash):
        dispatch(people, clock, Senders(sms=CrashAfterSend(senders.sms)))  # type: ignore[arg-type]
    assert one(people, "r").status == "sending"
    # a dispatch soon after leaves the in-flight row alone
    assert dispatch(people, clock, senders).sent == 0
    assert one(people, "r").status == "sending"
    # once the row is older than the sending timeout it is surfaced, not resent
    clock.advance(timedelta(minutes=11))
    report = dispatch(people, clock, senders)
    assert (report.recovered_for_review, report.sent) == (1, 0)
    d = one(people, "r")
    assert d.status == "failed" and d.last_error is not None and "outcome unknown" in d.last_error
    assert outcomes(people, oid) == [("unknown", None)]
    assert len(gateway.sent) == 1
    assert [w.outbox_id for w in service.worklist(people)] == [oid]


def test_a_crashed_letter_is_retried_and_written_once(people: Database, clock: FixedClock,
                                                      letters_dir: Path) -> None:
    letters = LetterSender(letters_dir)
    oid = enqueue(people, clock, key="L", channel="letter", notice="stop_notice")
    with pytest.raises(Crash):
        dispatch(people, clock, Senders(letter=CrashAfterSend(letters)))  # type: ignore[arg-type]
    clock.advance(timedelta(minutes=11))
    report = dispatch(people, clock, Senders(letter=letters))
    assert report.recovered_retried == 1 and report.sent == 1
    assert len(list(letters_dir.glob("*.pdf"))) == 1
    assert outcomes(people, oid) == [("unknown", None), ("sent", None)]


# -- timeline --------------------------------------------------------------------------------------

def test_timeline_lists_every_notice_of_the_account_with_its_status(people: Database, clock: FixedClock,
                                                                   senders: Senders) -> None:
    with people.session() as s:
        service.opt_out(s, customer_id="C1", channel="email", reason="no e-mail", clock=clock)
    enqueue(people, clock, key="a")
    clock.advance(timedelta(minutes=1))
    enqueue(people, clock, key="b", channel="email")
    enqueue(people, clock, key="other", customer="C2")
    dispatch(people, clock, senders)
    with people.session() as s:
        service.mark_delivered(s, outbox_id=one(people, "a").outbox_id, clock=clock)
    assert [(d.key, d.channel, d.status) for d in service.timeline(people, "C1")] == [
        ("a", "sms", "delivered"), ("b", "email", "opted_out")]


def test_enqueue_many_inserts_new_keys_and_skips_known_ones(people: Database, clock: FixedClock) -> None:
    first = enqueue(people, clock, key="bulk:C1")
    batch = [service.Notice(key=f"bulk:{c}", account_id=c, customer_id=c, notice="reminder", channel="sms",
                            context={**REMINDER, "account_id": c}) for c in ("C1", "C2", "C3")]
    with people.session() as s:
        service.enqueue_many(s, batch, clock=clock)
        service.enqueue_many(s, batch, clock=clock)
    rows = service.deliveries(people, key_prefix="bulk:")
    assert [(d.key, d.status) for d in rows] == [("bulk:C1", "queued"), ("bulk:C2", "queued"),
                                                 ("bulk:C3", "queued")]
    assert rows[0].outbox_id == first
    # one bad notice refuses the whole batch, naming it; the good one before it is not queued either
    good = service.Notice(key="bulk:C4", account_id="C4", customer_id="C4", notice="reminder", channel="sms",
                          context=REMINDER)
    bad = service.Notice(key="bulk:C9", account_id="C9", customer_id="C9", notice="stop_notice",
                         channel="sms", context=REMINDER)
    with pytest.raises(ValidationError, match="notice 'bulk:C9': notice stop_notice: context lacks"), \
            people.session() as s:
        service.enqueue_many(s, [good, bad], clock=clock)
    assert len(service.deliveries(people, key_prefix="bulk:")) == 3


class CrashOnSecond:
    """Sends the first message, then the process 'dies' while the second is in flight."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.channel = inner.channel  # type: ignore[attr-defined]
        self.idempotent = inner.idempotent  # type: ignore[attr-defined]
        self.calls = 0

    def send(self, message: Message) -> SendResult:
        self.calls += 1
        if self.calls == 2:
            raise Crash()
        return self.inner.send(message)  # type: ignore[attr-defined,no-any-return]


def test_an_interrupted_batch_keeps_what_went_out_and_gives_back_what_did_not(
        people: Database, clock: FixedClock, senders: Senders, gateway: FakeSmsGateway) -> None:
    # given three SMS claimed in one batch, and a pass that stops while the second is in flight
    # (one message at a time, so "the second" is well defined; tests/notify/test_parallel.py has
    # the same with messages in parallel)
    ids = [enqueue(people, clock, key=f"b:{c}", customer=c) for c in ("C1", "C2", "C3")]
    with pytest.raises(Crash):
        dispatch(people, clock, Senders(sms=CrashOnSecond(senders.sms)),  # type: ignore[arg-type]
                 dispatch_concurrency=1)
    # then the first is recorded sent, the second is left 'sending', the third is queued again
    assert [(d.status, d.attempts) for d in service.deliveries(people, key_prefix="b:")] == [
        ("sent", 1), ("sending", 1), ("queued", 1)]
    assert len(gateway.sent) == 1
    assert outcomes(people, ids[2]) == [("released", None)]
    # and the next pass after the timeout sends the third and surfaces the second, sending nothing twice
    clock.advance(timedelta(minutes=11))
    report = dispatch(people, clock, senders)
    assert (report.sent, report.recovered_for_review) == (1, 1)
    assert [d.status for d in service.deliveries(people, key_prefix="b:")] == ["sent", "failed", "sent"]
    assert outcomes(people, ids[2]) == [("released", None), ("sent", None)]
    assert sorted(m["phone"] for m in gateway.sent) == ["13800138000"] * 2


def test_batches_smaller_than_the_day_still_send_everything_once(
        people: Database, clock: FixedClock, senders: Senders, gateway: FakeSmsGateway,
        monkeypatch: pytest.MonkeyPatch, letters_dir: Path) -> None:
    # given batches of two rows, four reminders, and a stop notice to an opted-out customer
    monkeypatch.setattr(service, "BATCH", 2)
    with people.session() as s:
        service.opt_out(s, customer_id="C3", channel="sms", reason="回复TD", clock=clock)
    for n in range(4):
        enqueue(people, clock, key=f"m{n}", customer=("C1", "C2")[n % 2])
    enqueue(people, clock, key="stop", customer="C3", notice="stop_notice")
    # when one pass runs with a daily limit of one SMS per customer
    report = dispatch(people, clock, senders, per_customer_daily={"sms": 1})
    # then one SMS per customer goes out, the rest wait, and the stop notice's letter goes out in
    # the same pass
    assert (report.sent, report.deferred_rate_limit, report.opted_out,
            report.fallback_letters) == (3, 2, 1, 1)
    assert len(gateway.sent) == 2
    assert [(d.key, d.status) for d in service.deliveries(people)] == [
        ("m0", "sent"), ("m1", "sent"), ("m2", "queued"), ("m3", "queued"), ("stop", "opted_out"),
        ("stop#letter", "sent")]
    assert dispatch(people, clock, senders, per_customer_daily={"sms": 1}).sent == 0


def test_a_gateway_error_quoting_the_number_is_stored_masked(people: Database, clock: FixedClock,
                                                             senders: Senders,
                                                             gateway: FakeSmsGateway) -> None:
    """Issue 17: a provider's message may quote the recipient; the outbox and the delivery
    attempts keep it masked."""
    from sqlalchemy import text

    gateway.fail_next("isv.MOBILE_NUMBER_ILLEGAL", "13800138000 非法手机号 (zhang.san@example.cn)")
    enqueue(people, clock, key="q")
    dispatch(people, clock, senders)
    d = one(people, "q")
    assert d.last_error == "isv.MOBILE_NUMBER_ILLEGAL: 138****8000 非法手机号 (z***@example.cn)"
    with people.engine.connect() as conn:
        errors = conn.execute(text("SELECT error FROM notify_attempts")).scalars().all()
    assert errors == ["138****8000 非法手机号 (z***@example.cn)"]
