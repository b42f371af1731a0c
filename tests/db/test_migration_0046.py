"""Migration 0046 (supply_interruptions) on both databases: the stop cases carried out before it
become spans (reconnected ones closed, a case never carried out none), down and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import fresh_database_env
from tests.db.test_migration_0042 import step

pytestmark = pytest.mark.db

CASE = ("INSERT INTO stop_cases (case_id, account_id, customer_id, customer_class, bill_id, mode, "
        "status, opened_at, notice_key, approval_required, suspended_at, reconnected_at) VALUES "
        "(:id, 'A1', 'C1', 'residential', 'A1-202601-1', :mode, :status, "
        "'2026-02-01 01:00:00.000000', :nk, :f, :s, :r)")


def test_0046_copies_the_stops_carried_out_and_goes_back(tmp_path: Path) -> None:
    with fresh_database_env(tmp_path) as env:
        engine = create_engine(env["DIANFEI_DATABASE_URL"])
        try:
            step(engine, "0045")
            with engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO customers (customer_id, name, customer_class, low_income, "
                    "protected, payment_mode, opened_on) VALUES ('C1', '张三', 'residential', "
                    ":f, :f, 'postpaid', '2020-01-01')"), {"f": False})
                conn.execute(text("INSERT INTO accounts (account_id, customer_id, opened_on) "
                                  "VALUES ('A1', 'C1', '2020-01-01')"))
                for case in (
                        # stopped and reconnected; stopped by prepayment, still off; never carried out
                        {"id": 1, "mode": "postpaid", "status": "closed",
                         "s": "2026-02-10 01:00:00.000000", "r": "2026-02-12 01:00:00.000000"},
                        {"id": 2, "mode": "prepaid", "status": "suspended",
                         "s": "2026-03-05 02:00:00.000000", "r": None},
                        {"id": 3, "mode": "postpaid", "status": "closed", "s": None, "r": None}):
                    conn.execute(text(CASE), {**case, "nk": f"n{case['id']}", "f": False})
            step(engine, "0046")
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT key, account_id, reason, off_at, on_at FROM supply_interruptions "
                    "ORDER BY key")).all()
            assert [(r[0], r[1], r[2], str(r[3])[:19], None if r[4] is None else str(r[4])[:19])
                    for r in rows] == [
                ("stop_case:1", "A1", "arrears", "2026-02-10 01:00:00", "2026-02-12 01:00:00"),
                ("stop_case:2", "A1", "prepayment", "2026-03-05 02:00:00", None)]
            step(engine, "0045", down=True)
            assert "supply_interruptions" not in inspect(engine).get_table_names()
            step(engine, "0046")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM supply_interruptions")).scalar() == 2
        finally:
            engine.dispose()
