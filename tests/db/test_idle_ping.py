"""Pooled server connections are pinged before use only after sitting idle (db/engine.py): a
connection the server dropped while it was idle is replaced, not handed to the caller, and a
connection used moments ago is handed out without an extra round trip."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from dianfei.db import engine as engine_module
from dianfei.db.engine import Database
from tests.conftest import backend

pytestmark = [pytest.mark.db,
              pytest.mark.skipif(backend() != "postgresql", reason="server connections only")]



def test_a_connection_dropped_while_idle_is_replaced(db: Database,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with db.engine.connect() as conn:
        first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # the server drops it while it sits in the pool (a restart, a firewall's idle timeout)
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.begin() as other:
        assert other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar()
    outside.dispose()
    monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
    with db.engine.connect() as conn:
        again = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert again != first  # a new connection, and the statement ran on it


def test_a_connection_used_moments_ago_is_not_pinged(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    pings = 0

    def count(*_a: object) -> None:
        nonlocal pings
        pings += 1

    dialect = db.engine.dialect
    original = dialect.do_ping
    dialect.do_ping = lambda c: (count(), original(c))[1]  # type: ignore[method-assign]
    try:
        for _ in range(5):
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
    finally:
        dialect.do_ping = original  # type: ignore[method-assign]
    assert pings == 0
