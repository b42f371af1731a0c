"""The migrations build exactly the tables, columns and indexes the models declare: a model
changed without its migration (or the reverse) shows up here, not on a user's database."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dianfei.db.engine import Database
from dianfei.db.metadata import Base

pytestmark = pytest.mark.db


def _kind(diff: Any) -> str:
    return str(diff[0][0] if isinstance(diff, list) else diff[0])


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(ctx, Base.metadata)
    # tables/columns/indexes missing or extra on either side; type details are left aside
    # (SQLite reports its own affinities)
    real = [d for d in diffs if _kind(d) in ("add_table", "remove_table", "add_column",
                                             "remove_column", "add_index", "remove_index")]
    assert real == [], "\n".join(map(str, real))
