"""db.lists.pg_array: a Python list as one PostgreSQL array literal reads back as the same values
(the callback writer, the ledger's items and the event outbox send their columns this way)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.db.lists import pg_array
from tests.conftest import backend

pytestmark = [pytest.mark.db,
              pytest.mark.skipif(backend() != "postgresql", reason="PostgreSQL's array input")]

# any text PostgreSQL can hold (no NUL), quotes, backslashes, braces, commas, "NULL", spaces
TEXTS = st.lists(st.none() | st.text(st.characters(blacklist_characters="\x00",
                                                    blacklist_categories=("Cs",)), max_size=20)
                 | st.sampled_from(['"', "\\", "{", "}", ",", "NULL", " a ", "", "电费"]),
                 max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=TEXTS)
def test_any_text_reads_back_unchanged(db: Database, values: list[str | None]) -> None:
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw.execute("SELECT %s::text[]", (pg_array(values),)).fetchone()[0] == values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ints=st.lists(st.none() | st.integers(-2**63, 2**63 - 1), max_size=8),
       blobs=st.lists(st.none() | st.binary(max_size=16), max_size=6),
       stamps=st.lists(st.none() | st.datetimes(min_value=datetime(1970, 1, 1)), max_size=6),
       days=st.lists(st.none() | st.dates(min_value=date(1970, 1, 1)), max_size=6))
def test_numbers_bytes_instants_and_days_read_back_unchanged(
        db: Database, ints: list[int | None], blobs: list[bytes | None],
        stamps: list[datetime | None], days: list[date | None]) -> None:
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT CAST(:i AS bigint[]), CAST(:b AS bytea[]), "
                                "CAST(:t AS timestamp[]), CAST(:d AS date[])"),
                           {"i": pg_array(ints), "b": pg_array(blobs), "t": pg_array(stamps),
                            "d": pg_array(days)}).one()
    assert list(row) == [ints, blobs, stamps, days]


def test_what_it_refuses() -> None:
    assert pg_array([]) == "{}"
    assert pg_array([True, False, None, Decimal(7)]) == "{t,f,NULL,7}"
    with pytest.raises(ValueError, match="naive"):  # the literal would drop the offset
        pg_array([datetime(2026, 1, 1, tzinfo=UTC)])
    with pytest.raises(TypeError, match="float"):
        pg_array([1.5])
