"""Queries of the notify package. The service decides; this module only reads and writes rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    select,
    table,
    text,
    update,
)
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
# The customer facts a notice needs (name, encrypted phone, postal address) are joined into the
# dispatch's one statement rather than fetched per batch from the customers service: the hot
# path stays one round trip. Named here as plain table constructs (the customers package owns
# the tables; these columns are the part of them notify relies on).
_CUSTOMERS = table("customers", column("customer_id"), column("name"), column("phone_enc"),
                   column("address"))
_SERVICE_POINTS = table("service_points", column("service_point_id"), column("account_id"),
                        column("address"))
_ATT: Table = DeliveryAttempt.__table__  # type: ignore[assignment]


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


# -- the dispatch hot path: one statement per batch, whatever its size ------------------------------
#
# A batch's per-row values travel as one parameter: a JSON array read by json_each() on SQLite,
# one array per column read by unnest() on PostgreSQL. No IN list of hundreds of bind parameters
# for SQLAlchemy to expand and convert, no executemany building a parameter set per row: the
# claim, the attempt rows and the 'sent' outcomes of 500 notices cost one statement each.

_SQL_TYPES = {"bigint": "BIGINT", "int": "INTEGER", "text": "TEXT"}


def _rows_source(session: Session, name: str, columns: Sequence[tuple[str, str]],
                 rows: Sequence[Sequence[Any]]) -> tuple[str, dict[str, Any]]:
    """A derived table ``(…) AS <name>`` with ``columns`` [(column, bigint|int|text)] holding
    ``rows``, and the bind parameters it needs."""
    if session.get_bind().dialect.name == "postgresql":
        arrays = ", ".join(f"CAST(:{name}_{i} AS {_SQL_TYPES[t]}[])" for i, (_, t) in enumerate(columns))
        cols = ", ".join(c for c, _ in columns)
        params = {f"{name}_{i}": [r[i] for r in rows] for i in range(len(columns))}
        return f"unnest({arrays}) AS {name}({cols})", params
    cols = ", ".join(f"json_extract(value, '$[{i}]') AS {c}" for i, (c, _) in enumerate(columns))
    return (f"(SELECT {cols} FROM json_each(:{name})) AS {name}",
            {name: json.dumps([list(r) for r in rows], ensure_ascii=False)})


def _now_param() -> Any:
    return bindparam("now", type_=_OUT.c.claimed_at.type)


def dispatch_batch(session: Session, now: datetime, batch: int, skip_channels: Iterable[str] = (), *,
                   count_since: datetime | None = None, count_until: datetime | None = None,
                   count_channels: Iterable[str] = ()) -> list[Any]:
    """Up to ``batch`` due queued rows with everything the rules need, in one statement: per due
    row (oldest first, locked on PostgreSQL — rows another dispatcher holds are skipped; SQLite
    serialises writers anyway) its customer
    (``cust_id`` None when unknown; ``address`` falls back to the account's first service point),
    contact, standing opt-out on the row's channel, and — for ``count_channels`` — how many of the
    customer's rows on that channel went out in [count_since, count_until)."""
    c = _OUT.c
    cu = _CUSTOMERS.c
    ct = Contact.__table__.c
    opt = OptOut.__table__.alias("opt")
    sp = _SERVICE_POINTS.c
    sp_address = (select(sp.address).where(sp.account_id == c.account_id)
                  .order_by(sp.service_point_id).limit(1).scalar_subquery())
    counted = list(count_channels)
    if counted and count_since is not None and count_until is not None:
        w = _OUT.alias("w")
        went: Any = (select(func.count()).select_from(w).where(
            w.c.customer_id == c.customer_id, w.c.channel == c.channel, w.c.status.in_(WENT_OUT),
            w.c.claimed_at >= count_since, w.c.claimed_at < count_until).scalar_subquery())
        went = case((c.channel.in_(counted), went), else_=literal(0))
    else:
        went = literal(0)
    # the due rows first (narrow, by the due index, locked), then their joins: PostgreSQL would
    # otherwise join every queued row and sort them all for each batch
    due = (select(c.outbox_id).where(c.status == "queued", c.next_attempt_at <= now)
           .order_by(c.next_attempt_at, c.outbox_id).limit(batch))
    skip = list(skip_channels)
    if skip:
        due = due.where(c.channel.not_in(skip))
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    picked = due.subquery("due")
    q = (select(c.outbox_id, c.key, c.account_id, c.customer_id, c.notice, c.channel, c.locale,
                c.context, c.attempts,
                cu.customer_id.label("cust_id"), cu.name.label("cust_name"), cu.phone_enc,
                func.coalesce(func.nullif(cu.address, ""), sp_address).label("address"),
                ct.customer_id.label("contact_id"), ct.email_enc, ct.wechat_openid,
                ct.locale.label("contact_locale"),
                opt.c.reason.label("opt_out_reason"), opt.c.opted_out_at, went.label("went_out"))
         .select_from(_OUT.join(picked, picked.c.outbox_id == c.outbox_id)
                      .outerjoin(_CUSTOMERS, cu.customer_id == c.customer_id)
                      .outerjoin(Contact.__table__, ct.customer_id == c.customer_id)
                      .outerjoin(opt, and_(opt.c.customer_id == c.customer_id, opt.c.channel == c.channel,
                                           opt.c.withdrawn_at.is_(None))))
         .order_by(c.next_attempt_at, c.outbox_id))
    return list(session.execute(q).all())


def claim_batch(session: Session, claims: Sequence[tuple[int, int]], now: datetime) -> dict[int, int]:
    """Claim in one statement, and insert each claimed row's attempt row in a second:
    queued → sending (compare-and-set on status and attempts) for (outbox_id, attempts before)
    pairs; returns {outbox_id: attempt_no} of the rows this transaction got."""
    if not claims:
        return {}
    src, params = _rows_source(session, "c", (("id", "bigint"), ("att", "int")), claims)
    # SQLite: the unary + keeps the planner off the status index (it would scan every queued row
    # for each claim) and on the primary key
    plus = "" if session.get_bind().dialect.name == "postgresql" else "+"
    got = session.execute(text(
        "UPDATE notify_outbox SET status = 'sending', attempts = notify_outbox.attempts + 1, "
        f"claimed_at = :now, updated_at = :now FROM {src} "
        "WHERE notify_outbox.outbox_id = c.id AND notify_outbox.attempts = c.att "
        f"AND {plus}notify_outbox.status = 'queued' "
        "RETURNING notify_outbox.outbox_id, notify_outbox.attempts")
        .bindparams(_now_param()), {**params, "now": now}).all()
    claimed = {int(oid): int(no) for oid, no in got}
    src, params = _rows_source(session, "a", (("id", "bigint"), ("no", "int")), list(claimed.items()))
    session.execute(text(
        f"INSERT INTO notify_attempts (outbox_id, attempt_no, started_at) SELECT a.id, a.no, :now FROM {src}")
        .bindparams(_now_param()), {**params, "now": now})
    return claimed


def record_sent(session: Session, sent: Sequence[tuple[int, int, str | None]], now: datetime) -> None:
    """The 'sent' outcomes of many attempts, (outbox_id, attempt_no, provider_ref) each: the
    attempt rows and the outbox rows, one statement each."""
    if not sent:
        return
    src, params = _rows_source(session, "s", (("id", "bigint"), ("no", "int"), ("ref", "text")), sent)
    session.execute(text(
        "UPDATE notify_attempts SET finished_at = :now, outcome = 'sent', error_code = NULL, "
        f"error = NULL, provider_ref = s.ref FROM {src} "
        "WHERE notify_attempts.outbox_id = s.id AND notify_attempts.attempt_no = s.no")
        .bindparams(_now_param()), {**params, "now": now})
    session.execute(text(
        "UPDATE notify_outbox SET status = 'sent', sent_at = :now, provider_ref = s.ref, "
        f"last_error = NULL, updated_at = :now FROM {src} WHERE notify_outbox.outbox_id = s.id")
        .bindparams(_now_param()), {**params, "now": now})


def finished_since(engine: Any, since: datetime | None, prefix: str) -> Any:
    """Rows whose key starts with ``prefix`` that went out or were given up (sent, delivered,
    failed, opted out, suppressed), updated after ``since``, in outbox order: key, account_id,
    customer_id, notice, channel, status, sent_at, updated_at."""
    import polars as pl

    from dianfei.db.frames import read_frame, sqlite_columns

    where = "" if since is None else " AND updated_at > :since"
    sql = ("SELECT outbox_id, key, account_id, customer_id, notice, channel, status, sent_at, "
           "updated_at "
           # "not queued or sending" rather than the five finished statuses, and sorted here
           # rather than in SQL: otherwise SQLite's planner walks the status index, or the table
           # in id order, through every notice ever sent, where the updated_at index finds the
           # few of the last days
           "FROM notify_outbox WHERE key LIKE :p AND status NOT IN ('queued', 'sending')"
           f"{where}")
    params = {"p": prefix + "%", **({"since": since} if since else {})}
    schema = {"outbox_id": pl.Int64, "key": pl.String, "account_id": pl.String,
              "customer_id": pl.String, "notice": pl.String, "channel": pl.String,
              "status": pl.String}
    # a day's notices can be hundreds of thousands (a million accounts): on SQLite one text
    # parsed by Polars (keys, ids, codes and instants only)
    frame = sqlite_columns(engine, sql, params, {
        **schema, "sent_at": pl.Datetime("us", "UTC"), "updated_at": pl.Datetime("us", "UTC")})
    if frame is None:
        frame = read_frame(engine, sql, params, instants=("sent_at", "updated_at"), schema=schema)
    return frame.sort("outbox_id").drop("outbox_id")


def existing_keys(conn: Any, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are in the outbox."""
    found: set[str] = set()
    stmt = select(OutboxMessage.key).where(OutboxMessage.key.in_(bindparam("k", expanding=True)))
    uniq = sorted(set(keys))
    for i in range(0, len(uniq), 500):
        found |= {str(r[0]) for r in conn.execute(stmt, {"k": uniq[i:i + 500]})}
    return found


def outcomes_between(engine: Any, since: datetime, until: datetime) -> Any:
    """customer_id, notice, channel, status of the notices queued in [since, until)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(
        engine, "SELECT customer_id, notice, channel, status FROM notify_outbox "
        "WHERE queued_at >= :a AND queued_at < :z", {"a": since, "z": until},
        schema={"customer_id": pl.String, "notice": pl.String, "channel": pl.String,
                "status": pl.String})


def given_up_between(engine: Any, since: datetime, until: datetime) -> Any:
    """Rows that ended ``failed`` or ``suppressed`` with their last change in (since, until]:
    outbox_id, key, account_id, customer_id, notice, channel, status, reason, at."""
    import polars as pl

    from dianfei.db.frames import read_frame

    # the window's rows first (the updated_at index), then their status: asked in one step,
    # SQLite read every notice that ever failed through the status index — a read that grew
    # with the history (17 ms a day by the demo's 24th month, 1.5 ms so)
    return read_frame(
        engine,
        "WITH recent AS MATERIALIZED (SELECT outbox_id, status FROM notify_outbox "
        "WHERE updated_at > :a AND updated_at <= :z) "
        "SELECT o.outbox_id, o.key, o.account_id, o.customer_id, o.notice, o.channel, o.status, "
        "o.last_error AS reason, o.updated_at AS at FROM recent "
        "JOIN notify_outbox o ON o.outbox_id = recent.outbox_id "
        "WHERE recent.status IN ('failed', 'suppressed')",
        {"a": since, "z": until}, instants=("at",),
        schema={"outbox_id": pl.Int64, "key": pl.String, "account_id": pl.String,
                "customer_id": pl.String, "notice": pl.String, "channel": pl.String,
                "status": pl.String, "reason": pl.String}).sort("outbox_id")


def customers_with_email(engine: Any, customer_ids: Any = None) -> set[str]:
    from contextlib import nullcontext

    from sqlalchemy import text

    from dianfei.db.lists import rows_in

    sql = "SELECT customer_id FROM notify_contacts WHERE email_enc IS NOT NULL AND email_enc != ''"
    with engine.connect() if isinstance(engine, Engine) else nullcontext(engine) as conn:
        if customer_ids is None:
            return {str(r[0]) for r in conn.execute(text(sql))}
        return {str(r[0]) for r in rows_in(conn, sql + " AND {member}", "customer_id",
                                           list(customer_ids))}
