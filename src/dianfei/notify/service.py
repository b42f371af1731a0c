"""Entry points of notify (通知): enqueue a notice, dispatch what is due, read the outbox.

How a notice travels, and why:

1. **enqueue** (in the caller's transaction, e.g. a collections day) inserts an outbox row under
   the caller's idempotency key. The same key never makes a second row — re-running a day sends
   nothing new. Nothing leaves the building inside a business transaction.
2. **dispatch** takes the due rows a batch at a time and, in one transaction per batch: honours
   opt-outs, checks there is a contact and a configured channel, applies quiet hours and rate
   limits, renders the templates, and marks the sendable rows ``sending`` (committed *before* any
   network call).
3. The adapters send the batch's messages in parallel (``[notify] dispatch_concurrency`` in flight,
   on an event loop and a thread pool, while the next batch is claimed); one more transaction
   records the batch's outcomes: ``sent``;
   ``queued`` again with an exponential backoff for a retryable error; ``failed`` (the worklist)
   for a terminal error or after ``max_attempts``.
4. A crash between 2 and 3 leaves a ``sending`` row. After ``sending_timeout_seconds`` the next
   dispatch resolves it: a channel whose adapter is idempotent (letters: one file per outbox
   row) is simply retried; any other (SMS, e-mail, WeChat — no provider de-duplicates) becomes
   ``failed`` with "outcome unknown" for a person to check against the provider's log and, if it
   really was not sent, re-queue with :func:`retry`. A duplicate SMS is worse than a late one
   that a person re-queues; the worklist makes sure the late one is not forgotten.

Legally required notices (stop notices, the pre-stop notice, the prepayment cut-off notice; see
templates/notices.toml) are not stopped by an opt-out, a missing contact or an unconfigured
channel: the row is recorded ``opted_out``/``suppressed`` and a paper letter is queued in its place
(key ``<key>#letter``), and a letter for such a notice ignores a letter opt-out.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.crypto import PiiCipher, mask_free_text
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.faults import kill_point
from dianfei.core.metrics import Metric
from dianfei.core.settings import Settings, load_settings
from dianfei.db.engine import Database
from dianfei.db.pii import CONTACT_EMAIL, CUSTOMER_PHONE, encrypted_rows_exist
from dianfei.notify import repository as repo
from dianfei.notify.channels import Message, Recipient, Sender, SendError, Senders, SendResult
from dianfei.notify.models import STATUSES, DeliveryAttempt, OutboxMessage
from dianfei.notify.render import Rendered, Templates, normalise_locale, templates
from dianfei.notify.rules import (
    NotifySettings,
    backoff,
    business_day_bounds,
    earliest_allowed,
    load_notify_settings,
    quiet_until,
)
from dianfei.notify.smtp import mailbox_problem

NOTICES = ("reminder", "final_reminder", "stop_notice", "pre_stop", "prepay_warning", "cutoff_notice",
           "reconnected", "payment_receipt", "bill_forecast", "bill_issued")
CHANNELS = ("sms", "email", "wechat", "letter")
#: the caller's key leaves room for the "#letter" suffix of a fallback letter
MAX_KEY = 190

__all__ = ["CHANNELS", "NOTICES", "STATUSES", "Delivery", "DispatchReport", "Notice", "Senders",
           "deliveries", "dispatch", "enqueue", "enqueue_many", "mark_delivered", "opt_in", "opt_out",
           "preview", "retry",
           "senders_from_settings", "set_contact", "timeline", "worklist"]


@dataclass(frozen=True)
class Delivery:
    """One outbox row as callers see it (the timeline, the worklist, `notify outbox --json`)."""

    outbox_id: int
    key: str
    account_id: str
    notice: str
    channel: str
    #: queued, sending, sent, delivered, failed, opted_out, suppressed
    status: str
    queued_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    customer_id: str = ""
    locale: str | None = None
    not_before: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    provider_ref: str | None = None
    #: a fallback letter names the row it replaces
    fallback_of: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            # instants out in the business zone, with their offset (docs/interfaces.md)
            out[f.name] = v.astimezone(BUSINESS_TZ).isoformat() if isinstance(v, datetime) else v
        return out


@dataclass
class DispatchReport:
    """What one dispatch pass did, row by row counted once."""

    sent: int = 0
    retry_scheduled: int = 0
    failed: int = 0
    opted_out: int = 0
    suppressed: int = 0
    deferred_quiet_hours: int = 0
    deferred_rate_limit: int = 0
    deferred_throughput: int = 0
    fallback_letters: int = 0
    recovered_retried: int = 0
    recovered_for_review: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _delivery(row: OutboxMessage) -> Delivery:
    return Delivery(outbox_id=row.outbox_id, key=row.key, account_id=row.account_id,
                    notice=row.notice, channel=row.channel, status=row.status,
                    queued_at=row.queued_at, sent_at=row.sent_at, attempts=row.attempts,
                    last_error=row.last_error, customer_id=row.customer_id, locale=row.locale,
                    not_before=row.not_before, next_attempt_at=row.next_attempt_at,
                    delivered_at=row.delivered_at, provider_ref=row.provider_ref,
                    fallback_of=row.fallback_of)


def _aware(instant: datetime | None, what: str) -> datetime | None:
    if instant is not None and instant.tzinfo is None:
        raise ValidationError(f"{what} must be timezone-aware")
    return instant


def _tpl(settings: NotifySettings) -> Templates:
    return templates(settings.template_dir)


# -- enqueue ---------------------------------------------------------------------------------------

def enqueue(session: Session, *, key: str, account_id: str, customer_id: str, notice: str, channel: str,
            context: Mapping[str, str], clock: Clock, locale: str | None = None,
            not_before: datetime | None = None) -> int:
    """Queue a notice. Idempotent on ``key``: the same key returns the existing outbox id and
    creates nothing (whatever the other arguments say). Does not commit."""
    if not key or len(key) > MAX_KEY:
        raise ValidationError(f"notice key must be 1..{MAX_KEY} characters, got {len(key or '')}")
    if notice not in NOTICES:
        raise ValidationError(f"notice must be one of {', '.join(NOTICES)}, got {notice!r}")
    if channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    _aware(not_before, "not_before")
    loc = normalise_locale(locale) if locale is not None else None
    templates().check_context(notice, context)
    return _insert(session, key=key, account_id=account_id, customer_id=customer_id, notice=notice,
                   channel=channel, context=context, now=clock.now(), locale=loc,
                   not_before=not_before)


@dataclass(frozen=True)
class Notice:
    """One notice for :func:`enqueue_many` (the same fields as :func:`enqueue`)."""

    key: str
    account_id: str
    customer_id: str
    notice: str
    channel: str
    context: Mapping[str, str]
    locale: str | None = None
    not_before: datetime | None = None


def enqueue_many(session: Session, notices: Sequence[Notice], *, clock: Clock) -> None:
    """:func:`enqueue` for a whole collections day at once: every notice is checked first (one bad
    notice refuses the batch, naming its key), then all are inserted in one statement; keys already
    queued are skipped. Does not commit. About 20× faster than one enqueue per notice."""
    now = clock.now()
    tpl = templates()
    rows = []
    for n in notices:
        where = f"notice {n.key!r}"
        if not n.key or len(n.key) > MAX_KEY:
            raise ValidationError(f"notice key must be 1..{MAX_KEY} characters", where=where)
        if n.notice not in NOTICES or n.channel not in CHANNELS:
            raise ValidationError(f"unknown notice {n.notice!r} or channel {n.channel!r}", where=where)
        _aware(n.not_before, f"{where}: not_before")
        try:
            tpl.check_context(n.notice, n.context)
        except ValidationError as exc:
            raise ValidationError(exc.message, where=where) from None
        rows.append(_row(key=n.key, account_id=n.account_id, customer_id=n.customer_id, notice=n.notice,
                         channel=n.channel, context=n.context, now=now,
                         locale=normalise_locale(n.locale) if n.locale is not None else None,
                         not_before=n.not_before))
    repo.insert_outbox_rows(session, rows)


def _row(*, key: str, account_id: str, customer_id: str, notice: str, channel: str,
         context: Mapping[str, str], now: datetime, locale: str | None, not_before: datetime | None,
         fallback_of: int | None = None) -> dict[str, Any]:
    start = max(not_before, now) if not_before is not None else now
    return {
        "key": key, "account_id": account_id, "customer_id": customer_id, "notice": notice,
        "channel": channel, "locale": locale,
        "context": json.dumps(dict(context), ensure_ascii=False, sort_keys=True),
        "status": "queued", "queued_at": now, "not_before": not_before, "next_attempt_at": start,
        "attempts": 0, "fallback_of": fallback_of, "updated_at": now,
    }


def _insert(session: Session, *, key: str, account_id: str, customer_id: str, notice: str,
            channel: str, context: Mapping[str, str], now: datetime, locale: str | None,
            not_before: datetime | None, fallback_of: int | None = None) -> int:
    return repo.insert_outbox_row(session, _row(
        key=key, account_id=account_id, customer_id=customer_id, notice=notice, channel=channel,
        context=context, now=now, locale=locale, not_before=not_before, fallback_of=fallback_of))


# -- contacts and opt-outs -------------------------------------------------------------------------

def _cipher_from_env(cipher: PiiCipher | None, settings: Settings | None = None,
                     bind: Engine | Connection | None = None) -> PiiCipher:
    if cipher is not None:
        return cipher
    data_dir = (settings or load_settings()).data_dir
    if bind is None:  # reading only: an existing key is needed anyway
        return PiiCipher.from_environment(data_dir, may_create=False)
    return PiiCipher.from_environment(data_dir, may_create=lambda: not encrypted_rows_exist(bind))


def set_contact(session: Session, *, customer_id: str, email: str | None = None,
                wechat_openid: str | None = None, locale: str | None = None,
                clock: Clock | None = None, cipher: PiiCipher | None = None) -> None:
    """Record how a customer wants to be reached. ``None`` leaves a field as it is; ``""``
    clears it. The e-mail address is encrypted at rest (PiiCipher) and shown masked."""
    from datetime import UTC
    from datetime import datetime as _dt

    changes: dict[str, Any] = {}
    if email is not None:
        email = email.strip()
        problem = mailbox_problem(email) if email else None
        if problem:
            raise ValidationError(f"customer {customer_id}: e-mail address {mask_email(email)} is {problem}")
        changes["email_enc"] = (_cipher_from_env(cipher, bind=session.connection()).encrypt(
            email, CONTACT_EMAIL.context(customer_id))
                                if email else None)
    if wechat_openid is not None:
        if len(wechat_openid) > 64:
            raise ValidationError(f"customer {customer_id}: a WeChat openid has at most 64 characters")
        changes["wechat_openid"] = wechat_openid.strip() or None
    if locale is not None:
        changes["locale"] = normalise_locale(locale) if locale.strip() else None
    changes["updated_at"] = clock.now() if clock is not None else _dt.now(UTC)
    repo.upsert_contact(session, customer_id, changes)


def mask_email(email: str | None) -> str | None:
    """z***@example.cn: recognisable to its owner, useless to anyone else."""
    if not email:
        return email
    local, _, domain = email.partition("@")
    return (local[:1] + "***@" + domain) if domain else local[:1] + "***"


def opt_out(session: Session, *, customer_id: str, channel: str, reason: str, clock: Clock) -> None:
    """The customer refuses a channel (退订). Idempotent: a standing opt-out is kept as it was."""
    if channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if not reason.strip():
        raise ValidationError("an opt-out needs a reason (e.g. the customer's SMS reply)")
    repo.insert_opt_out(session, {"customer_id": customer_id, "channel": channel,
                                  "reason": reason.strip(), "opted_out_at": clock.now()})


def opt_in(session: Session, *, customer_id: str, channel: str, clock: Clock) -> bool:
    """Withdraw a standing opt-out (kept in history). True if there was one."""
    return repo.withdraw_opt_out(session, customer_id, channel, clock.now()) > 0


# -- dispatch --------------------------------------------------------------------------------------

def senders_from_settings(settings: Settings, notify: NotifySettings | None = None) -> Senders:
    """The adapters the configuration enables. Letters always work (a PDF per notice under
    DATA_DIR/letters); SMS and e-mail need their settings; WeChat is not implemented yet."""
    from dianfei.notify.letters import LetterSender
    from dianfei.notify.sms import AliyunSmsSender, load_sms_settings
    from dianfei.notify.smtp import SmtpSender, load_smtp_settings

    ns = notify or load_notify_settings(settings.raw, settings.timezone)
    smtp = load_smtp_settings(ns.raw, sender_name=ns.utility_name)
    sms = load_sms_settings(ns.raw)
    letters_cfg = ns.raw.get("letters", {}) or {}
    out_dir = letters_cfg.get("out_dir")
    return Senders(
        email=SmtpSender(smtp) if smtp else None,
        sms=AliyunSmsSender(sms) if sms else None,
        wechat=None,
        letter=LetterSender(settings.data_dir / "letters" if not out_dir else _path(out_dir),
                            font_path=letters_cfg.get("font"), font_index=letters_cfg.get("font_index")),
    )


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


#: due rows decided, claimed and recorded together (one claim and one record transaction each)
BATCH = 500


@dataclass
class _Job:
    outbox_id: int
    attempt_no: int
    sender: Sender
    message: Message
    #: what a fallback letter needs if the send fails for good
    row: Any


@dataclass
class _Decisions:
    """What one batch's rules decided, written in a few executemany statements."""

    ended: list[dict[str, Any]] = field(default_factory=list)       # opted_out / suppressed / failed
    quiet: list[dict[str, Any]] = field(default_factory=list)       # deferred by quiet hours
    limited: list[dict[str, Any]] = field(default_factory=list)     # deferred by the daily limit
    letters: list[dict[str, Any]] = field(default_factory=list)     # fallback letters to queue
    to_claim: list[tuple[Any, Sender, Recipient, Rendered]] = field(default_factory=list)


def dispatch(db: Database, *, clock: Clock, senders: Senders | None = None, limit: int | None = None,
             cipher: PiiCipher | None = None, settings: NotifySettings | None = None) -> DispatchReport:
    """One dispatch pass: resolve rows a crash left 'sending', then send what is due (at most
    ``limit`` rows considered). Safe to run in several processes at once.

    Set-based: due rows are taken :data:`BATCH` at a time; one transaction reads their customers,
    contacts, opt-outs and today's counts in a few IN-queries, applies the rules in Python and
    claims the sendable rows ('sending' committed before any network call); the adapters send the
    batch's messages in parallel (up to ``[notify] dispatch_concurrency`` at once, see
    :class:`_SendStage`) while the next batch is prepared; one more transaction records the
    batch's outcomes."""
    ns = settings or load_notify_settings(db.settings.raw, db.settings.timezone)
    senders = senders if senders is not None else senders_from_settings(db.settings, ns)
    cipher = _cipher_from_env(cipher, db.settings, db.engine)
    report = DispatchReport()
    now = clock.now()
    with db.session() as s:
        _recover(s, now, ns, senders, report)
    considered = 0
    throttled: set[str] = set()
    seen: set[int] = set()
    stage: _SendStage | None = None
    # claimed batches in the adapters' hands, oldest first: the newest is sent while the one
    # before it finishes its last messages and is recorded (so the sending never drains to zero
    # between batches), and the next one is prepared meanwhile
    inflight: deque[_Batch] = deque()
    try:
        while limit is None or considered < limit:
            batch = BATCH if limit is None else min(BATCH, limit - considered)
            jobs: list[_Job] | None = None
            with db.session() as s:
                now = clock.now()
                # a row decided in this pass is no longer due (sent, ended or deferred to later);
                # seen only guards against a row another dispatcher put back meanwhile
                day_start, day_end = business_day_bounds(now, ns)
                rows = [r for r in repo.dispatch_batch(s, now, batch, throttled, count_since=day_start,
                                                       count_until=day_end,
                                                       count_channels=ns.per_customer_daily)
                        if r.outbox_id not in seen]
                if rows:
                    seen.update(int(r.outbox_id) for r in rows)
                    considered += len(rows)
                    jobs = _prepare_batch(s, rows, now, ns, senders, cipher, report, throttled)
            if jobs:
                stage = stage or _SendStage(ns)
                inflight.append(stage.start(jobs))
            if jobs is None and not inflight:
                break
            # keep one batch sending while the next is prepared; with nothing new to send, record all
            while len(inflight) > (1 if jobs else 0):
                _finish_batch(db, inflight.popleft(), clock, ns, report)  # aborts itself if it fails
            # (nothing due: recording may have queued fallback letters, so look once more)
        while inflight:  # the limit was reached
            _finish_batch(db, inflight.popleft(), clock, ns, report)
    except BaseException:
        # e.g. a database fault while the next batch was prepared: nothing starts any more in any
        # batch, the messages in flight finish and are recorded, the rest is given back
        for sending in inflight:
            sending.stop()
        while inflight:
            _abort_batch(db, inflight.popleft(), clock, ns, report)
        raise
    finally:
        if stage is not None:
            stage.close(senders)
    return report


def _recover(s: Session, now: datetime, ns: NotifySettings, senders: Senders,
             report: DispatchReport) -> None:
    cutoff = now - timedelta(seconds=ns.sending_timeout_seconds)
    for row in repo.stale_sending(s, cutoff):
        sender = senders.get(row.channel)
        attempt = s.query(DeliveryAttempt).filter_by(outbox_id=row.outbox_id,
                                                     attempt_no=row.attempts).one_or_none()
        if attempt is not None and attempt.outcome is None:
            attempt.outcome, attempt.finished_at = "unknown", now
            attempt.error = "the process stopped between marking the notice 'sending' and the outcome"
        if sender is not None and sender.idempotent:
            row.status, row.next_attempt_at = "queued", now
            row.last_error = "resent after an interrupted attempt (idempotent channel)"
            report.recovered_retried += 1
        else:
            row.status = "failed"
            row.last_error = (f"outcome unknown: attempt {row.attempts} was interrupted while sending; "
                              f"check the {row.channel} provider's log and re-queue "
                              f"(dianfei notify retry {row.outbox_id}) only if it was not sent")
            report.recovered_for_review += 1
        row.updated_at = now


def _recipient(row: Any, cipher: PiiCipher) -> tuple[Recipient | None, str]:
    """The recipient of a row of :func:`repo.dispatch_batch`, or why there is none for its channel."""
    if row.cust_id is None:
        return None, f"unknown customer {row.customer_id}"
    phone = email = openid = None
    channel = row.channel
    if channel == "sms":
        phone = cipher.decrypt(row.phone_enc, CUSTOMER_PHONE.context(row.cust_id))
        if not phone:
            return None, "no mobile number on file"
    elif channel == "email":
        email = (cipher.decrypt(row.email_enc, CONTACT_EMAIL.context(row.contact_id))
                 if row.contact_id is not None else None)
        if not email:
            return None, "no e-mail address on file"
    elif channel == "wechat":
        openid = row.wechat_openid if row.contact_id is not None else None
        if not openid:
            return None, "no WeChat openid on file"
    elif not row.address:
        return None, "no postal address on file"
    return Recipient(customer_id=row.cust_id, name=row.cust_name, phone=phone, email=email,
                     wechat_openid=openid, address=row.address), ""


def _fallback_row(row: Any, now: datetime) -> dict[str, Any]:
    """The letter that replaces an undeliverable legally required notice."""
    return _row(key=f"{row.key}#letter", account_id=row.account_id, customer_id=row.customer_id,
                notice=row.notice, channel="letter", context=json.loads(row.context), now=now,
                locale=row.locale, not_before=None, fallback_of=int(row.outbox_id))


def _prepare_batch(s: Session, rows: list[Any], now: datetime, ns: NotifySettings, senders: Senders,
                   cipher: PiiCipher, report: DispatchReport, throttled: set[str]) -> list[_Job]:
    """Decide about a batch of due rows (from :func:`repo.dispatch_batch`: each with its customer,
    contact, opt-out and today's count; locked by the caller's select) and claim the sendable
    ones; the caller's transaction commits it all before anything is sent."""
    tpl = _tpl(ns)
    d = _Decisions()
    _, day_end = business_day_bounds(now, ns)
    sent_today: dict[tuple[str, str], int] = {}
    per_minute_used = {ch: repo.count_claimed_since(s, ch, now - timedelta(minutes=1))
                       for ch in ns.per_channel_per_minute}
    # what every row of the batch shares: the rules' answers for this instant, the render's extras
    legally_required = {name: spec.legally_required for name, spec in tpl.specs.items()}
    quiet_end_of: dict[str, datetime | None] = {}
    extras: dict[str, dict[str, str]] = {}
    today = business_date(now).isoformat()

    def end(row: Any, status: str, why: str, required: bool, fallback: bool) -> None:
        d.ended.append({"oid": row.outbox_id, "v_status": status, "v_last_error": why, "v_updated_at": now})
        if status == "opted_out":
            report.opted_out += 1
        elif status == "suppressed":
            report.suppressed += 1
        else:
            report.failed += 1
        if fallback and required and row.channel != "letter":
            d.letters.append(_fallback_row(row, now))
            report.fallback_letters += 1

    for row in rows:
        channel = row.channel
        required = legally_required.get(row.notice)
        if required is None:
            required = tpl.spec(row.notice).legally_required  # raises: not a notice we know
        # 1. opt-outs: honoured, except a letter carrying a notice the law requires
        if row.opt_out_reason is not None and not (required and channel == "letter"):
            end(row, "opted_out", f"customer opted out of {channel} on "
                f"{business_date(row.opted_out_at)}: {row.opt_out_reason}", required, True)
            continue
        # 2. a channel to send it on, and someone to send it to
        sender = senders.get(channel)
        if sender is None:
            if required and channel == "letter":  # the last resort is missing: a person must act
                end(row, "failed", "letter channel not configured", required, False)
            else:
                end(row, "suppressed", f"{channel} channel not configured", required, True)
            continue
        recipient, why = _recipient(row, cipher)
        if recipient is None:
            if channel == "letter" or why.startswith("unknown customer"):
                end(row, "failed", why, required, False)  # nothing to fall back to: a person must look
            else:
                end(row, "suppressed", why, required, True)
            continue
        # 3. quiet hours, then the customer's daily limit, then the gateway's throughput
        if channel not in quiet_end_of:
            quiet_end_of[channel] = quiet_until(now, channel, ns)
        quiet_end = quiet_end_of[channel]
        if quiet_end is not None:
            d.quiet.append({"oid": row.outbox_id, "v_next_attempt_at": quiet_end, "v_updated_at": now})
            report.deferred_quiet_hours += 1
            continue
        daily = ns.per_customer_daily.get(channel)
        key = (row.customer_id, channel)
        if daily is not None and not required:
            # the database's count (claims committed before this batch) plus this batch's claims
            went_out = sent_today.setdefault(key, int(row.went_out))
            if went_out >= daily:
                d.limited.append({"oid": row.outbox_id,
                                  "v_next_attempt_at": earliest_allowed(day_end, channel, ns),
                                  "v_last_error": f"deferred: {daily} {channel} a day per customer",
                                  "v_updated_at": now})
                report.deferred_rate_limit += 1
                continue
        per_minute = ns.per_channel_per_minute.get(channel)
        if channel in throttled or (per_minute is not None and per_minute_used.get(channel, 0) >= per_minute):
            throttled.add(channel)  # the rest of this channel waits for the next pass
            report.deferred_throughput += 1
            continue
        # 4. render; a template that cannot render is a terminal fault of this row
        locale = row.locale if row.locale is not None else row.contact_locale
        try:
            loc = normalise_locale(locale)
            extra = extras.get(loc)
            if extra is None:
                extra = extras[loc] = {
                    "utility_name": ns.utility_name if loc == "zh-CN" else ns.utility_name_en,
                    "hotline": ns.hotline, "today": today}
            rendered = tpl.render(row.notice, channel, loc, json.loads(row.context),
                                  extra={**extra, "recipient_name": recipient.name,
                                         "recipient_address": recipient.address or ""},
                                  sms_only=True)
        except ValidationError as exc:
            end(row, "failed", f"template: {exc}", required, False)
            continue
        d.to_claim.append((row, sender, recipient, rendered))
        # counted as claimed now, so later rows of the batch see it (as the database would)
        if daily is not None:
            sent_today[key] = sent_today.get(key, int(row.went_out)) + 1
        if per_minute is not None:
            per_minute_used[channel] = per_minute_used.get(channel, 0) + 1

    # write the decisions: compare-and-set on 'queued' (another dispatcher may have moved a row)
    repo.update_outbox_many(s, ("status", "last_error", "updated_at"), d.ended, only_status="queued")
    repo.update_outbox_many(s, ("next_attempt_at", "updated_at"), d.quiet, only_status="queued")
    repo.update_outbox_many(s, ("next_attempt_at", "last_error", "updated_at"), d.limited,
                            only_status="queued")
    repo.insert_outbox_rows(s, d.letters)
    # 5. claim: 'sending' and an attempt row, committed before the network call
    got = repo.claim_batch(s, [(int(r.outbox_id), int(r.attempts)) for r, *_ in d.to_claim], now)
    jobs = []
    for row, sender, recipient, rendered in d.to_claim:
        attempt_no = got.get(row.outbox_id)
        if attempt_no is None:
            continue
        message = Message(outbox_id=row.outbox_id, key=row.key, account_id=row.account_id,
                          attempt=attempt_no, recipient=recipient, rendered=rendered, at=now)
        jobs.append(_Job(row.outbox_id, attempt_no, sender, message, row))
    return jobs


Outcome = tuple[_Job, SendResult | None, SendError | None]


class _Batch:
    """A claimed batch in the adapters' hands. Its jobs are started, finished or never started;
    ``lock`` makes "stop, and tell me what never started" atomic against a job starting."""

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs
        self.lock = threading.Lock()
        self.stopped = False
        self.started: set[int] = set()
        self.done: list[Outcome] = []
        #: a BaseException an adapter raised (the process is going down): raised again after recording
        self.crash: BaseException | None = None
        self.future: Future[None] | None = None
        self.since = time.monotonic()

    def begin(self, job: _Job) -> bool:
        with self.lock:
            if self.stopped:
                return False
            self.started.add(job.outbox_id)
            return True

    def finished(self, out: Outcome) -> None:
        with self.lock:
            self.done.append(out)

    def take_done(self) -> list[Outcome]:
        with self.lock:
            done, self.done = self.done, []
            return done

    def stop(self) -> list[_Job]:
        """No job starts after this; the jobs that never started (to be given back)."""
        with self.lock:
            self.stopped = True
            return [j for j in self.jobs if j.outbox_id not in self.started]

    def waiting(self, recorded: set[int]) -> list[int]:
        with self.lock:
            return [j.outbox_id for j in self.jobs if j.outbox_id not in recorded]


class _NoLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop (a dependency off Windows) when installed: a third of asyncio's cost per request
    with hundreds of SMS requests in flight."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class _SendStage:
    """The adapters' side of a dispatch pass: an event loop on its own thread that keeps up to
    ``dispatch_concurrency`` messages in flight (and at most ``channel_concurrency[channel]`` of a
    channel). An adapter with ``send_async`` (the SMS gateway) runs on the loop itself; any other
    (SMTP, letters) runs in a thread pool of the same size, one message per thread. Only the main
    thread touches the database: it prepares and claims the next batch while this one is sent,
    then records the outcomes."""

    def __init__(self, ns: NotifySettings) -> None:
        self.ns = ns
        self.loop = _new_loop()
        self.pool = ThreadPoolExecutor(max_workers=ns.dispatch_concurrency,
                                       thread_name_prefix="notify-send")
        self._limits: dict[str, asyncio.Semaphore] = {}
        #: the batches in the adapters' hands (up to two): a crash in one stops them all
        self.active: list[_Batch] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="notify-dispatch", daemon=True)
        self.thread.start()

    def start(self, jobs: list[_Job]) -> _Batch:
        batch = _Batch(jobs)
        batch.future = asyncio.run_coroutine_threadsafe(self._run(batch), self.loop)
        return batch

    def _limit(self, name: str, n: int) -> asyncio.Semaphore:
        if name not in self._limits:  # made on the loop's thread, used only there
            self._limits[name] = asyncio.Semaphore(n)
        return self._limits[name]

    async def _run(self, batch: _Batch) -> None:
        self.active.append(batch)
        try:
            await asyncio.gather(*(self._one(batch, job) for job in batch.jobs))
        finally:
            self.active.remove(batch)

    async def _one(self, batch: _Batch, job: _Job) -> None:
        channel = job.message.rendered.channel
        cap = self.ns.channel_concurrency.get(channel, self.ns.dispatch_concurrency)
        # a channel without a lower cap than the pass's needs no semaphore of its own
        limit = self._limit(channel, cap) if cap < self.ns.dispatch_concurrency else _NO_LIMIT
        async with self._limit("", self.ns.dispatch_concurrency), limit:
            if not batch.begin(job):
                return  # the pass stopped before this message: given back
            try:
                send_async = getattr(job.sender, "send_async", None)
                if send_async is not None:
                    result = await send_async(job.message)
                else:
                    result = await self.loop.run_in_executor(self.pool, job.sender.send, job.message)
                batch.finished((job, result, None))
            except SendError as exc:
                batch.finished((job, None, exc))
            except Exception as exc:  # an adapter bug: we cannot tell whether anything went out
                batch.finished((job, None, SendError("adapter_error", repr(exc), retryable=True,
                                                     outcome_unknown=True)))
            except BaseException as exc:
                # the process is going down: this message stays 'sending' (the recovery decides),
                # the ones not started are given back, the ones in flight finish and are recorded
                with batch.lock:
                    batch.crash = batch.crash or exc
                for other in [batch, *self.active]:  # no message of any batch starts any more
                    other.stop()

    def close(self, senders: Senders) -> None:
        def shut() -> None:
            for channel in CHANNELS:
                closer = getattr(senders.get(channel), "close_connections", None)
                if closer is not None:
                    closer()
            self.loop.stop()

        self.loop.call_soon_threadsafe(shut)
        self.thread.join()
        self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _finish_batch(db: Database, batch: _Batch, clock: Clock, ns: NotifySettings,
                  report: DispatchReport) -> None:
    """Wait for the batch's sends, then record the outcomes in one transaction.

    Outcomes are also recorded every quarter of ``sending_timeout_seconds`` of wall time (and
    the claims still waiting are touched), so a slow batch — letters take ~0.5 s each — is never
    taken for a crash by another dispatcher; and if the pass is interrupted (Ctrl-C, SIGTERM as an
    exception), no message starts any more, the ones in flight finish, everything finished is
    recorded and the claims no adapter has seen are given back."""
    assert batch.future is not None
    flush_every = ns.sending_timeout_seconds / 4
    recorded: set[int] = set()
    try:
        while True:
            try:
                batch.future.result(timeout=max(0.0, batch.since + flush_every - time.monotonic()))
                break
            except FutureTimeout:
                done = batch.take_done()
                recorded.update(j.outbox_id for j, _, _ in done)
                _record(db, done, clock, ns, report, waiting=batch.waiting(recorded))
                batch.since = time.monotonic()
    except BaseException:
        _abort_batch(db, batch, clock, ns, report)
        raise
    if batch.crash is not None:
        _record(db, batch.take_done(), clock, ns, report, released=batch.stop())
        raise batch.crash
    _record(db, batch.take_done(), clock, ns, report)


def _abort_batch(db: Database, batch: _Batch, clock: Clock, ns: NotifySettings,
                 report: DispatchReport) -> None:
    """The pass stops: start nothing more, let the messages in flight finish (each within its
    adapter's timeout), record what finished and give back what never started. A second
    interrupt while waiting leaves the ones still in flight 'sending' for the recovery."""
    not_started = batch.stop()
    try:
        if batch.future is not None:
            batch.future.result()
    finally:
        _record(db, batch.take_done(), clock, ns, report, released=not_started)


def _record(db: Database, done: list[Outcome], clock: Clock,
            ns: NotifySettings, report: DispatchReport, waiting: Sequence[int] = (),
            released: Sequence[_Job] = ()) -> None:
    """The outcomes of sent messages: attempt rows and outbox statuses, a few executemany each.
    ``waiting``: claims still to be sent (touched); ``released``: claims never sent (queued again)."""
    if not done and not waiting and not released:
        return
    now = clock.now()
    sent: list[tuple[int, int, str | None]] = []
    retried: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    tpl = _tpl(ns)
    for job, result, error in done:
        if error is None:
            assert result is not None
            sent.append((job.outbox_id, job.attempt_no, result.provider_ref))
            report.sent += 1
            continue
        row = job.row
        att = {"oid": job.outbox_id, "no": job.attempt_no, "v_finished_at": now, "v_outcome": None,
               "v_error_code": None, "v_error": None, "v_provider_ref": None}
        attempts.append(att)
        # a provider's message may quote the recipient's number or address: stored masked
        message = mask_free_text(error.message) or ""
        att["v_error_code"], att["v_error"] = error.code[:64], message
        if error.outcome_unknown and not job.sender.idempotent:
            att["v_outcome"] = "unknown"
            failed.append({"oid": job.outbox_id, "v_status": "failed", "v_updated_at": now,
                           "v_last_error": (f"outcome unknown ({error.code}: {message}); check "
                                            f"the {row.channel} provider's log and re-queue only if it "
                                            "was not sent")})
            report.failed += 1
        elif error.retryable and job.attempt_no < ns.max_attempts:
            att["v_outcome"] = "retry"
            retried.append({"oid": job.outbox_id, "v_status": "queued", "v_updated_at": now,
                            "v_next_attempt_at": earliest_allowed(now + backoff(job.attempt_no, ns),
                                                                  row.channel, ns),
                            "v_last_error": f"{error.code}: {message}"})
            report.retry_scheduled += 1
        else:
            att["v_outcome"] = "failed"
            tries = f" after {job.attempt_no} attempts" if error.retryable else ""
            failed.append({"oid": job.outbox_id, "v_status": "failed", "v_updated_at": now,
                           "v_last_error": f"{error.code}: {message}{tries}"})
            report.failed += 1
            if row.channel != "letter" and tpl.spec(row.notice).legally_required:
                letters.append(_fallback_row(row, now))
                report.fallback_letters += 1
    back = []
    for job in released:
        attempts.append({"oid": job.outbox_id, "no": job.attempt_no, "v_finished_at": now,
                         "v_outcome": "released", "v_error_code": None, "v_provider_ref": None,
                         "v_error": "not sent: the dispatch pass stopped before this message"})
        back.append({"oid": job.outbox_id, "v_status": "queued", "v_next_attempt_at": now,
                     "v_updated_at": now, "v_last_error": "claimed but not sent: the dispatch pass stopped"})
    if sent:
        # the crash tests die here: the gateway has the messages, the outbox still says 'sending'
        kill_point("notify.sent_unrecorded")
    with db.session() as s:
        repo.finish_attempts(s, attempts)
        repo.update_outbox_many(s, ("status", "next_attempt_at", "last_error", "updated_at"), back,
                                only_status="sending")
        repo.record_sent(s, sent, now)
        repo.update_outbox_many(s, ("status", "next_attempt_at", "last_error", "updated_at"), retried)
        repo.update_outbox_many(s, ("status", "last_error", "updated_at"), failed)
        repo.insert_outbox_rows(s, letters)
        repo.touch_claims(s, waiting, now)


# -- reading and operator actions ------------------------------------------------------------------

def deliveries(db: Database, *, account_id: str | None = None, key_prefix: str | None = None,
               status: str | None = None, channel: str | None = None,
               limit: int | None = None) -> list[Delivery]:
    """Outbox rows, oldest first, filtered by account, key prefix, status or channel."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    with db.session() as s:
        return [_delivery(r) for r in repo.rows(s, account_id=account_id, key_prefix=key_prefix,
                                                status=status, channel=channel, limit=limit)]


def timeline(db: Database, account_id: str) -> list[Delivery]:
    """Every notice of an account with its status, oldest first (the account's notice history)."""
    return deliveries(db, account_id=account_id)


def worklist(db: Database) -> list[Delivery]:
    """Notices that need a person: failed after their retries, or with an unknown outcome."""
    return deliveries(db, status="failed")


def retry(session: Session, *, outbox_id: int, reason: str, clock: Clock) -> None:
    """An operator re-queues a failed notice (after checking it was not sent): one more try."""
    if not reason.strip():
        raise ValidationError("re-queueing a notice needs a reason")
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        raise NotFoundError(f"notice {outbox_id} does not exist")
    if row.status != "failed":
        raise ConflictError(f"notice {outbox_id} is {row.status}; only failed notices are re-queued")
    now = clock.now()
    row.status, row.next_attempt_at, row.updated_at = "queued", now, now
    row.last_error = f"re-queued: {reason.strip()} (was: {row.last_error})"


def mark_delivered(session: Session, *, outbox_id: int, clock: Clock) -> None:
    """A provider's delivery receipt (SMS status report, read receipt) for a sent notice."""
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        raise NotFoundError(f"notice {outbox_id} does not exist")
    if row.status not in ("sent", "delivered"):
        raise ConflictError(f"notice {outbox_id} is {row.status}, not sent")
    if row.status == "sent":
        now = clock.now()
        row.status, row.delivered_at, row.updated_at = "delivered", now, now


def preview(notice: str, channel: str, locale: str | None = None,
            context: Mapping[str, str] | None = None,
            settings: NotifySettings | None = None) -> Rendered:
    """Render a notice with the sample context (or the one given), as `notify preview` shows it."""
    from dianfei.notify.render import SAMPLE_CONTEXT

    ns = settings or NotifySettings()
    if notice not in NOTICES:
        raise ValidationError(f"notice must be one of {', '.join(NOTICES)}, got {notice!r}")
    if channel not in CHANNELS:
        raise ValidationError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    ctx = dict(SAMPLE_CONTEXT if context is None else context)
    loc = normalise_locale(locale)
    extra = {"utility_name": ns.utility_name if loc == "zh-CN" else ns.utility_name_en,
             "hotline": ns.hotline, "today": "2026-11-01",
             "recipient_name": ctx.get("customer_name", ""), "recipient_address": "城关镇测试路1号"}
    return _tpl(ns).render(notice, channel, loc, ctx, extra=extra)


# -- reads for the packages that enqueue ---------------------------------------------------------


def finished_since(engine: Any, since: datetime | None, prefix: str) -> Any:
    """A frame of the notices with keys starting ``prefix`` that went out or were given up
    (statuses sent, delivered, failed, opted_out, suppressed) and changed after ``since``, in
    outbox order: key, account_id, customer_id, notice, channel, status, sent_at (the SENT
    time), updated_at. Collections starts the lawful notice period from ``sent_at``."""
    return repo.finished_since(engine, since, prefix)


#: how notify records a notice that could not reach the customer because the contact itself is
#: wrong or missing (a provider's refusal of the number or mailbox, or nothing on file) — not a
#: gateway outage or an unknown outcome, which say nothing about the contact
CONTACT_FAULTS = ("isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_NUMBER_INVALID", "no_phone", "bad_address",
                  "no_address", "smtp_550", "smtp_551", "smtp_553", "no mobile number on file",
                  "no e-mail address on file", "no WeChat openid on file")


def undeliverable_since(engine: Any, since: datetime, until: datetime) -> Any:
    """The notices that bounced or were undeliverable for want of a good contact, given up in
    (since, until]: outbox_id, key, account_id, customer_id, notice, channel, status ('failed' or
    'suppressed'), reason (notify's last error), at — a Polars frame, oldest first. What
    collections flags as contact data to verify (see :data:`CONTACT_FAULTS`)."""
    import polars as pl

    rows = repo.given_up_between(engine, since, until)
    fault = pl.lit(False)
    for f in CONTACT_FAULTS:
        fault = fault | pl.col("reason").str.starts_with(f)
    return rows.filter(fault.fill_null(False))


def customers_with_email(engine: Any, customer_ids: Sequence[str] | None = None) -> set[str]:
    """Which customers (of ``customer_ids``, or all) have an e-mail address on file."""
    return repo.customers_with_email(engine, customer_ids)


def queued_keys(conn: Any, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are in the outbox (in any status), e.g. the paper letter notify queues
    for an undeliverable legal notice (``<key>#letter``)."""
    return repo.existing_keys(conn, keys)


def notice_outcomes(engine: Any, since: datetime, until: datetime) -> Any:
    """The notices queued in [since, until) with where each stands now: customer_id, notice,
    channel, status (one of :data:`STATUSES`) — a Polars frame, what delivery rates are
    computed from."""
    return repo.outcomes_between(engine, since, until)


def cjk_font(path: str | None = None, index: int | None = None, *, used_for: str = "letters",
             setting: str = "[notify.letters] font") -> Any:
    """The CJK font PDFs embed (letters, reports, bills): the configured one, else Noto Sans CJK
    SC from Debian's fonts-noto-cjk — ``.path`` and ``.index`` (the face of a collection); see
    :func:`dianfei.notify.letters.find_font`."""
    from dianfei.notify.letters import find_font

    return find_font(path, index, used_for=used_for, setting=setting)


def operational_metrics(conn: Any) -> list[Metric]:
    """``/metrics``: the notice outbox by status (queued is the depth; failed the worklist)."""
    from sqlalchemy import text

    from dianfei.core.metrics import grouped

    rows = conn.execute(text("SELECT status, COUNT(*) FROM notify_outbox GROUP BY status")).all()
    by_channel = conn.execute(text("SELECT channel, COUNT(*) FROM notify_outbox "
                                   "WHERE status = 'sent' GROUP BY channel")).all()
    return [grouped("dianfei_notices", "notices in the outbox, by status", "gauge", "status", rows),
            grouped("dianfei_notices_sent_total", "notices sent, by channel", "counter",
                    "channel", by_channel)]
