"""The SQLite pool hands each thread back the connection it used last (db/affine_pool.py): a
connection keeps its page cache only while no other connection commits, so the thread that
writes must keep writing through one connection, whatever the reads on the side took."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from dianfei.db.affine_pool import ThreadAffinePool
from dianfei.db.engine import make_engine


def _raw(conn: object) -> int:
    return id(conn.connection.dbapi_connection)  # type: ignore[attr-defined]


def test_the_writer_keeps_its_connection_after_a_read_on_the_side(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    assert isinstance(engine.pool, ThreadAffinePool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        mine = _raw(conn)
    side: list[int] = []
    taken, release = threading.Event(), threading.Event()

    def read_on_the_side() -> None:
        with engine.connect() as other:
            side.append(_raw(other))
            other.execute(text("SELECT count(*) FROM t")).all()
            taken.set()
            release.wait(10)
        # returned after the writer's connection: the plain LIFO pool would hand it out next

    reader = threading.Thread(target=read_on_the_side)
    with engine.begin() as conn:  # the writer holds its connection while the side read starts
        reader.start()
        assert taken.wait(10)
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert _raw(conn) == mine
    release.set()
    reader.join(10)
    assert side and side[0] != mine
    for n in range(3):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            assert _raw(conn) == mine
    engine.dispose()


def test_a_read_nested_in_a_transaction_gets_another_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.begin() as outer:
        outer.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as inner:  # committed state only: the insert is not seen
            assert _raw(inner) != _raw(outer)
            assert inner.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        first = _raw(outer)
    with engine.connect() as again:
        assert _raw(again) == first
        assert again.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    engine.dispose()
