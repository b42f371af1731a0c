"""The payment inbox (收款通知收件箱): store what arrived, then verify, then post.

Order of work for every notification, callback or file line:
1. the raw message is committed to ``payment_inbox`` before anything is checked, so nothing that
   reached us can be lost, whatever happens next;
2. the channel adapter verifies it (signature, decryption, configured ids) — no database;
3. a verified payment is posted by :func:`service.post_channel_payment` and the inbox row is marked
   in the SAME transaction (posted or duplicate); a refusal is recorded on the inbox row in its own
   transaction and never touches ``payments`` — so a forged message, which may claim any
   transaction id, cannot occupy the unique (channel, transaction id) slot of the genuine one.

This is the one-by-one path (:func:`receive`). The web server's callbacks go through the group
commit in :mod:`dianfei.payments.fastpath`, which writes the raw row in the same transaction as
its verdict and falls back to this path, raw row first, whenever a batch fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from dianfei.core.clock import Clock
from dianfei.payments.channels.base import Outcome, Refusal
from dianfei.payments.channels.common import ChannelRefund
from dianfei.payments.models import InboxMessage, Payment

if TYPE_CHECKING:
    from dianfei.core.crypto import PiiCipher
    from dianfei.db.engine import Database

#: headers kept with the raw body (the proof); everything else is transport noise
PROOF_HEADERS = ("wechatpay-serial", "wechatpay-signature", "wechatpay-timestamp",
                 "wechatpay-nonce", "wechatpay-signature-type", "content-type",
                 "x-dianfei-signature")


@dataclass(frozen=True)
class InboxResult:
    inbox_id: int
    #: posted, duplicate, acknowledged or refused
    verdict: str
    code: str | None = None
    message: str = ""
    payment_id: str | None = None
    balance_after: int | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict != "refused"


def store_raw(db: Database, *, channel: str, headers: Mapping[str, str], body: bytes,
              clock: Clock) -> int:
    with db.engine.connect() as conn:
        return _store_raw(conn, channel=channel, headers=headers, body=body, clock=clock,
                          cipher=db.pii_cipher)


def _store_raw(conn: Connection, *, channel: str, headers: Mapping[str, str], body: bytes,
               clock: Clock, cipher: PiiCipher) -> int:
    """The raw row, its body sealed (it names the payer: db/pii.py ``INBOX_BODY``)."""
    from dianfei.db.pii import seal_inbox_body

    kept = {k.lower(): v for k, v in headers.items() if k.lower() in PROOF_HEADERS}
    with conn.begin():
        if conn.dialect.name == "postgresql":
            # Not waiting for this commit's WAL flush is safe: until the payment is posted (a
            # synchronous commit) the channel has no "success" and will deliver again.
            conn.execute(text("SET LOCAL synchronous_commit = off"))
        return int(conn.execute(insert(InboxMessage).values(
            channel=channel, received_at=clock.now(), headers=json.dumps(kept, sort_keys=True),
            **seal_inbox_body(cipher, channel, body), verdict="pending").returning(InboxMessage.id)
        ).scalar_one())


def _refuse(db: Database, inbox_id: int, refusal: Refusal) -> InboxResult:
    with db.session() as s:
        s.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(
            verdict="refused", refusal=refusal.code[:24], detail=refusal.message,
            transaction_id=(refusal.transaction_id or None)))
    return InboxResult(inbox_id, "refused", refusal.code, refusal.message)


def process(db: Database, inbox_id: int, outcome: Outcome, *, clock: Clock, source: str,
            order: str | None = None, attempts: int = 4,
            conn: Connection | None = None) -> InboxResult:
    """Post (or record the refusal of) one stored message whose verification gave ``outcome``."""
    # here, not at the top: the posting chain (ledger, customers, Polars) is a third of a second
    # of start-up that ``dianfei pay worklist``, which only reads this table, does not need
    from dianfei.payments.service import PaymentRefused, post_channel_payment

    if isinstance(outcome, Refusal):
        return _refuse(db, inbox_id, outcome)
    refund = getattr(outcome, "refund", None)
    if refund is not None:
        return _refund(db, inbox_id, refund, clock=clock)
    payment = outcome.payment
    if payment is None:  # a status we acknowledge but do not post (WAIT_BUYER_PAY, CLOSED, …)
        with db.session() as s:
            s.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(
                verdict="acknowledged", detail=f"status {outcome.status}"))
        return InboxResult(inbox_id, "acknowledged", message=f"status {outcome.status}")
    for attempt in range(attempts):
        try:
            with _session(db, conn) as s:
                res = post_channel_payment(s, payment, clock=clock, source=source, order=order)
                verdict = "posted" if res.created else "duplicate"
                s.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(
                    verdict=verdict, transaction_id=payment.transaction_id,
                    payment_id=res.payment_id))
            return InboxResult(inbox_id, verdict, payment_id=res.payment_id,
                               balance_after=res.balance_after)
        except PaymentRefused as exc:
            return _refuse(db, inbox_id, Refusal(exc.code, exc.message, payment.transaction_id))
        except (OperationalError, DBAPIError) as exc:
            # deadlock / serialization failure / SQLite busy: the transaction rolled back as a
            # whole, so trying again cannot post twice
            if attempt == attempts - 1 or not _transient(exc):
                raise
            time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _refund(db: Database, inbox_id: int, refund: ChannelRefund, *, clock: Clock) -> InboxResult:
    """A channel's refund notice: a full refund reverses the payment's allocations exactly; a
    partial one goes to the worklist (which bill gets the money back is a person's decision)."""
    from dianfei.payments.service import payment_id_for, reverse_payment

    pid = payment_id_for(refund.channel, refund.transaction_id)
    with db.session() as s:
        pay = s.get(Payment, pid)
        if pay is None:
            return _refuse(db, inbox_id, Refusal("unknown_payment", f"refund {refund.refund_id} "
                           f"for a payment never posted", refund.transaction_id))
        if pay.status != "posted":
            s.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(
                verdict="duplicate", transaction_id=refund.transaction_id, payment_id=pid))
            return InboxResult(inbox_id, "duplicate", payment_id=pid)
        earlier = _earlier_partial_refunds(s, refund)
        if earlier:
            # a person already dealt with part of this payment by hand: Alipay's cumulative
            # refund_fee (or WeChat's next refund) can no longer be read as "the whole payment"
            what = "refunds so far" if refund.cumulative else "refund"
            code, msg = "partial_refund", (
                f"refund {refund.refund_id} ({what} {refund.amount} fen) of a payment of "
                f"{pay.amount} fen follows earlier partial refunds {', '.join(earlier)}: needs review")
        elif refund.amount != pay.amount:
            code, msg = "partial_refund", (f"refund {refund.refund_id} of {refund.amount} fen on a "
                                           f"payment of {pay.amount} fen needs review")
        else:
            reverse_payment(s, pid, reason=f"refund {refund.refund_id}", clock=clock)
            s.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(
                verdict="posted", transaction_id=refund.transaction_id, payment_id=pid,
                detail=f"refund {refund.refund_id}"))
            return InboxResult(inbox_id, "posted", payment_id=pid)
    return _refuse(db, inbox_id, Refusal(code, msg, refund.transaction_id))


def _earlier_partial_refunds(s: Session, refund: ChannelRefund) -> list[str]:
    """The refund ids of this trade's earlier partial refunds (sent to the worklist), other than
    ``refund`` itself (a redelivered notification is the same refund, not an earlier one)."""
    details = s.execute(select(InboxMessage.detail).where(
        InboxMessage.channel == refund.channel, InboxMessage.transaction_id == refund.transaction_id,
        InboxMessage.refusal == "partial_refund")).scalars().all()
    ids = {(d or "").split(" ", 2)[1] for d in details if (d or "").startswith("refund ")}
    return sorted(ids - {refund.refund_id})


@contextmanager
def _session(db: Database, conn: Connection | None) -> Iterator[Session]:
    """A unit of work on the given connection (one pool checkout per notification)."""
    if conn is None:
        with db.session() as s:
            yield s
        return
    with Session(bind=conn, expire_on_commit=False) as s, s.begin():
        yield s


def _transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return any(s in text for s in ("deadlock", "could not serialize", "database is locked",
                                   "busy"))


def receive(db: Database, *, channel: str, headers: Mapping[str, str], body: bytes,
            verify: Callable[[], Outcome], clock: Clock, source: str = "callback",
            order: str | None = None) -> InboxResult:
    """Store, verify, post: the whole path of one incoming notification."""
    with db.engine.connect() as conn:
        inbox_id = _store_raw(conn, channel=channel, headers=headers, body=body, clock=clock,
                              cipher=db.pii_cipher)
        try:
            outcome = verify()
        except Exception as exc:  # an adapter bug must not lose the message: it stays listed
            return _refuse(db, inbox_id, Refusal("verify_error", f"{type(exc).__name__}: {exc}"))
        return process(db, inbox_id, outcome, clock=clock, source=source, order=order, conn=conn)


def worklist(db: Database, *, include_resolved: bool = False, limit: int | None = None,
             after_id: int | None = None) -> list[InboxMessage]:
    """Refused messages for the clarification worklist, oldest first (in order of arrival, by id);
    ``limit`` and ``after_id`` page through it."""
    with db.session() as s:
        q = select(InboxMessage).where(InboxMessage.verdict == "refused")
        if not include_resolved:
            q = q.where(InboxMessage.resolved_at.is_(None))
        if after_id is not None:
            q = q.where(InboxMessage.id > after_id)
        q = q.order_by(InboxMessage.id)
        if limit is not None:
            q = q.limit(limit)
        rows = list(s.execute(q).scalars())
        s.expunge_all()
        return rows
