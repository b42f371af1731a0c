"""Migration 0047: on PostgreSQL the tables the collections day rewrites in place leave room on
each page for the new row versions (fill factor), and go back to the default; on SQLite it
changes nothing. Up, down and up again on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import fresh_database_env
from tests.db.test_migration_0042 import step

pytestmark = pytest.mark.db


def _fill(engine: object) -> dict[str, str | None]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(text(
            "SELECT relname, array_to_string(reloptions, ',') FROM pg_class "
            "WHERE relname IN ('late_fee_accruals', 'credit_ratings') AND relkind = 'r'")).all()
    return {str(r[0]): r[1] for r in rows}


def test_0047_sets_the_fill_factor_on_postgresql_and_goes_back(tmp_path: Path) -> None:
    with fresh_database_env(tmp_path) as env:
        engine = create_engine(env["DIANFEI_DATABASE_URL"])
        try:
            step(engine, "0046")
            pg = engine.dialect.name == "postgresql"
            if pg:
                assert _fill(engine) == {"late_fee_accruals": None, "credit_ratings": None}
            step(engine, "0047")
            if pg:
                assert _fill(engine) == {"late_fee_accruals": "fillfactor=70",
                                         "credit_ratings": "fillfactor=80"}
            step(engine, "0046", down=True)
            if pg:
                assert _fill(engine) == {"late_fee_accruals": None, "credit_ratings": None}
            step(engine, "0047")
            with engine.connect() as conn:  # the tables are there and usable on both
                assert conn.execute(text("SELECT count(*) FROM late_fee_accruals")).scalar() == 0
        finally:
            engine.dispose()
