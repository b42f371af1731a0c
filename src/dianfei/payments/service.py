"""Entry points of the payments domain: orders, posting exactly once, allocation, credit, reversal.

Posting rules (why the code is shaped this way):
- a verified payment is inserted into ``payments``, whose unique index on (channel, transaction id)
  decides — in the database, under concurrency — whether this delivery is the first; a second
  delivery gets ``created=False`` and posts nothing;
- the payment, its ledger entry (kind ``payment``, reference = payment id) and its allocations are
  written in the caller's transaction: all or nothing;
- an order's account and amount must match the notification, otherwise it is refused with a stable
  code (``PaymentRefused.code``) and the inbox keeps the refusal for the worklist;
- concurrent payments for one account are serialised by locking the account row (PostgreSQL) so two
  payments never settle the same bill twice; SQLite serialises writers anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.orm import Session

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ConflictError, DianfeiError, NotFoundError, ValidationError
from dianfei.core.metrics import Metric
from dianfei.customers.service import Account
from dianfei.db.lists import any_of
from dianfei.ledger import service as ledger
from dianfei.payments import repository
from dianfei.payments.allocation import check_order
from dianfei.payments.channels.base import CHANNELS, ChannelPayment
from dianfei.payments.channels.orders import new_order_no
from dianfei.payments.models import Payment, PaymentOrder

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl
    from sqlalchemy import Engine

    from dianfei.core.settings import Settings
    from dianfei.db.engine import Database
    from dianfei.metering.service import IngestResult

ORDER_CHANNELS = ("alipay", "wechatpay", "online")
ORDER_TTL = timedelta(hours=2)


class PaymentRefused(DianfeiError):
    """A payment that must not be posted; ``code`` is the refusal kept in the inbox worklist."""

    http_status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PostResult:
    payment_id: str
    #: False when this (channel, transaction id) was already posted: nothing new was written
    created: bool
    account_id: str = ""
    #: what the account still owes after the payment (fen, ≤ 0 when nothing is owed)
    balance_after: int = 0


def allocation_order(settings: Settings) -> str:
    cfg = settings.raw.get("payments", {})
    return check_order(str(cfg.get("allocation", "oldest_first")))


def payment_id_for(channel: str, transaction_id: str) -> str:
    """Deterministic id, so a replay computes the same id: P + channel code + digest."""
    digest = hashlib.sha256(f"{channel}\x00{transaction_id}".encode()).hexdigest()[:24]
    return f"P{CHANNELS.index(channel):02d}{digest}"


# -- orders -------------------------------------------------------------------------------------


def create_order(session: Session, *, account_id: str, amount: int, channel: str, clock: Clock,
                 ttl: timedelta = ORDER_TTL) -> PaymentOrder:
    """A payment order (out_trade_no) to hand to Alipay, WeChat Pay or the app."""
    if channel not in ORDER_CHANNELS:
        raise ValidationError(f"orders are for {', '.join(ORDER_CHANNELS)}, not {channel!r}")
    if amount <= 0:
        raise ValidationError(f"order amount must be positive, got {amount} fen")
    if session.get(Account, account_id) is None:
        raise NotFoundError(f"account {account_id} does not exist")
    now = clock.now()
    order = PaymentOrder(order_no=new_order_no(now),
                         account_id=account_id, channel=channel, amount=amount, status="open",
                         created_at=now, expires_at=now + ttl)
    session.add(order)
    session.flush()
    return order


def close_expired_orders(session: Session, *, clock: Clock) -> int:
    """Close open orders past their expiry; a notification for a closed order is refused."""
    res = session.execute(update(PaymentOrder)
                          .where(PaymentOrder.status == "open",
                                 PaymentOrder.expires_at < clock.now())
                          .values(status="closed"))
    return int(getattr(res, "rowcount", 0) or 0)


# -- posting ------------------------------------------------------------------------------------


def check_payment(payment: ChannelPayment) -> None:
    """The refusals a payment earns on its own, before any row is read."""
    if payment.amount <= 0:
        raise PaymentRefused("bad_amount", f"payment amount must be positive, got {payment.amount}")
    if payment.channel not in CHANNELS:
        raise PaymentRefused("bad_channel", f"unknown channel {payment.channel!r}")


def check_against_order(payment: ChannelPayment, order: Any) -> None:
    """The payment must match its order's channel, amount and (when named) account. ``order`` is a
    row with order_no, account_id, channel and amount (also used by ``payments.fastpath``)."""
    if order.channel != payment.channel:
        raise PaymentRefused("wrong_channel", f"order {order.order_no} is for {order.channel}, "
                                              f"not {payment.channel}")
    if order.amount != payment.amount:
        raise PaymentRefused("amount_mismatch",
                             f"order {order.order_no} is for {order.amount} fen, the channel "
                             f"reports {payment.amount} fen")
    if payment.account_id and payment.account_id != order.account_id:
        raise PaymentRefused("account_mismatch", f"order {order.order_no} is for account "
                                                 f"{order.account_id}, not {payment.account_id}")


def check_replay(payment: ChannelPayment, amount: int, account_id: str, target_account: str) -> None:
    """A second delivery of a posted transaction must say the same thing as the first."""
    if amount != payment.amount or account_id != target_account:
        raise PaymentRefused(
            "conflicting_duplicate",
            f"{payment.channel} transaction {payment.transaction_id} is already posted as "
            f"{amount} fen to {account_id}")


def check_order_open(order_no: str, status: str, transaction_id: str) -> None:
    """Only an open order takes a (first) payment."""
    if status == "closed":
        raise PaymentRefused("closed_order", f"order {order_no} is closed")
    if status == "paid":
        raise PaymentRefused("order_already_paid",
                             f"order {order_no} was already paid by another "
                             f"transaction; {transaction_id} needs a refund")


def _target(session: Session, payment: ChannelPayment) -> tuple[str, str, Any]:
    """(account, customer, order row or None) the money is for, checked against the order. The
    order and account rows are locked in one round trip (PostgreSQL), so concurrent payments for
    one account are allocated one after the other."""
    check_payment(payment)
    if payment.order_no:
        order = session.execute(
            select(PaymentOrder.order_no, PaymentOrder.account_id, PaymentOrder.channel,
                   PaymentOrder.amount, PaymentOrder.status, Account.customer_id)
            .join(Account, Account.account_id == PaymentOrder.account_id)
            .where(PaymentOrder.order_no == payment.order_no).with_for_update()).first()
        if order is None:
            raise PaymentRefused("unknown_order", f"no payment order {payment.order_no}")
        check_against_order(payment, order)
        return order.account_id, order.customer_id, order
    if not payment.account_id:
        raise PaymentRefused("no_account", "the payment names neither an order nor an account")
    return payment.account_id, _lock_account(session, payment.account_id).customer_id, None


def _lock_account(session: Session, account_id: str) -> Account:
    acct = session.execute(select(Account).where(Account.account_id == account_id)
                           .with_for_update()).scalar_one_or_none()
    if acct is None:
        raise PaymentRefused("unknown_account", f"account {account_id} does not exist")
    return acct


def _insert_new(session: Session, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (channel, transaction_id) DO NOTHING: True when this row is new.
    One round trip, no savepoint: the unique index decides under concurrency."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(Payment)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(Payment)
    stmt = (stmt.values(**values)
            .on_conflict_do_nothing(index_elements=["channel", "transaction_id"])
            .returning(Payment.payment_id))
    return session.execute(stmt).first() is not None


def post_channel_payment(session: Session, payment: ChannelPayment, *, clock: Clock,
                         source: str, order: str | None = None) -> PostResult:
    """Post a verified payment exactly once, allocate it, and return what is still owed.

    Raises :class:`PaymentRefused` (unknown order or account, amount or account mismatch, closed
    order, a different payment already settled the order, a replay with a different amount);
    the caller's transaction then rolls back whatever this call wrote."""
    account_id, customer_id, pay_order = _target(session, payment)
    pid = payment_id_for(payment.channel, payment.transaction_id)
    now = clock.now()
    created = _insert_new(session, {
        "payment_id": pid, "channel": payment.channel, "transaction_id": payment.transaction_id,
        "order_no": payment.order_no, "account_id": account_id, "customer_id": customer_id,
        "amount": payment.amount, "paid_at": payment.paid_at,
        "business_date": business_date(payment.paid_at), "posted_at": now, "source": source,
        "status": "posted"})
    if not created:
        existing = session.execute(select(Payment.payment_id, Payment.amount, Payment.account_id)
                                   .where(Payment.channel == payment.channel,
                                          Payment.transaction_id == payment.transaction_id)).one()
        check_replay(payment, existing.amount, existing.account_id, account_id)
        return PostResult(existing.payment_id, False, account_id,
                          ledger.balance(session, account_id))
    if pay_order is not None:
        check_order_open(pay_order.order_no, pay_order.status, payment.transaction_id)
        session.execute(update(PaymentOrder).where(PaymentOrder.order_no == pay_order.order_no)
                        .values(status="paid"))
    # the payment row just inserted is unique, so its ledger entry cannot exist yet
    conn = session.connection()
    book = ledger.open_book(conn, [account_id], order=order, now=now, lock=True)
    balance = book.pay(payment_id=pid, account_id=account_id, customer_id=customer_id,
                       amount=payment.amount, paid_at=payment.paid_at,
                       reason=f"{payment.channel} {payment.transaction_id}",
                       payload={"channel": payment.channel, "source": source})
    ledger.write_posting(conn, book.posting, now=now)
    return PostResult(pid, True, account_id, balance)


def reverse_payment(session: Session, payment_id: str, *, reason: str, clock: Clock,
                    status: str = "refunded", order: str | None = None) -> int:
    """Refund or bank return (退款/退票): a ledger reversal and the exact negation of every
    clearing, so the bills it settled are open again (posting core). Returns the reversal's id."""
    if status not in ("refunded", "returned"):
        raise ValidationError(f"status must be refunded or returned, got {status!r}")
    if not reason.strip():
        raise ValidationError("a reversal needs a reason")
    pay = session.execute(select(Payment).where(Payment.payment_id == payment_id)
                          .with_for_update()).scalar_one_or_none()
    if pay is None:
        raise NotFoundError(f"payment {payment_id} does not exist")
    if pay.status != "posted":
        raise ConflictError(f"payment {payment_id} is already {pay.status}")
    _lock_account(session, pay.account_id)
    entry_id = ledger.entry_id_for(session, "payment", payment_id)
    conn = session.connection()
    now = clock.now()
    net = ledger.net_clearings(conn, payment_id)
    book = ledger.open_book(conn, [pay.account_id], order=order, now=now, lock=True,
                            references=[n.item_reference for n in net if n.item_reference])
    book.reverse_payment(payment_id=payment_id, entry_id=entry_id,
                         account_id=pay.account_id, customer_id=pay.customer_id,
                         amount=pay.amount, reason=reason, net=net)
    ledger.write_posting(conn, book.posting, now=now)
    pay.status = status
    session.flush()
    reversal = ledger.reversal_of(session, entry_id)
    assert reversal is not None
    return reversal


# -- bulk posting (bank files, agents, the demo) ------------------------------------------------


def post_payments_frame(conn: Connection, payments: pl.DataFrame, *, clock: Clock,
                        source: str, order: str | None = None) -> int:
    """Post many payments that name their account (no order) in the caller's transaction:
    checked and written as columns, each planned by the one posting core (in the order the
    customers paid) for its ledger entry, clearings, open items and event. Columns: channel, transaction_id,
    account_id, amount (fen > 0), paid_at (UTC). Rows whose (channel, transaction id) is already
    posted are skipped (returned count excludes them). Unknown accounts raise ValidationError."""
    import polars as pl

    from dianfei.db.bulk import write_frame

    if payments.height == 0:
        return 0
    if payments.filter(pl.col("amount") <= 0).height:
        raise ValidationError("every payment amount must be positive")
    now = clock.now().replace(tzinfo=None)
    ids = [payment_id_for(c, t) for c, t in zip(payments["channel"].to_list(),
                                                payments["transaction_id"].to_list(), strict=True)]
    frame = payments.with_columns(pl.Series("payment_id", ids, dtype=pl.String))
    if frame["payment_id"].n_unique() != frame.height:
        raise ValidationError("the same channel transaction appears twice in one batch")
    accounts = sorted(set(frame["account_id"].to_list()))
    known = _known_accounts(conn, accounts)
    unknown = [a for a in accounts if a not in known]
    if unknown:
        raise ValidationError(f"unknown accounts: {', '.join(unknown[:5])}"
                              f"{' …' if len(unknown) > 5 else ''}")
    posted = _already_posted(conn, ids)
    frame = frame.filter(~pl.col("payment_id").is_in(list(posted)))
    if frame.height == 0:
        return 0
    if getattr(frame.schema["paid_at"], "time_zone", None):
        frame = frame.with_columns(pl.col("paid_at").dt.convert_time_zone("UTC")
                                   .dt.replace_time_zone(None))
    frame = frame.with_columns(
        pl.col("account_id").replace_strict(known, return_dtype=pl.String).alias("customer_id"),
        pl.col("paid_at").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Shanghai")
        .dt.date().alias("business_date"))
    write_frame(conn, "payments", frame.select(
        "payment_id", "channel", "transaction_id", pl.lit(None, pl.String).alias("order_no"),
        "account_id", "customer_id", "amount", "paid_at", "business_date",
        pl.lit(now).alias("posted_at"), pl.lit(source).alias("source"),
        pl.lit("posted").alias("status")))
    # one posting core: each payment through the Book, in the order the customers paid
    book = ledger.open_book(conn, accounts, order=order, now=clock.now(), lock=True)
    paid = frame.sort("paid_at", "payment_id").select(
        "payment_id", "account_id", "customer_id", "amount", "channel", "transaction_id",
        pl.col("paid_at").dt.replace_time_zone("UTC"))
    for pid, acct, cust, fen, channel, txn, paid_at in paid.iter_rows():
        book.pay(payment_id=pid, account_id=acct, customer_id=cust, amount=fen, paid_at=paid_at,
                 reason=f"{channel} {txn}", payload={"channel": channel, "source": source})
    ledger.write_posting(conn, book.posting, now=clock.now())
    return frame.height


def _known_accounts(conn: Connection, accounts: Sequence[str]) -> dict[str, str]:
    member, params = any_of(conn, "account_id", "ids", accounts)
    return {str(a): str(c) for a, c in conn.execute(text(
        f"SELECT account_id, customer_id FROM accounts WHERE {member}"), params).all()}


def _already_posted(conn: Connection, ids: Sequence[str]) -> set[str]:
    member, params = any_of(conn, "payment_id", "ids", ids)
    return {str(r[0]) for r in conn.execute(text(
        f"SELECT payment_id FROM payments WHERE {member}"), params).all()}


# -- queries ------------------------------------------------------------------------------------


def open_items(conn: Connection | Engine, accounts: Sequence[str] | None = None) -> pl.DataFrame:
    """Open debits per account as the money core keeps them: account_id, customer_id, item_kind
    ('bill'|'late_fee'), reference, bill_id, due_on, amount, open_amount (fen > 0)."""
    import polars as pl

    return ledger.open_items(conn, accounts).filter(pl.col("open_amount") > 0)


def account_payments(engine: Engine, account_id: str) -> pl.DataFrame:
    return repository.account_payments(engine, account_id)


def allocation_rows(engine: Engine, period: str | None = None) -> pl.DataFrame:
    return repository.allocation_rows(engine, period)


def bill_payment_state(engine: Engine, period: str | None = None) -> pl.DataFrame:
    return repository.bill_payment_state(engine, period)


def bill_clearings(engine: Engine, first: str | None = None, last: str | None = None,
                   live_by: date | None = None) -> pl.DataFrame:
    """What reached bills — of periods ``first``..``last`` when given (KPIs, exports), else every
    bill (risk, to know as of any date what each bill had been paid and when) — one row per
    clearing: bill_id, account_id, payment_id, channel (of the payment the money came from,
    credit included), allocated_at, amount (fen; negative rows undo a clearing). Late fees and
    unused credit are not here: only money on bills counts as collected. With ``live_by`` (and
    the periods) only the clearings to live bills that reached them by the end of that business
    day (Asia/Shanghai): the KPIs' channel split."""
    if live_by is not None and (first is None or last is None):
        raise ValueError("bill_clearings(live_by=…) needs the periods too")
    return repository.bill_clearings(engine, first, last, live_by)


def bill_states(engine: Engine, first: str, last: str, as_of: date) -> pl.DataFrame:
    """The paid amount and paid-in-full day of each bill of periods ``first``..``last`` issued
    by ``as_of``, computed by the database (one row per bill, not one per clearing): bill_id,
    account_id, customer_id, period, issued_on, due_on, amount, status, estimated, read_to_at,
    paid (fen: the clearings of :func:`bill_clearings` that reached the bill by the end of
    business day ``as_of``, Asia/Shanghai), paid_in_full_on (the business day its clearings last
    reached its amount — a refund can open a paid bill again — never before its issue date; a
    zero-amount bill on issue; none for a cancelled bill or one not paid in full). Equal to
    ``reporting.kpi.bill_state`` over the same bills and clearings (tests/reporting)."""
    return repository.bill_states(engine, first, last, as_of)


def bill_state_sums(engine: Engine, period: str, as_of: date, past_due: Sequence[int], *,
                    by_days: bool, unpaid_only: bool = False
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`bill_states` of one period summed by the database instead of returned bill by
    bill: the live (not cancelled) bills of ``period`` issued by ``as_of``, in one row: ``n``
    bills, ``billed``, ``paid``, ``unpaid`` (fen, each bill's never below 0), ``actual`` (bills
    not on an estimated read), ``dated`` (unpaid of the bills with a due date) and ``le_i``
    (unpaid of the bills at most ``past_due[i]`` days past due at ``as_of``); and, ``by_days``,
    the histogram of the payment days (days, n: from issue to paid in full at ``as_of``, bills
    of a positive amount paid in full; empty otherwise). What ``dianfei kpi`` without a customer
    ``--by`` reads: money figures, aging, the median payment days and DSO follow exactly. A
    bill's state is the one its open item keeps when it was last cleared by the end of
    ``as_of``, else folded from its clearings (tests/reporting holds the sums equal to
    :func:`bill_states` summed). ``unpaid_only`` (no ``past_due``, not ``by_days``): ``n``,
    ``billed`` and ``unpaid`` alone, cheaper (what DSO needs of the older periods)."""
    return repository.bill_state_sums(engine, period, as_of, past_due, by_days=by_days,
                                      unpaid_only=unpaid_only)


def collected_by_channel(engine: Engine, period: str, as_of: date) -> pl.DataFrame:
    """What reached the period's live (not cancelled) bills by the end of business day
    ``as_of``, per channel of the payment the money came from: channel, collected (fen),
    payments (how many distinct payments) — one GROUP BY in the database."""
    return repository.collected_by_channel(engine, period, as_of)


def payments_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """The payments received on business days ``first``..``last``: payment_id, channel,
    business_date, amount (fen), status (posted, refunded, returned)."""
    return repository.payments_between(engine, first, last)


def refunds_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """Payments reversed (refunded, returned by the bank) on business days ``first``..``last``:
    payment_id, channel, business_date (of the reversal), amount (fen, positive)."""
    import polars as pl

    back = ledger.payment_reversals(engine, first, last)
    if back.height == 0:
        return back.with_columns(pl.lit(None, pl.String).alias("channel")).select(
            "payment_id", "channel", "business_date", "amount")
    channels = repository.channels_of(engine, back["payment_id"].to_list())
    return back.join(channels, on="payment_id", how="left").select(
        "payment_id", "channel", "business_date", "amount")


#: the statement side of a reconciliation report: what the channel says it settled that day
SETTLED_CLASSES = ("matched", "missing_in_ledger", "amount_mismatch")


def reconciliations_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """One row per reconciled channel and day of ``first``..``last``: channel, day,
    settlement_ok, settled (fen: the statement's payments — matched, missing in the ledger,
    amount mismatches — as the stored report counts them)."""
    import json

    import polars as pl

    reports = repository.reports_between(engine, first, last)
    settled = [sum(int(json.loads(f)["totals"][c]["amount"]) for c in SETTLED_CLASSES)
               for f in reports["figures"].to_list()]  # one per channel and day
    return reports.drop("figures").with_columns(pl.Series("settled", settled, dtype=pl.Int64))


def discrepancies_between(engine: Engine, first: date, last: date) -> pl.DataFrame:
    """The reconciliation worklist rows of days ``first``..``last``, open and resolved: id,
    channel, day, kind, statement_amount, ledger_amount, resolved_at."""
    return repository.discrepancies_between(engine, first, last)


def shifts_closed_between(engine: Engine, since: datetime, until: datetime) -> pl.DataFrame:
    """Counter shifts closed in [since, until): shift_id, opening_float, counted_cash,
    expected_cash, difference (fen; 长款 > 0, 短款 < 0)."""
    return repository.shifts_closed_between(engine, since, until)


def check(conn: Connection) -> list[tuple[str, int, str]]:
    """Payment invariants (name, how many broke, an example), run by ``dianfei ledger check``."""
    checks = {
        "payment_allocations_sum_to_amount":
            "SELECT p.payment_id FROM payments p LEFT JOIN (SELECT payment_id, SUM(amount) s "
            "FROM payment_allocations GROUP BY payment_id) a ON a.payment_id = p.payment_id "
            "WHERE p.status = 'posted' AND COALESCE(a.s, 0) <> p.amount",
        "reversed_payment_fully_unallocated":
            "SELECT p.payment_id FROM payments p JOIN payment_allocations a "
            "ON a.payment_id = p.payment_id WHERE p.status <> 'posted' GROUP BY p.payment_id "
            "HAVING SUM(a.amount) <> 0",
        "payment_has_one_ledger_entry":
            "SELECT p.payment_id FROM payments p LEFT JOIN ledger_entries e ON e.kind = 'payment' "
            "AND e.reference = p.payment_id WHERE e.entry_id IS NULL OR e.amount <> -p.amount",
        "item_not_overallocated":
            "SELECT e.reference FROM ledger_entries e JOIN (SELECT item_reference, SUM(amount) s "
            "FROM payment_allocations GROUP BY item_reference) a ON a.item_reference = e.reference "
            "LEFT JOIN ledger_entries r ON r.reverses_entry_id = e.entry_id "
            "WHERE e.kind IN ('bill', 'late_fee') AND a.s > e.amount + COALESCE(r.amount, 0)",
        "credit_not_negative":
            "SELECT payment_id FROM payment_allocations WHERE allocated_to = 'credit' "
            "GROUP BY payment_id HAVING SUM(amount) < 0",
    }
    broken: list[tuple[str, int, str]] = []
    for name, sql in checks.items():
        n = int(conn.execute(text(f"SELECT COUNT(*) FROM ({sql}) q")).scalar_one())
        if n:
            example = conn.execute(text(sql + " LIMIT 1")).scalar_one()
            broken.append((name, n, str(example)))
    return broken


def order_summary(order: PaymentOrder) -> Mapping[str, Any]:
    from dianfei.core.money import fmt_yuan

    return {"order_no": order.order_no, "account": order.account_id, "channel": order.channel,
            "amount": fmt_yuan(order.amount), "status": order.status,
            "expires_at": order.expires_at.isoformat()}


def payment_summary(r: Mapping[str, Any]) -> dict[str, Any]:
    """One posted payment as the API and ``pay list`` print it (yuan strings, +08:00 instants)."""
    from dianfei.core.clock import BUSINESS_TZ
    from dianfei.core.money import fmt_yuan

    return {"payment_id": r["payment_id"], "channel": r["channel"],
            "transaction_id": r["transaction_id"], "order_no": r["order_no"],
            "amount": fmt_yuan(int(r["amount"])),
            "paid_at": r["paid_at"].astimezone(BUSINESS_TZ).isoformat(),
            "posted_at": r["posted_at"].astimezone(BUSINESS_TZ).isoformat(),
            "source": r["source"], "status": r["status"]}


def paid_since(engine: Engine, starts: pl.DataFrame) -> pl.DataFrame:
    """``starts`` (account_id, since: an instant) with ``paid``: what the account's posted
    payments (not refunded or returned) since then add up to — by time, never by a position on
    ids (ids commit out of order on PostgreSQL). A few set-based reads, not one per account."""
    import polars as pl

    if starts.height == 0:
        return starts.with_columns(pl.lit(0, pl.Int64).alias("paid"))
    pays = repository.posted_since(engine, starts["account_id"].to_list(), starts["since"].min())
    paid = (starts.select("account_id", "since").join(pays, on="account_id")
            .filter(pl.col("posted_at") >= pl.col("since"))
            .group_by("account_id", "since").agg(pl.col("amount").sum().cast(pl.Int64).alias("paid")))
    return (starts.join(paid, on=["account_id", "since"], how="left")
            .with_columns(pl.col("paid").fill_null(0)))


def import_payments(db: Database, path: Path, *, clock: Clock, encoding: str = "utf-8",
                    chunk_bytes: int = 32 << 20) -> IngestResult:
    """The history import (``dianfei import payments``): see payments.history. Imported here
    when called — it brings the file import machinery (metering's, Polars) that the commands
    reading payments, such as ``ledger check``, do not need."""
    from dianfei.payments.history import import_payments as run

    return run(db, path, clock=clock, encoding=encoding, chunk_bytes=chunk_bytes)


def operational_metrics(conn: Connection) -> list[Metric]:
    """``/metrics``: payments posted (count and fen) by channel; the inbox by verdict."""
    from sqlalchemy import text

    from dianfei.core.metrics import grouped

    paid = conn.execute(text("SELECT channel, COUNT(*), COALESCE(SUM(amount), 0) FROM payments "
                             "GROUP BY channel")).all()
    inbox = conn.execute(text("SELECT verdict, COUNT(*) FROM payment_inbox GROUP BY verdict")).all()
    return [grouped("dianfei_payments_posted_total", "payments posted, by channel", "counter",
                    "channel", [(c, n) for c, n, _ in paid]),
            grouped("dianfei_payments_posted_fen_total", "fen posted, by channel", "counter",
                    "channel", [(c, a) for c, _, a in paid]),
            grouped("dianfei_payment_inbox", "channel notifications, by verdict", "gauge",
                    "verdict", inbox)]
