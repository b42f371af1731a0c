"""Queries of the notify package. The service decides; this module only reads and writes rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from dianfei.customers.models import Customer, ServicePoint
from dianfei.notify.models import Contact, OptOut, OutboxMessage

#: statuses in which a row has gone (or is going) out: what rate limits count
WENT_OUT = ("sending", "sent", "delivered")


def _insert(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def insert_outbox_row(session: Session, values: dict[str, Any]) -> int:
    """Insert unless the key exists; either way return the row's id (idempotent enqueue)."""
    ins = _insert(session)(OutboxMessage).values(**values).on_conflict_do_nothing(
        index_elements=["key"])
    session.execute(ins)
    return int(session.execute(
        select(OutboxMessage.outbox_id).where(OutboxMessage.key == values["key"])).scalar_one())


def insert_outbox_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one statement; keys already present are skipped."""
    if rows:
        session.execute(_insert(session)(OutboxMessage).on_conflict_do_nothing(index_elements=["key"]),
                        rows)


def upsert_contact(session: Session, customer_id: str, changes: dict[str, Any]) -> None:
    ins = _insert(session)(Contact).values(customer_id=customer_id, **changes)
    session.execute(ins.on_conflict_do_update(index_elements=["customer_id"], set_=changes))


def insert_opt_out(session: Session, values: dict[str, Any]) -> None:
    """A second standing opt-out for the same channel changes nothing (partial unique index)."""
    session.execute(_insert(session)(OptOut).values(**values).on_conflict_do_nothing())


def withdraw_opt_out(session: Session, customer_id: str, channel: str, at: datetime) -> int:
    res = session.execute(update(OptOut).where(
        OptOut.customer_id == customer_id, OptOut.channel == channel,
        OptOut.withdrawn_at.is_(None)).values(withdrawn_at=at))
    return int(res.rowcount)  # type: ignore[attr-defined]


def active_opt_out(session: Session, customer_id: str, channel: str) -> OptOut | None:
    return session.execute(select(OptOut).where(
        OptOut.customer_id == customer_id, OptOut.channel == channel,
        OptOut.withdrawn_at.is_(None))).scalar_one_or_none()


def contact(session: Session, customer_id: str) -> Contact | None:
    return session.get(Contact, customer_id)


@dataclass(frozen=True)
class CustomerRecord:
    customer_id: str
    name: str
    address: str | None
    phone_enc: str | None


def customer(session: Session, customer_id: str, account_id: str) -> CustomerRecord | None:
    """Name, postal address and encrypted phone: the customer's address, else the account's
    first service point's (where the electricity — and so the letter — goes)."""
    row = session.execute(select(Customer.customer_id, Customer.name, Customer.address,
                                 Customer.phone_enc)
                          .where(Customer.customer_id == customer_id)).first()
    if row is None:
        return None
    address = row.address
    if not address:
        address = session.execute(select(ServicePoint.address)
                                  .where(ServicePoint.account_id == account_id)
                                  .order_by(ServicePoint.service_point_id).limit(1)).scalar()
    return CustomerRecord(row.customer_id, row.name, address, row.phone_enc)


def due_ids(session: Session, now: datetime, batch: int, skip_channels: Iterable[str] = ()) -> list[int]:
    """Queued rows whose time has come, oldest first."""
    q = (select(OutboxMessage.outbox_id)
         .where(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now)
         .order_by(OutboxMessage.next_attempt_at, OutboxMessage.outbox_id).limit(batch))
    skip = list(skip_channels)
    if skip:
        q = q.where(OutboxMessage.channel.not_in(skip))
    return [int(i) for i in session.execute(q).scalars()]


def lock_row(session: Session, outbox_id: int) -> OutboxMessage | None:
    """The row, locked for this transaction (PostgreSQL: skipped if another dispatcher holds it;
    SQLite serialises writers anyway)."""
    q: Select[Any] = select(OutboxMessage).where(OutboxMessage.outbox_id == outbox_id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    row: OutboxMessage | None = session.execute(q).scalar_one_or_none()
    return row


def claim(session: Session, outbox_id: int, attempts_before: int, now: datetime) -> bool:
    """queued → sending, only if nobody else claimed it meanwhile (compare-and-set)."""
    res = session.execute(update(OutboxMessage).where(
        OutboxMessage.outbox_id == outbox_id, OutboxMessage.status == "queued",
        OutboxMessage.attempts == attempts_before,
    ).values(status="sending", attempts=attempts_before + 1, claimed_at=now, updated_at=now)
     .execution_options(synchronize_session=False))
    return int(res.rowcount) == 1  # type: ignore[attr-defined]


def count_went_out(session: Session, *, channel: str, since: datetime, until: datetime,
                   customer_id: str | None = None) -> int:
    q = select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.channel == channel, OutboxMessage.status.in_(WENT_OUT),
        OutboxMessage.claimed_at >= since, OutboxMessage.claimed_at < until)
    if customer_id is not None:
        q = q.where(OutboxMessage.customer_id == customer_id)
    return int(session.execute(q).scalar_one())


def count_claimed_since(session: Session, channel: str, since: datetime) -> int:
    """Every claim in the window, whatever came of it: the gateway saw the request."""
    return int(session.execute(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.channel == channel, OutboxMessage.claimed_at >= since)).scalar_one())


def stale_sending(session: Session, before: datetime) -> Sequence[OutboxMessage]:
    return session.execute(select(OutboxMessage).where(
        OutboxMessage.status == "sending", OutboxMessage.claimed_at < before)
        .order_by(OutboxMessage.outbox_id)).scalars().all()


def rows(session: Session, *, account_id: str | None = None, key_prefix: str | None = None,
         status: str | None = None, channel: str | None = None,
         limit: int | None = None) -> Sequence[OutboxMessage]:
    q = select(OutboxMessage)
    if account_id is not None:
        q = q.where(OutboxMessage.account_id == account_id)
    if key_prefix is not None:
        escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(OutboxMessage.key.like(escaped + "%", escape="\\"))
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    if channel is not None:
        q = q.where(OutboxMessage.channel == channel)
    q = q.order_by(OutboxMessage.queued_at, OutboxMessage.outbox_id)
    if limit is not None:
        q = q.limit(limit)
    return session.execute(q).scalars().all()
