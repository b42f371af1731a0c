"""The ADBC connections behind read_frame on PostgreSQL: a connection in use is never closed by
another thread (the old per-thread cache evicted the oldest, which could be in use), the idle
ones are capped, a failed one is not reused, and disposing the engine closes them."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from dianfei.db import frames
from dianfei.db.engine import Database
from tests.conftest import backend

pytestmark = [pytest.mark.db,
              pytest.mark.skipif(backend() != "postgresql", reason="ADBC is used on PostgreSQL")]


def test_many_threads_read_at_once_without_losing_a_connection(db: Database) -> None:
    uri = frames._adbc_uri(db.engine)
    assert uri is not None
    pool = frames.adbc_pool(db.engine, uri)
    pool.max_idle = 1  # the tightest cap: every return but one closes a connection
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def reader(n: int) -> None:
        start.wait()
        try:
            for i in range(25):
                # pg_sleep keeps the connection busy while other threads return theirs
                got = frames.read_frame(db.engine, "SELECT :n AS n, :i AS i, pg_sleep(0.001) AS s",
                                        {"n": n, "i": i})
                assert got["n"].to_list() == [n] and got["i"].to_list() == [i]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pool.idle <= 1


def test_a_failed_connection_is_replaced_and_dispose_closes_the_idle(db: Database) -> None:
    uri = frames._adbc_uri(db.engine)
    assert uri is not None
    frames.read_frame(db.engine, "SELECT 1 AS one")
    pool = frames.adbc_pool(db.engine, uri)
    assert pool.idle == 1
    # the server drops the idle connection (a restart): the next read reconnects once
    with db.engine.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                       "datname = current_database() AND pid <> pg_backend_pid() "
                       "AND application_name NOT LIKE 'pytest%'"))
    before = pool.connects
    assert frames.read_frame(db.engine, "SELECT 2 AS two")["two"].to_list() == [2]
    assert pool.connects == before + 1 and pool.idle == 1
    db.engine.dispose()
    assert pool.idle == 0
    assert frames.adbc_pool(db.engine, uri) is not pool  # a new pool after the dispose
