"""Queries of the notify package. The service decides; this module only reads and writes rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from dianfei.notify.models import Contact, DeliveryAttempt, OptOut, OutboxMessage

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
    """Insert many rows in one statement (Core executemany, no ORM bookkeeping); keys already
    present are skipped (INSERT … ON CONFLICT (key) DO NOTHING)."""
    if rows:
        session.execute(_insert(session)(OutboxMessage.__table__).on_conflict_do_nothing(
            index_elements=["key"]), rows)


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


# -- set-based dispatch: a batch of due rows in a few statements ----------------------------------

_OUT: Table = OutboxMessage.__table__  # type: ignore[assignment]
_ATT: Table = DeliveryAttempt.__table__  # type: ignore[assignment]


def due_rows(session: Session, now: datetime, batch: int,
             skip_channels: Iterable[str] = ()) -> list[Any]:
    """Up to ``batch`` due queued rows, oldest first, locked for this transaction (PostgreSQL:
    rows another dispatcher holds are skipped; SQLite serialises writers anyway)."""
    c = _OUT.c
    q = (select(c.outbox_id, c.key, c.account_id, c.customer_id, c.notice, c.channel, c.locale,
                c.context, c.attempts)
         .where(c.status == "queued", c.next_attempt_at <= now)
         .order_by(c.next_attempt_at, c.outbox_id).limit(batch))
    skip = list(skip_channels)
    if skip:
        q = q.where(c.channel.not_in(skip))
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return list(session.execute(q).all())


def customers_for(session: Session, pairs: Iterable[tuple[str, str]]) -> dict[str, CustomerRecord]:
    """Name, postal address (the customer's, else the account's first service point's) and
    encrypted phone for many (customer_id, account_id) pairs, from the customers service (two
    reads)."""
    from dianfei.customers.service import contacts

    return {c: CustomerRecord(r["customer_id"], r["name"], r["address"], r["phone_enc"])
            for c, r in contacts(session.connection(), pairs).items()}


def contacts_for(session: Session, customer_ids: Iterable[str]) -> dict[str, Any]:
    ids = list(set(customer_ids))
    if not ids:
        return {}
    return {r.customer_id: r for r in session.execute(
        select(Contact.customer_id, Contact.email_enc, Contact.wechat_openid, Contact.locale)
        .where(Contact.customer_id.in_(ids)))}


def active_opt_outs_for(session: Session, customer_ids: Iterable[str]) -> dict[tuple[str, str], Any]:
    ids = list(set(customer_ids))
    if not ids:
        return {}
    return {(r.customer_id, r.channel): r for r in session.execute(
        select(OptOut.customer_id, OptOut.channel, OptOut.reason, OptOut.opted_out_at)
        .where(OptOut.customer_id.in_(ids), OptOut.withdrawn_at.is_(None)))}


def went_out_counts(session: Session, customer_ids: Iterable[str], since: datetime,
                    until: datetime) -> dict[tuple[str, str], int]:
    """(customer, channel) → rows that went out in [since, until): :func:`count_went_out` at once."""
    ids = list(set(customer_ids))
    if not ids:
        return {}
    c = _OUT.c
    return {(r[0], r[1]): int(r[2]) for r in session.execute(
        select(c.customer_id, c.channel, func.count())
        .where(c.customer_id.in_(ids), c.status.in_(WENT_OUT), c.claimed_at >= since, c.claimed_at < until)
        .group_by(c.customer_id, c.channel))}


def claim_many(session: Session, claims: Sequence[tuple[int, int]], now: datetime) -> set[int]:
    """queued → sending for many (outbox_id, attempts before) pairs in one compare-and-set
    statement; returns the ids this transaction got (a row another dispatcher took is left out)."""
    if not claims:
        return set()
    c = _OUT.c
    got: set[int] = set()
    for i in range(0, len(claims), 500):
        chunk = claims[i:i + 500]
        res = session.execute(
            update(_OUT).where(tuple_(c.outbox_id, c.attempts).in_(list(chunk)), c.status == "queued")
            .values(status="sending", attempts=c.attempts + 1, claimed_at=now, updated_at=now)
            .returning(c.outbox_id))
        got.update(int(i) for i in res.scalars())
    return got


def insert_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(_ATT), rows)


def update_outbox_many(session: Session, values: Sequence[str], rows: list[dict[str, Any]], *,
                       only_status: str | None = None) -> None:
    """One executemany UPDATE of the columns ``values`` by outbox id; each row dict holds ``oid``
    and ``v_<column>``; ``only_status`` makes it a compare-and-set on the row's status."""
    if not rows:
        return
    c = _OUT.c
    q = update(_OUT).where(c.outbox_id == bindparam("oid"))
    if only_status is not None:
        q = q.where(c.status == only_status)
    session.execute(q.values({name: bindparam(f"v_{name}") for name in values}), rows)


def finish_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    """Record many attempts' outcomes: rows with oid, no, v_finished_at, v_outcome, v_error_code,
    v_error, v_provider_ref."""
    if not rows:
        return
    a = _ATT.c
    session.execute(update(_ATT).where(a.outbox_id == bindparam("oid"), a.attempt_no == bindparam("no"))
                    .values({n: bindparam(f"v_{n}") for n in
                             ("finished_at", "outcome", "error_code", "error", "provider_ref")}), rows)


def touch_claims(session: Session, ids: Sequence[int], now: datetime) -> None:
    """Claims still waiting for their send in a long batch are not stale: move claimed_at on."""
    if ids:
        c = _OUT.c
        session.execute(update(_OUT).where(c.outbox_id.in_(list(ids)), c.status == "sending")
                        .values(claimed_at=now))


def finished_since(engine: Any, since: datetime | None, prefix: str) -> Any:
    """Rows whose key starts with ``prefix`` that went out or were given up (sent, delivered,
    failed, opted out, suppressed), updated after ``since``, in outbox order: key, account_id,
    customer_id, notice, channel, status, sent_at, updated_at."""
    import polars as pl

    from dianfei.db.frames import read_frame

    where = "" if since is None else " AND updated_at > :since"
    return read_frame(
        engine,
        "SELECT key, account_id, customer_id, notice, channel, status, sent_at, updated_at "
        "FROM notify_outbox WHERE key LIKE :p AND status IN ('sent', 'delivered', 'failed', "
        f"'opted_out', 'suppressed'){where} ORDER BY outbox_id",
        {"p": prefix + "%", **({"since": since} if since else {})},
        instants=("sent_at", "updated_at"),
        schema={"key": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "notice": pl.String, "channel": pl.String, "status": pl.String})


def existing_keys(conn: Any, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are in the outbox."""
    found: set[str] = set()
    stmt = select(OutboxMessage.key).where(OutboxMessage.key.in_(bindparam("k", expanding=True)))
    uniq = sorted(set(keys))
    for i in range(0, len(uniq), 500):
        found |= {str(r[0]) for r in conn.execute(stmt, {"k": uniq[i:i + 500]})}
    return found
