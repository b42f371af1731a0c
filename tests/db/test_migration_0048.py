"""Migration 0048: the indexes the collections day rewrote whole for nothing go — the second
account-led index of ``collection_events`` (an account's events are read through the
(account_id, type, business_date) one) and the unused grade index of ``credit_ratings`` — and
the repeat defaulters get a partial index; all come back as they were on the way down. Up, down
and up again on both databases; the readers still find their index."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import fresh_database_env
from tests.db.test_migration_0042 import step

pytestmark = pytest.mark.db

GONE = {("collection_events", "ix_collection_events_account"),
        ("credit_ratings", "ix_credit_ratings_grade")}
NEW = {("credit_ratings", "ix_credit_ratings_repeat_defaulters")}


def _indexes(engine: object) -> set[tuple[str, str]]:
    found = inspect(engine)
    return {(t, str(ix["name"])) for t in ("collection_events", "credit_ratings")
            for ix in found.get_indexes(t)}


def _plan(engine: object, sql: str) -> str:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all())


def test_0048_drops_the_indexes_rewritten_for_nothing_and_goes_back(tmp_path: Path) -> None:
    with fresh_database_env(tmp_path) as env:
        engine = create_engine(env["DIANFEI_DATABASE_URL"])
        try:
            step(engine, "0047")
            assert _indexes(engine) >= GONE and not NEW & _indexes(engine)
            step(engine, "0048")
            assert not GONE & _indexes(engine) and _indexes(engine) >= NEW
            assert ("collection_events", "ix_collection_events_account_type") in _indexes(engine)
            step(engine, "0047", down=True)
            assert _indexes(engine) >= GONE and not NEW & _indexes(engine)
            step(engine, "0048")
            assert not GONE & _indexes(engine) and _indexes(engine) >= NEW
            if engine.dialect.name == "sqlite":
                assert "ix_collection_events_account_type" in _plan(
                    engine, "SELECT event_id, type FROM collection_events "
                            "WHERE account_id = 'C1' ORDER BY at, event_id")
                assert "ix_credit_ratings_repeat_defaulters" in _plan(
                    engine, "SELECT account_id FROM credit_ratings WHERE repeat_defaulter")
        finally:
            engine.dispose()
