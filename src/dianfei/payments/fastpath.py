"""Group commit for channel callbacks (回调批量入账): many verified notifications, one transaction.

A payment channel retries until it hears "success", and it hears it only after a durable commit.
At a thousand callbacks a second the cost of posting them one transaction each is the commit
(a WAL flush) and the ten or so statements around it, not the work. So each server process runs
one writer thread (:class:`Batcher`): requests verify their signature on the event loop, queue
the outcome, and wait; the writer takes everything queued (up to ``max_batch``), decides and
writes the whole batch in ONE transaction with a handful of set-based statements
(:func:`post_batch`), commits, and only then answers every request of the batch. While it
commits, the next batch queues up — the group grows with the load, the latency does not.

Same rules as the one-by-one path (``inbox.receive`` → ``service.post_channel_payment``):

- **Raw first, in the same transaction.** The raw message (body, proof headers) and its verdict
  are one ``payment_inbox`` row written by the transaction that posts the payment. The old path
  committed the raw row first (without waiting for the WAL flush) and the posting second; what
  the separate commit bought was that a message whose *posting* fails is still on file. Here, if
  the batch fails for any reason, every message of it is handed to the one-by-one path, which
  commits the raw row first — so a failure still leaves each message on file. And a crash before
  the commit loses nothing either: no "success" was sent, so the channel delivers again (the old
  raw commit did not wait for the flush, so it never guaranteed more than that).
- **Decided up front, each on its own.** The batch locks its orders and their accounts (``FOR
  UPDATE``, in account order, so two writers never deadlock on each other), reads which payments
  already exist, then replays the batch in arrival order in memory with exactly the checks and
  refusal messages of ``post_channel_payment`` (shared helpers in ``service``). A refusal affects
  only its own message: it is never written to ``payments``, so a forged message cannot block the
  genuine one, in this batch or a later one. Two deliveries of one transaction in one batch: the
  first posts, the second is a duplicate — as if they had come one after the other.
- **The one posting core.** The accounts' open items are read once (after the locks) into a
  ``ledger.posting.Book``; each payment of the batch is planned by ``Book.pay`` exactly as the
  one-by-one path plans it, so allocation, credit, open items and events cannot differ between
  the paths, and a later payment of the batch sees what an earlier one cleared.
- **The database still decides uniqueness.** ``payments`` is inserted without ON CONFLICT: if a
  concurrent transaction slipped the same (channel, transaction id) in (possible only for a
  transaction claimed by two different orders), the insert fails, the batch rolls back as a whole,
  and every message goes the one-by-one way. Nothing posts twice.

Refund notifications and payments without an order number (rare on callbacks) take the
one-by-one path straight away.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, insert, text

from dianfei.core.clock import Clock, business_date
from dianfei.db.lists import pg_array
from dianfei.db.pii import seal_inbox_body
from dianfei.ledger import service as ledger
from dianfei.ledger.service import Book, Item
from dianfei.payments.channels.base import Outcome, Refusal
from dianfei.payments.inbox import PROOF_HEADERS, InboxResult, process, store_raw
from dianfei.payments.models import InboxMessage, Payment
from dianfei.payments.refusal_log import printable
from dianfei.payments.service import (
    PaymentRefused,
    check_against_order,
    check_order_open,
    check_payment,
    check_replay,
    payment_id_for,
)

if TYPE_CHECKING:
    from dianfei.core.crypto import PiiCipher
    from dianfei.db.engine import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """One notification as received, with the outcome of its verification."""

    channel: str
    headers: Mapping[str, str]
    body: bytes
    outcome: Outcome
    received_at: datetime


def kept_headers(headers: Mapping[str, str]) -> str:
    """The proof headers kept with the raw body, as the inbox stores them."""
    return json.dumps({k.lower(): v for k, v in headers.items() if k.lower() in PROOF_HEADERS},
                      sort_keys=True)


def batchable(item: Incoming) -> bool:
    """Refunds and payments without an order number take the one-by-one path."""
    if isinstance(item.outcome, Refusal):
        return True
    if getattr(item.outcome, "refund", None) is not None:
        return False
    payment = item.outcome.payment
    return payment is None or bool(payment.order_no)


@dataclass
class _Order:
    order_no: str
    account_id: str
    channel: str
    amount: int
    status: str
    customer_id: str


@dataclass
class _Plan:
    """What the batch writes besides the posting core's rows, built by replaying it in memory."""

    inbox: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    paid_orders: list[str] = field(default_factory=list)
    results: list[tuple[str, str | None, str, str | None, int | None]] = field(default_factory=list)


def post_batch(conn: Connection, items: Sequence[Incoming], *, clock: Clock, cipher: PiiCipher,
               source: str = "callback", order: str | None = None,
               commit: bool = False) -> list[InboxResult]:
    """Decide and write ``items`` (all :func:`batchable`) in the caller's transaction on ``conn``;
    results in the order of ``items``. Raises on any database error (the caller rolls back and
    falls back to the one-by-one path). On PostgreSQL the batch is two round trips (the reads in
    one pipeline, the writes in another) and ``commit=True`` sends the COMMIT with the writes.
    Each message's body is stored sealed with ``cipher`` (it names the payer)."""
    pg = conn.dialect.name == "postgresql"
    pays = [(i, it.outcome.payment) for i, it in enumerate(items)
            if not isinstance(it.outcome, Refusal) and it.outcome.payment is not None]
    order_nos = sorted({p.order_no for _, p in pays if p.order_no})
    pids = {i: payment_id_for(p.channel, p.transaction_id) for i, p in pays}
    now = clock.now()
    if pg:
        orders, existing, loaded, inbox_ids = _pg_read(
            conn, order_nos, sorted(set(pids.values())), len(items))
    else:
        orders = _lock_orders(conn, order_nos)
        existing = _existing(conn, sorted(set(pids.values())))
        loaded = ledger.load_items(conn, sorted({o.account_id for o in orders.values()}))
    # the one posting core: the batch is replayed against the accounts' open items in memory
    book = Book(loaded, order=ledger.configured_order(conn) if order is None else order,
                now=now)
    plan = _Plan()
    for i, it in enumerate(items):
        verdict, code, message, pid, balance = _decide(
            it, pids.get(i), orders, existing, book, plan, now=now, source=source)
        payment = None if isinstance(it.outcome, Refusal) else it.outcome.payment
        txn = (it.outcome.transaction_id or None) if isinstance(it.outcome, Refusal) else (
            payment.transaction_id if payment is not None else None)
        if verdict == "refused":  # what was refused is kept as text, never its control bytes
            txn, message = printable(txn, 64), printable(message, 2000) or ""
        plan.inbox.append({
            "channel": it.channel, "received_at": it.received_at, "headers": kept_headers(it.headers),
            **seal_inbox_body(cipher, it.channel, it.body), "verdict": verdict,
            "refusal": code[:24] if code else None,
            "detail": message or None, "transaction_id": txn,
            "payment_id": pid if verdict in ("posted", "duplicate") else None})
        plan.results.append((verdict, code, message, pid, balance))
    if pg:
        ids = inbox_ids
        _pg_write(conn, plan, book, ids, now=now, commit=commit)
    else:
        _write(conn, plan, book, now=now)
        ids = _inbox_ids(conn, plan.inbox)
    return [InboxResult(ids[k], verdict, code, message,
                        payment_id=pid if verdict in ("posted", "duplicate") else None,
                        balance_after=bal)
            for k, (verdict, code, message, pid, bal) in enumerate(plan.results)]


def _decide(it: Incoming, pid: str | None, orders: dict[str, _Order],
            existing: dict[str, tuple[int, str]], book: Book, plan: _Plan, *, now: datetime,
            source: str) -> tuple[str, str | None, str, str | None, int | None]:
    """Verdict, refusal code, message, payment id and balance after, for one message — in the
    order and with the messages of ``service.post_channel_payment``."""
    outcome = it.outcome
    if isinstance(outcome, Refusal):
        return "refused", outcome.code, outcome.message, None, None
    payment = outcome.payment
    if payment is None:
        return "acknowledged", None, f"status {outcome.status}", None, None
    assert pid is not None and payment.order_no
    try:
        check_payment(payment)
        o = orders.get(payment.order_no)
        if o is None:
            raise PaymentRefused("unknown_order", f"no payment order {payment.order_no}")
        check_against_order(payment, o)
        seen = existing.get(pid)
        if seen is not None:
            check_replay(payment, seen[0], seen[1], o.account_id)
            return "duplicate", None, "", pid, book.balance(o.account_id)
        check_order_open(o.order_no, o.status, payment.transaction_id)
    except PaymentRefused as exc:
        return "refused", exc.code, exc.message, None, None
    o.status = "paid"
    existing[pid] = (payment.amount, o.account_id)
    plan.payments.append({
        "payment_id": pid, "channel": payment.channel, "transaction_id": payment.transaction_id,
        "order_no": payment.order_no, "account_id": o.account_id, "customer_id": o.customer_id,
        "amount": payment.amount, "paid_at": payment.paid_at,
        "business_date": business_date(payment.paid_at), "posted_at": now, "source": source,
        "status": "posted"})
    plan.paid_orders.append(o.order_no)
    balance = book.pay(payment_id=pid, account_id=o.account_id, customer_id=o.customer_id,
                       amount=payment.amount, paid_at=payment.paid_at,
                       reason=f"{payment.channel} {payment.transaction_id}",
                       payload={"channel": payment.channel, "source": source})
    return "posted", None, "", pid, balance


def _lock_orders(conn: Connection, order_nos: Sequence[str]) -> dict[str, _Order]:
    """The batch's orders with their account's customer, order and account rows locked in
    (account, order) order: every writer takes its locks in the same order, so none deadlocks."""
    if not order_nos:
        return {}
    sql = text("SELECT o.order_no, o.account_id, o.channel, o.amount, o.status, a.customer_id "
               "FROM payment_orders o JOIN accounts a ON a.account_id = o.account_id "
               "WHERE o.order_no IN :nos ORDER BY o.account_id, o.order_no"
               + (" FOR UPDATE" if conn.dialect.name == "postgresql" else "")
               ).bindparams(bindparam("nos", expanding=True))
    return {r[0]: _Order(r[0], r[1], r[2], int(r[3]), r[4], r[5])
            for r in conn.execute(sql, {"nos": list(order_nos)})}


def _existing(conn: Connection, pids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Payments already posted (read after the locks, so a committed first delivery is seen)."""
    if not pids:
        return {}
    sql = text("SELECT payment_id, amount, account_id FROM payments WHERE payment_id IN :ids"
               ).bindparams(bindparam("ids", expanding=True))
    return {r[0]: (int(r[1]), r[2]) for r in conn.execute(sql, {"ids": list(pids)})}


def _write(conn: Connection, plan: _Plan, book: Book, *, now: datetime) -> None:
    if plan.payments:
        # a plain insert: a row that exists after all (a concurrent writer) fails the batch
        conn.execute(insert(Payment), plan.payments)
        conn.execute(text("UPDATE payment_orders SET status = 'paid' WHERE order_no IN :nos")
                     .bindparams(bindparam("nos", expanding=True)), {"nos": plan.paid_orders})
    ledger.write_posting(conn, book.posting, now=now)


def _inbox_ids(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the inbox rows; their ids in the order of ``rows``."""
    res = conn.execute(insert(InboxMessage).returning(InboxMessage.id, sort_by_parameter_order=True),
                       rows)
    return [int(r[0]) for r in res]


# -- PostgreSQL: psycopg pipelines on the pool's connection ------------------------------------
# The same statements as above, written for psycopg: ``= ANY(array)`` keeps each text constant so
# psycopg prepares it after a few batches, and the inserts are one ``unnest`` each (one statement
# for the whole batch rather than one per row).

_PG_LOCK = ("SELECT o.order_no, o.account_id, o.channel, o.amount, o.status, a.customer_id "
            "FROM payment_orders o JOIN accounts a ON a.account_id = o.account_id "
            "WHERE o.order_no = ANY(%s::text[]) ORDER BY o.account_id, o.order_no FOR UPDATE")
_PG_EXISTING = ("SELECT payment_id, amount, account_id FROM payments "
                "WHERE payment_id = ANY(%s::text[])")
# ``= ANY(ARRAY(subquery))``: the accounts are computed once and looked up by index, whatever the
# planner's statistics say (a hash join over all ledger entries was 10 ms on a fresh database)
_PG_ACCOUNTS = (
    "ARRAY(SELECT DISTINCT account_id FROM payment_orders WHERE order_no = ANY(%s::text[]))")
# the open items of the batch's accounts, as ledger.load_items reads them
_PG_ITEMS = (
    "SELECT reference, account_id, customer_id, item_kind, bill_id, due_on, amount, open_amount "
    f"FROM open_items WHERE account_id = ANY({_PG_ACCOUNTS}) AND open_amount <> 0")
_PG_IDS = ("SELECT nextval(pg_get_serial_sequence('payment_inbox', 'id')) "
           "FROM generate_series(1, %s)")
_PG_INSERT_PAYMENTS = (
    "INSERT INTO payments (payment_id, channel, transaction_id, order_no, account_id, customer_id, "
    "amount, paid_at, business_date, posted_at, source, status) SELECT * FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], "
    "%s::timestamp[], %s::date[], %s::timestamp[], %s::text[], %s::text[])")
_PG_PAID = "UPDATE payment_orders SET status = 'paid' WHERE order_no = ANY(%s::text[])"
_PG_INSERT_INBOX = (
    "INSERT INTO payment_inbox (id, channel, received_at, headers, body, body_sha256, body_enc, "
    "verdict, refusal, detail, transaction_id, payment_id) SELECT * FROM unnest(%s::bigint[], "
    "%s::text[], %s::timestamp[], %s::text[], %s::bytea[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::text[], %s::text[])")


def _naive_utc(at: datetime) -> datetime:
    """What ``UTCDateTime`` stores: naive UTC (psycopg gets the value without SQLAlchemy)."""
    if at.tzinfo is None:
        raise ValueError(f"instants must be timezone-aware, got {at!r}")
    return at.astimezone(UTC).replace(tzinfo=None)


def _pg(conn: Connection) -> Any:
    return conn.connection.driver_connection


def _pg_read(conn: Connection, order_nos: list[str], pids: list[str], n: int
             ) -> tuple[dict[str, _Order], dict[str, tuple[int, str]], list[Item], list[int]]:
    """One round trip: the server runs the statements one after the other, so the reads after
    the lock see every transaction that committed before the lock was granted."""
    pg = _pg(conn)
    with pg.pipeline():
        orders_param = pg_array(order_nos)
        locked = pg.execute(_PG_LOCK, (orders_param,))
        seen = pg.execute(_PG_EXISTING, (pg_array(pids),))
        found = pg.execute(_PG_ITEMS, (orders_param,))
        ids = pg.execute(_PG_IDS, (n,))
        orders = {r[0]: _Order(r[0], r[1], r[2], int(r[3]), r[4], r[5]) for r in locked.fetchall()}
        existing = {r[0]: (int(r[1]), r[2]) for r in seen.fetchall()}
        loaded = [Item(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7]))
                  for r in found.fetchall()]
        inbox_ids = sorted(int(r[0]) for r in ids.fetchall())
    return orders, existing, loaded, inbox_ids


def _cols(rows: list[dict[str, Any]], names: Sequence[str], instants: Sequence[str] = ()
          ) -> tuple[str, ...]:
    """The rows' columns as array literals (db.lists.pg_array), instants naive UTC."""
    return tuple(pg_array([_naive_utc(r[k]) for r in rows] if k in instants
                          else [r[k] for r in rows]) for k in names)


def _pg_write(conn: Connection, plan: _Plan, book: Book, ids: list[int], *, now: datetime,
              commit: bool) -> None:
    """One round trip: every insert of the batch (and the COMMIT when asked)."""
    pg = _pg(conn)
    with pg.pipeline():
        if plan.payments:
            pg.execute(_PG_INSERT_PAYMENTS, _cols(plan.payments, (
                "payment_id", "channel", "transaction_id", "order_no", "account_id", "customer_id",
                "amount", "paid_at", "business_date", "posted_at", "source", "status"),
                ("paid_at", "posted_at")))
            pg.execute(_PG_PAID, (pg_array(plan.paid_orders),))
        ledger.write_posting(conn, book.posting, now=now)
        pg.execute(_PG_INSERT_INBOX, (pg_array(ids), *_cols(plan.inbox, (
            "channel", "received_at", "headers", "body", "body_sha256", "body_enc", "verdict",
            "refusal", "detail", "transaction_id", "payment_id"), ("received_at",))))
        if commit:
            pg.commit()


class Batcher:
    """One writer thread per server process: queue verified notifications, post them in groups.

    ``submit`` returns a future resolved after the batch holding the message committed (or with
    the exception that made it fail even one by one). The thread starts on first use, in the
    process that uses it (uvicorn workers build their app after the fork)."""

    def __init__(self, db: Database, *, clock: Clock, order: str | None = None,
                 source: str = "callback", max_batch: int = 256) -> None:
        self.db, self.clock, self.order, self.source = db, clock, order, source
        self.max_batch = max_batch
        # None asks the writer to stop (after what was queued before it)
        self._queue: queue.SimpleQueue[tuple[Incoming, Future[InboxResult]] | None] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        #: batches written and messages in them (for tests and the benchmark)
        self.batches = 0
        self.messages = 0

    def submit(self, item: Incoming) -> Future[InboxResult]:
        fut: Future[InboxResult] = Future()
        self._queue.put((item, fut))
        if self._thread is None:
            self.start()
        return fut

    def start(self, *, connect: bool = False) -> None:
        """Start the writer thread (once); with ``connect`` also open its connection now, so the
        first callbacks after a (re)start do not pay for it."""
        with self._lock:
            if connect and self._conn is None:
                self._connection()
                # the keyring the bodies are sealed with: a missing key shows at start-up,
                # not as the first genuine payment's failure
                _ = self.db.pii_cipher
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="callback-writer",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the writer thread and close its connection."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)
        self._discard()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Incoming, Future[InboxResult]]] = []
            first = self._queue.get()
            if first is None:
                break
            batch.append(first)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self.write(batch)
            except BaseException as exc:  # pragma: no cover - write() answers every future
                log.exception("callback writer failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)

    def write(self, batch: Sequence[tuple[Incoming, Future[InboxResult]]]) -> None:
        """Post one batch and resolve its futures (runs on the writer thread)."""
        grouped = [(it, f) for it, f in batch if batchable(it)]
        single = [(it, f) for it, f in batch if not batchable(it)]
        if grouped:
            try:
                conn = self._connection()
                with conn.begin():
                    results = post_batch(conn, [it for it, _ in grouped], clock=self.clock,
                                         cipher=self.db.pii_cipher,
                                         source=self.source, order=self.order,
                                         commit=conn.dialect.name == "postgresql")
            except Exception:
                self._discard()
                # a concurrent writer, a deadlock, SQLite busy, a bug: nothing of the batch was
                # written; each message goes the one-by-one way (raw row committed first)
                log.warning("callback batch of %d failed; posting one by one", len(grouped),
                            exc_info=True)
                single = grouped + single
            else:
                self.batches += 1
                self.messages += len(grouped)
                for (_, fut), res in zip(grouped, results, strict=True):
                    fut.set_result(res)
        for it, fut in single:
            try:
                fut.set_result(self.one(it))
            except Exception as exc:
                fut.set_exception(exc)

    def _connection(self) -> Connection:
        """The writer's own connection, kept between batches (no pool checkout or ping each time);
        dropped after any error and opened again for the next batch."""
        if self._conn is None:
            self._conn = self.db.engine.connect()
            if self._conn.dialect.name == "postgresql":
                # the writer runs the same few statements all day: prepare them on first use
                self._conn.connection.driver_connection.prepare_threshold = 0  # type: ignore[union-attr]
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # pragma: no cover - already broken
                log.debug("closing a broken writer connection", exc_info=True)

    def one(self, it: Incoming) -> InboxResult:
        """The one-by-one path: raw row committed first, then ``inbox.process``."""
        inbox_id = store_raw(self.db, channel=it.channel, headers=it.headers, body=it.body,
                             clock=_At(it.received_at))
        return process(self.db, inbox_id, it.outcome, clock=self.clock, source=self.source,
                       order=self.order)


@dataclass(frozen=True)
class _At:
    """A clock stopped at the moment a message was received (its inbox ``received_at``)."""

    at: datetime

    def now(self) -> datetime:
        return self.at
