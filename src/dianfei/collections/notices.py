"""How collections sends notices: through ``dianfei.notify`` (the outbox), behind a small
interface so that a day of collections can be tested before or without a real gateway.

Every key collections enqueues starts with ``col:``; ``notice_sent`` events are recorded from the
outbox's SENT time (``sent_at``), never from the enqueue time, because the lawful notice period
before a stop runs from when the notice actually went out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database

KEY_PREFIX = "col:"


@dataclass(frozen=True)
class Notice:
    key: str
    account_id: str
    customer_id: str
    notice: str
    channel: str
    context: Mapping[str, str]
    not_before: datetime | None = None


class Notifier(Protocol):
    def enqueue(self, session: Session, notices: list[Notice], *, clock: Clock) -> None: ...

    def dispatch(self, db: Database, *, clock: Clock, senders: Any = None) -> None: ...


class NotifyOutbox:
    """The real thing: ``dianfei.notify.service`` enqueue (idempotent on key) and dispatch."""

    def enqueue(self, session: Session, notices: list[Notice], *, clock: Clock) -> None:
        from dianfei.notify import service as notify

        # one statement for the day's notices (idempotent on key, as enqueue is)
        notify.enqueue_many(session, [
            notify.Notice(key=n.key, account_id=n.account_id, customer_id=n.customer_id,
                          notice=n.notice, channel=n.channel, context=dict(n.context),
                          not_before=n.not_before) for n in notices], clock=clock)

    def dispatch(self, db: Database, *, clock: Clock, senders: Any = None) -> None:
        from dianfei.notify import service as notify

        notify.dispatch(db, clock=clock, senders=senders)
