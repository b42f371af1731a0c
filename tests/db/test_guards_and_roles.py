"""The database guards the book of record by itself, and on PostgreSQL the application's own
role cannot take the guards away: it does not own the tables (db/guards.py, db/roles.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from dianfei.db.guards import missing_guards
from dianfei.ledger import service as ledger
from dianfei.payments import counter
from dianfei.payments import service as payments
from tests.conftest import backend
from tests.factories import Person, load_people

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))


def _paid(db: Database) -> str:
    load_people(db, [Person("C1")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=5000, reference="C1-202602-1", due_on=date(2026, 3, 18))
        shift = counter.open_shift(s, cashier="cashier-1", opening_float=0, clock=CLOCK)
        _, res = counter.take_payment(s, shift_id=shift, account_id="C1", amount=5000, method="cash",
                                      clock=CLOCK)
        return res.payment_id


def _refused(db: Database, sql: str) -> str:
    with pytest.raises(Exception) as info, db.engine.begin() as conn:
        conn.execute(text(sql))
    return str(info.value)


def test_payments_and_clearings_cannot_be_edited_or_deleted(db: Database) -> None:
    pid = _paid(db)
    assert missing_guards(db.engine.connect()) == []
    assert "append-only" in _refused(db, "UPDATE payment_allocations SET amount = 1")
    assert "append-only" in _refused(db, "DELETE FROM payment_allocations")
    assert "never deleted" in _refused(db, "DELETE FROM payments")
    assert "only changes" in _refused(db, "UPDATE payments SET amount = 1")
    assert "only changes" in _refused(db, "UPDATE payments SET status = 'refunded', amount = 1")
    # the one change the refund path makes still works (and only once)
    with db.session() as s:
        payments.reverse_payment(s, pid, reason="test", clock=CLOCK)
    assert "only changes" in _refused(db, "UPDATE payments SET status = 'posted'")
    with db.engine.connect() as conn:
        assert missing_guards(conn) == []


def test_ledger_check_names_a_missing_guard(db: Database) -> None:
    with db.engine.begin() as conn:
        if backend() == "postgresql":
            conn.execute(text("ALTER TABLE payment_allocations "
                              "DISABLE TRIGGER payment_allocations_append_only"))
        else:
            conn.execute(text("DROP TRIGGER payment_allocations_no_update"))
    with db.engine.connect() as conn:
        broken = [v for v in ledger.check(conn) if "guards" in v.invariant]
    assert len(broken) == 1 and "payment_allocations" in broken[0].example


@pytest.fixture
def runtime_role(db: Database) -> Iterator[str]:
    if backend() != "postgresql":
        pytest.skip("database roles exist on PostgreSQL only")
    role = f"dianfei_rt_{uuid.uuid4().hex[:10]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        yield role
    finally:
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def test_the_runtime_role_runs_the_services_but_cannot_alter_the_book(
        db: Database, runtime_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _paid(db)
    res = CliRunner().invoke(app, ["migrate", "--runtime-role", runtime_role, "--json"])
    assert res.exit_code == 0, res.output
    owner_url = db.engine.url
    runtime_url = owner_url.set(username=runtime_role).render_as_string(hide_password=False)
    monkeypatch.setenv("DIANFEI_DATABASE_URL", runtime_url)
    rt = open_database(load_settings())  # at the newest revision: starts without DDL rights
    try:
        with rt.session() as s:  # the services work
            ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                              amount=700, reference="C1-202603-1", due_on=date(2026, 4, 18))
        for sql, why in (
                ("UPDATE ledger_entries SET amount = 1", "permission denied"),
                ("TRUNCATE ledger_entries", "permission denied"),
                ("ALTER TABLE ledger_entries DISABLE TRIGGER ALL", "must be owner"),
                ("DROP TRIGGER ledger_entries_append_only ON ledger_entries", "must be owner"),
                ("TRUNCATE payments", "permission denied"),
                ("DELETE FROM payment_allocations", "permission denied"),
                ("DROP TABLE open_items", "must be owner")):
            assert why in _refused(rt, sql), sql
        with rt.engine.connect() as conn:
            assert missing_guards(conn) == []
    finally:
        rt.engine.dispose()


def test_the_runtime_role_refuses_to_start_on_an_older_schema(
        db: Database, runtime_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    res = CliRunner().invoke(app, ["migrate", "--runtime-role", runtime_role])
    assert res.exit_code == 0, res.output
    with db.engine.begin() as conn:  # as if this version brought a new revision
        conn.execute(text("UPDATE alembic_version SET version_num = '0011'"))
    runtime_url = db.engine.url.set(username=runtime_role).render_as_string(hide_password=False)
    monkeypatch.setenv("DIANFEI_DATABASE_URL", runtime_url)
    res = CliRunner().invoke(app, ["ledger", "check"])
    assert res.exit_code != 0
    assert "run `dianfei migrate`" in res.stderr and "Traceback" not in res.output
