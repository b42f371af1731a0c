"""The audit chain: every ledger write, bill run, payment, refund, waiver, supply change and
customer import leaves a record in its own transaction; ``audit verify`` names the first edited,
inserted or deleted record, and a ledger row edited behind the chain (on SQLite and PostgreSQL).

Tampering needs the append-only triggers out of the way first, as an attacker with the
database owner's rights would do; the tests drop them the same way."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from dianfei.audit import service as audit
from dianfei.audit.ledger_digest import digest_frame, digest_rows
from dianfei.billing.service import cancel_bill, run_bill_run
from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from tests.factories import Person, Reads, load_people, month_end

JAN = Period(2026, 1)
OPEN = month_end(Period(2025, 12))
ISSUE = FixedClock(datetime(2026, 2, 3, 9, 0, tzinfo=BUSINESS_TZ))


def unguard(conn: Connection) -> None:
    """Drop the append-only triggers (what a tamperer with DDL rights does first)."""
    if conn.dialect.name == "sqlite":
        for name in ("audit_records_no_update", "audit_records_no_delete",
                     "ledger_entries_no_update", "ledger_entries_no_delete"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    else:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records")
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")


def pay(db: Database, account: str, txn: str, fen: int, day: date) -> str:
    at = datetime(day.year, day.month, day.day, 10, 0, tzinfo=BUSINESS_TZ)
    with db.session() as s:
        return payments.post_channel_payment(
            s, ChannelPayment(channel="counter", transaction_id=txn, amount=fen, paid_at=at,
                              order_no=None, account_id=account),
            clock=FixedClock(at), source="test").payment_id


@pytest.fixture
def utility(db: Database) -> Database:
    """Three customers billed for January; C1 paid, C2's payment refunded, C3's bill cancelled."""
    load_people(db, [Person("C1"), Person("C2"), Person("C3")])
    reads = Reads()
    for c in ("C1", "C2", "C3"):
        reads.add(c, OPEN, 1000_00).add(c, month_end(JAN), 1150_00)
    reads.store(db)
    run_bill_run(db, JAN, ISSUE)
    pay(db, "C1", "T1", 8070, date(2026, 2, 10))
    pid = pay(db, "C2", "T2", 5000, date(2026, 2, 11))
    with db.session() as s:
        payments.reverse_payment(s, pid, reason="paid twice", clock=ISSUE)
    with db.session() as s:
        cancel_bill(s, ISSUE, "C3-202601-1", "meter misread")
    return db


def actions(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT action FROM audit_records ORDER BY seq"))]


def seq_of(db: Database, action: str, nth: int = 0) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT seq FROM audit_records WHERE action = :a "
                                     "ORDER BY seq"), {"a": action}).all()[nth][0])


def verify_cli(db: Database) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["audit", "verify"])
    return res.exit_code, res.output


def test_every_change_leaves_a_record_and_the_chain_verifies(utility: Database) -> None:
    assert actions(utility) == [
        "customers.added", "meters.added", "bill_run.chunk", "ledger.posting", "ledger.posting",
        "ledger.posting", "ledger.posting", "bill.cancelled"]
    report = audit.verify(utility.engine)
    assert report.intact, report.findings
    # 3 bills, 2 payments, 1 refund reversal, 1 cancelled bill's reversal
    assert (report.records, report.ledger_batches, report.ledger_rows) == (8, 5, 7)
    assert verify_cli(utility)[0] == 0
    with utility.engine.connect() as conn:
        # every ledger row carries the batch of a record
        assert conn.execute(text("SELECT count(*) FROM ledger_entries WHERE audit_batch IS NULL "
                                 "OR audit_batch NOT IN (SELECT ledger_batch FROM audit_records "
                                 "WHERE ledger_batch IS NOT NULL)")).scalar_one() == 0


def test_a_record_and_its_change_are_one_transaction(utility: Database) -> None:
    # given a posting that fails after its record was appended (a duplicate payment entry)
    before = actions(utility)
    with pytest.raises(Exception), utility.session() as s:  # noqa: B017
        audit.record(s.connection(), "test.change", "C1", {"x": 1})
        raise RuntimeError("the change fails")
    # then neither the change nor its record is there, and the chain still verifies
    assert actions(utility) == before
    assert audit.verify(utility.engine).intact


def test_records_written_together_chain_as_one_by_one(utility: Database) -> None:
    # given single records around a batch of three (the day's supply changes are written so)
    before = len(actions(utility))
    with utility.session() as s:
        conn = s.connection()
        audit.record(conn, "test.one", "C1", {"n": 1})
        audit.record_many(conn, [("supply.suspended", "C2", {"case_id": 7}),
                                 ("supply.suspended", "C3", {"case_id": 8, "zh": "欠费停电"}),
                                 ("supply.reconnected", "C1", {"case_id": 6})])
        audit.record_many(conn, [])
        audit.record(conn, "test.two", "C3", {"n": 2})
    # then each is its own record, in order, and the chain verifies (the head follows the last)
    assert actions(utility)[before:] == ["test.one", "supply.suspended", "supply.suspended",
                                         "supply.reconnected", "test.two"]
    report = audit.verify(utility.engine)
    assert report.intact and report.records == before + 5
    with utility.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM audit_records ORDER BY seq"))]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # and an edit inside the batch is named
    target = seq_of(utility, "supply.suspended", 1)
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE audit_records SET subject = 'C9' WHERE seq = :s"), {"s": target})
    assert audit.verify(utility.engine).first.seq == target  # type: ignore[union-attr]


def test_an_edited_record_is_named(utility: Database) -> None:
    target = seq_of(utility, "bill.cancelled")
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE audit_records SET body = replace(body, 'meter misread', "
                          "'customer request') WHERE seq = :s"), {"s": target})
    code, out = verify_cli(utility)
    assert code != 0 and f"record {target}:" in out and "edited" in out
    assert audit.verify(utility.engine).first.seq == target  # type: ignore[union-attr]


def test_an_edited_column_that_the_body_does_not_cover_is_named(utility: Database) -> None:
    target = seq_of(utility, "ledger.posting", 1)
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE audit_records SET actor = 'someone else' WHERE seq = :s"),
                     {"s": target})
    first = audit.verify(utility.engine).first
    assert first is not None and first.seq == target and "edited" in first.problem


def test_a_deleted_record_is_named(utility: Database) -> None:
    target = seq_of(utility, "ledger.posting", 1)
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": target})
    code, out = verify_cli(utility)
    assert code != 0 and f"record {target} is missing (deleted)" in out


def test_the_last_record_deleted_is_named(utility: Database) -> None:
    last = seq_of(utility, "bill.cancelled")
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("DELETE FROM audit_records WHERE seq = :s"), {"s": last})
    first = audit.verify(utility.engine).first
    assert first is not None and first.seq == last and "deleted" in first.problem


def test_an_inserted_record_is_named(utility: Database) -> None:
    # given someone moves the records after 3 one place on and slips a record in at 4
    with utility.engine.begin() as conn:
        unguard(conn)
        n = int(conn.execute(text("SELECT max(seq) FROM audit_records")).scalar_one())
        for seq in range(n, 3, -1):
            conn.execute(text("UPDATE audit_records SET seq = seq + 1 WHERE seq = :s"),
                         {"s": seq})
        row = conn.execute(text("SELECT body, hash FROM audit_records WHERE seq = 3")).one()
        forged = row.body.replace("ledger.posting", "ledger.forged")
        conn.execute(text(
            "INSERT INTO audit_records (seq, recorded_at, actor, action, subject, body, "
            "prev_hash, hash) VALUES (4, :at, 'system', 'ledger.forged', '', :b, :p, :h)"),
            {"at": datetime(2026, 1, 1), "b": forged, "p": row.hash,
             "h": audit.record_hash(4, row.hash, forged)})
        conn.execute(text("UPDATE audit_head SET seq = seq + 1"))
    # then record 4 (the inserted one, whose hash is right) is flagged: what follows it was
    # chained to the old record 3 and the forged body's columns lie
    code, out = verify_cli(utility)
    assert "record 4:" in out
    assert code != 0
    first = audit.verify(utility.engine).first
    assert first is not None and first.seq == 4


def test_an_inserted_record_after_the_head_is_named(utility: Database) -> None:
    with utility.engine.begin() as conn:
        unguard(conn)
        seq, h = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
        at = datetime.now(UTC)
        body = audit.body_of(at=at, actor="system", action="user.added", subject="mallory",
                             detail={})
        conn.execute(text(
            "INSERT INTO audit_records (seq, recorded_at, actor, action, subject, body, "
            "prev_hash, hash) VALUES (:s, :at, 'system', 'user.added', 'mallory', :b, :p, :h)"),
            {"s": seq + 1, "at": at.replace(tzinfo=None), "b": body, "p": h,
             "h": audit.record_hash(seq + 1, h, body)})
    first = audit.verify(utility.engine).first
    assert first is not None and first.seq == seq + 1 and "inserted" in first.problem


def test_a_ledger_row_edited_after_its_batch_was_recorded_is_found(utility: Database) -> None:
    target = seq_of(utility, "bill_run.chunk")
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE ledger_entries SET amount = amount - 100 "
                          "WHERE reference = 'C2-202601-1'"))
    code, out = verify_cli(utility)
    assert code != 0 and f"record {target}:" in out and "ledger rows were edited" in out


def test_a_ledger_row_slipped_in_or_removed_is_found(utility: Database) -> None:
    with utility.engine.begin() as conn:
        unguard(conn)
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, customer_id, kind, amount, posted_at, "
            "business_date, reference) VALUES ('C1', 'C1', 'adjustment', -500, :at, :d, 'X1')"),
            {"at": datetime(2026, 2, 1), "d": date(2026, 2, 1)})
    first = audit.verify(utility.engine).first
    assert first is not None and "behind the audit chain" in first.problem
    with utility.engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries WHERE reference = 'X1'"))
        conn.execute(text("DELETE FROM ledger_entries WHERE kind = 'payment' "
                          "AND account_id = 'C1'"))
    first = audit.verify(utility.engine).first
    assert first is not None and "deleted" in first.problem


def test_ledger_rows_from_before_the_chain_are_adopted_once(db: Database) -> None:
    # given ledger rows written without a batch (as before this version)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ledger_entries (account_id, customer_id, kind, amount, posted_at, "
            "business_date, reference) VALUES ('A', 'A', 'adjustment', 500, :at, :d, 'OLD')"),
            {"at": datetime(2025, 1, 1, 8, 0), "d": date(2025, 1, 1)})
    assert not audit.verify(db.engine).intact
    # when the upgrade adopts them, the chain verifies; adopting again adds nothing
    with db.engine.begin() as conn:
        assert audit.adopt_ledger(conn) == 1
        assert audit.adopt_ledger(conn) == 0
    assert audit.verify(db.engine).intact
    # and a change to an adopted row is still found
    with db.engine.begin() as conn:
        unguard(conn)
        conn.execute(text("UPDATE ledger_entries SET amount = 400 WHERE reference = 'OLD'"))
    assert "edited" in str(audit.verify(db.engine).first)


def test_concurrent_appends_never_fork_the_chain(db: Database) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                with db.engine.begin() as conn:
                    audit.record(conn, "test.concurrent", f"w{n}", {"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = audit.verify(db.engine)
    assert report.intact and report.records == 60 and report.head_seq == 60


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "kind": st.sampled_from(["bill", "payment", "late_fee", "reversal"]),
    "reference": _text, "account_id": _text, "customer_id": _text,
    "amount": st.integers(-10**12, 10**12),
    "posted_at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.just(UTC)),
    "business_date": st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    "due_on": st.none() | st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    "reverses_entry_id": st.none() | st.integers(1, 10**12),
    "reason": st.none() | _text}), min_size=1, max_size=8))
def test_the_row_and_column_digests_agree(rows: list[dict[str, object]]) -> None:
    frame = pl.DataFrame(rows, schema={
        "kind": pl.String, "reference": pl.String, "account_id": pl.String,
        "customer_id": pl.String, "amount": pl.Int64, "posted_at": pl.Datetime("us", "UTC"),
        "business_date": pl.Date, "due_on": pl.Date, "reverses_entry_id": pl.Int64,
        "reason": pl.String})
    assert digest_rows(rows) == digest_frame(frame)
