"""Parallel dispatch: many messages in flight against a gateway that takes its time, each notice
recorded exactly once — sent, retried, failed or given back — whatever order the answers come in.

No timing assertions: the gateway's delay only makes the sends overlap."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.notify import service
from dianfei.notify.channels import Message, Senders, SendResult
from dianfei.notify.models import DeliveryAttempt
from dianfei.notify.rules import load_notify_settings
from tests.factories import Person, load_people
from tests.fakes.sms_gateway import FakeSmsGateway
from tests.notify._util import CIPHER, REMINDER, SMS_TEMPLATES, local, settings, sms_sender

N = 120


@pytest.fixture
def slow_gateway() -> FakeSmsGateway:
    with FakeSmsGateway(templates={code: [] for code in SMS_TEMPLATES.values()}, delay=0.02) as gw:
        yield gw  # type: ignore[misc]


@pytest.fixture
def crowd(db: Database) -> Database:
    load_people(db, [Person(f"P{i:03d}") for i in range(N)])
    return db


def _enqueue_all(db: Database, clock: FixedClock, customers: list[str], prefix: str = "r") -> None:
    with db.session() as s:
        service.enqueue_many(s, [service.Notice(key=f"{prefix}:{c}", account_id=c, customer_id=c,
                                                notice="reminder", channel="sms",
                                                context={**REMINDER, "account_id": c})
                                 for c in customers], clock=clock)


def _dispatch(db: Database, clock: FixedClock, senders: Senders, **ns: object) -> service.DispatchReport:
    base: dict[str, object] = {"dispatch_concurrency": 16, "per_customer_daily": {}}
    return service.dispatch(db, clock=clock, senders=senders, cipher=CIPHER,
                            settings=settings(**{**base, **ns}))


def _attempts(db: Database) -> list[tuple[int, int, str | None]]:
    with db.session() as s:
        return [(int(a), int(b), c) for a, b, c in s.execute(
            select(DeliveryAttempt.outbox_id, DeliveryAttempt.attempt_no, DeliveryAttempt.outcome))]


def test_parallel_sends_record_each_notice_once_with_failures_mixed_in(
        crowd: Database, slow_gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # given 120 reminders, small batches (so batches overlap: one is sent while the next is
    # claimed), and a gateway that throttles 5, refuses 3 numbers and times out once, in whatever
    # order the parallel requests reach it
    monkeypatch.setattr(service, "BATCH", 25)
    clock = FixedClock(local("2026-11-02 10:00"))
    customers = [f"P{i:03d}" for i in range(N)]
    _enqueue_all(crowd, clock, customers)
    slow_gateway.fail_next("isv.BUSINESS_LIMIT_CONTROL", times=5)
    slow_gateway.fail_next("isv.MOBILE_NUMBER_ILLEGAL", times=3)
    slow_gateway.hang_next(1.0)
    senders = Senders(sms=sms_sender(slow_gateway, timeout=0.5))
    # when one pass runs with 16 messages in flight
    report = _dispatch(crowd, clock, senders)
    # then every notice has exactly one outcome
    assert (report.sent, report.retry_scheduled, report.failed) == (N - 9, 5, 4)
    rows = {d.key: d for d in service.deliveries(crowd, key_prefix="r:")}
    assert Counter(d.status for d in rows.values()) == {"sent": N - 9, "queued": 5, "failed": 4}
    assert all(d.attempts == 1 for d in rows.values())
    attempts = _attempts(crowd)
    assert len(attempts) == N and len({a[0] for a in attempts}) == N
    assert Counter(a[2] for a in attempts) == {"sent": N - 9, "retry": 5, "failed": 3, "unknown": 1}
    # and what the gateway accepted is exactly the sent rows (each once, with its BizId) plus the
    # one whose answer never came (on the worklist, never resent)
    accepted = {m["out_id"]: m["biz_id"] for m in slow_gateway.sent}
    assert len(accepted) == len(slow_gateway.sent) == N - 8
    sent = {k: d.provider_ref for k, d in rows.items() if d.status == "sent"}
    assert {k: accepted[k] for k in sent} == sent
    [unknown] = [k for k in accepted if k not in sent]
    assert rows[unknown].status == "failed" and (rows[unknown].last_error or "").startswith("outcome unknown")
    # when the backoff has passed, the throttled five go out — and nothing else again
    clock.advance(timedelta(seconds=60))
    again = _dispatch(crowd, clock, senders)
    assert (again.sent, again.retry_scheduled, again.failed) == (5, 0, 0)
    assert len(slow_gateway.sent) == len({m["out_id"] for m in slow_gateway.sent}) == N - 3
    assert Counter(d.status for d in service.deliveries(crowd, key_prefix="r:")) == {"sent": N - 4,
                                                                                     "failed": 4}


def test_daily_limit_and_opt_outs_hold_across_overlapping_batches(
        crowd: Database, slow_gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # given three reminders each for 40 customers (of whom 10 opted out), batches of 7 so that a
    # customer's reminders fall into different, overlapping batches, and a limit of two a day
    monkeypatch.setattr(service, "BATCH", 7)
    clock = FixedClock(local("2026-11-02 10:00"))
    customers = [f"P{i:03d}" for i in range(40)]
    with crowd.session() as s:
        for c in customers[:10]:
            service.opt_out(s, customer_id=c, channel="sms", reason="回复TD", clock=clock)
    for n in range(3):
        _enqueue_all(crowd, clock, customers, prefix=f"d{n}")
    senders = Senders(sms=sms_sender(slow_gateway))
    report = _dispatch(crowd, clock, senders, per_customer_daily={"sms": 2})
    # then each reachable customer gets exactly two today, the third waits, opt-outs get none
    assert (report.sent, report.deferred_rate_limit, report.opted_out) == (60, 30, 30)
    per_phone_key = Counter(m["out_id"].split(":")[1] for m in slow_gateway.sent)
    assert per_phone_key == {c: 2 for c in customers[10:]}
    assert len({m["out_id"] for m in slow_gateway.sent}) == 60
    # and a second pass the same day sends nothing more
    assert _dispatch(crowd, clock, senders, per_customer_daily={"sms": 2}).sent == 0


class Crash(BaseException):
    """The process going down in the middle of a parallel batch."""


class CrashOnCall:
    """A thread-safe wrapper: call number ``n`` 'dies' instead of sending; the others send."""

    def __init__(self, inner: object, n: int) -> None:
        self.inner, self.n = inner, n
        self.channel = "sms"
        self.idempotent = False
        self.calls = 0
        self.lock = threading.Lock()
        #: sends begun after the crash was raised
        self.after_crash = 0

    def send(self, message: Message) -> SendResult:
        with self.lock:
            self.calls += 1
            mine = self.calls
            if mine > self.n:
                self.after_crash += 1
        if mine == self.n:
            raise Crash()
        return self.inner.send(message)  # type: ignore[attr-defined,no-any-return]


def test_a_crash_in_a_parallel_batch_sends_nothing_twice(
        crowd: Database, slow_gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # given 60 reminders in one batch, 4 in flight at a time, and the 10th send 'dies'
    clock = FixedClock(local("2026-11-02 10:00"))
    customers = [f"P{i:03d}" for i in range(60)]
    _enqueue_all(crowd, clock, customers)
    crashing = CrashOnCall(sms_sender(slow_gateway), 10)
    with pytest.raises(Crash):
        _dispatch(crowd, clock, Senders(sms=crashing), dispatch_concurrency=4)  # type: ignore[arg-type]
    # then no new message is handed over once the crash is seen, the ones in flight finish and are
    # recorded sent, the crashed one stays 'sending', and every one never handed over is queued again
    rows = service.deliveries(crowd, key_prefix="r:")
    status = Counter(d.status for d in rows)
    gone = {m["out_id"] for m in slow_gateway.sent}
    assert status["sending"] == 1 and status["sent"] == len(gone) and len(gone) >= 9
    assert status["queued"] == 60 - 1 - len(gone)
    assert {d.key for d in rows if d.status == "sent"} == gone
    released = [a for a in _attempts(crowd) if a[2] == "released"]
    assert len(released) == status["queued"]
    # when the recovery has run, the given-back ones go out once, the crashed one is for a person
    clock.advance(timedelta(minutes=11))
    report = _dispatch(crowd, clock, Senders(sms=sms_sender(slow_gateway)))
    assert (report.sent, report.recovered_for_review) == (status["queued"], 1)
    assert len(slow_gateway.sent) == len({m["out_id"] for m in slow_gateway.sent}) == 59


def test_a_refused_connection_is_retried(crowd: Database) -> None:
    # a gateway that is not listening took nothing: the messages are simply tried again later
    clock = FixedClock(local("2026-11-02 10:00"))
    _enqueue_all(crowd, clock, ["P000", "P001"])
    with FakeSmsGateway() as gw:
        sender = sms_sender(gw)
    report = _dispatch(crowd, clock, Senders(sms=sender))
    assert (report.retry_scheduled, report.sent, report.failed) == (2, 0, 0)
    assert {d.last_error.split(":")[0] for d in service.deliveries(crowd)  # type: ignore[union-attr]
            } == {"connect"}


def test_concurrency_settings_are_read_and_checked() -> None:
    ns = load_notify_settings({"notify": {"dispatch_concurrency": 300,
                                          "channel_concurrency": {"email": 4}}})
    assert ns.dispatch_concurrency == 300
    assert dict(ns.channel_concurrency) == {"email": 4, "letter": 2}
    assert load_notify_settings({}).dispatch_concurrency == 200
    with pytest.raises(ValidationError, match="dispatch_concurrency must be a whole number"):
        load_notify_settings({"notify": {"dispatch_concurrency": 0}})
    with pytest.raises(ValidationError, match="unknown channel 'fax'"):
        load_notify_settings({"notify": {"channel_concurrency": {"fax": 1}}})


def test_a_crash_stops_both_batches_in_the_adapters_hands(
        crowd: Database, slow_gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    # given batches of 10 (the next one is handed to the adapters while the last messages of the
    # one before are still out), 4 in flight, and the 15th send 'dies'
    monkeypatch.setattr(service, "BATCH", 10)
    clock = FixedClock(local("2026-11-02 10:00"))
    customers = [f"P{i:03d}" for i in range(60)]
    _enqueue_all(crowd, clock, customers)
    crashing = CrashOnCall(sms_sender(slow_gateway), 15)
    with pytest.raises(Crash):
        _dispatch(crowd, clock, Senders(sms=crashing), dispatch_concurrency=4)  # type: ignore[arg-type]
    # then every claim of both batches is sent, given back, or (the crashed one) left 'sending',
    # and what was sent is recorded sent, once (a few sends racing the crash's report to the event
    # loop may still begin: they finish and are recorded like the ones in flight)
    rows = service.deliveries(crowd, key_prefix="r:")
    status = Counter(d.status for d in rows)
    gone = {m["out_id"] for m in slow_gateway.sent}
    assert status["sending"] == 1 and status["sent"] == len(gone) == 14 + crashing.after_crash
    assert crashing.calls < 60  # the pass stopped: the rest was not handed over
    assert {d.key for d in rows if d.status == "sent"} == gone
    released = [a for a in _attempts(crowd) if a[2] == "released"]
    claimed = sum(1 for d in rows if d.attempts == 1)
    assert claimed == 1 + len(gone) + len(released)
    assert status["queued"] == 60 - 1 - len(gone)
