"""The second core (db/background.py) and the WAL checkpointer (db/checkpoint.py): a read
submitted in the background gives the same result as inline, its error reaches the caller, an
in-memory database reads inline; the checkpointer copies the WAL into the database file while
another connection writes, loses nothing, and a checkpointer that cannot open its database says
so when stopped."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dianfei.db.background import Background
from dianfei.db.checkpoint import Checkpointer, checkpointer_for
from dianfei.db.engine import make_engine


def _count(engine: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def _filled(path: Path, rows: int = 100) -> object:
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)"))
        conn.execute(text("INSERT INTO t (n, pad) VALUES (:n, :p)"),
                     [{"n": i, "p": "x" * 200} for i in range(rows)])
    return engine


def test_a_background_read_is_the_inline_read_on_another_thread(tmp_path: Path) -> None:
    engine = _filled(tmp_path / "d.db")
    seen: list[str] = []

    def read(e: object) -> int:
        seen.append(threading.current_thread().name)
        return _count(e)

    with Background(engine, "test-read") as pool:  # type: ignore[arg-type]
        got, seconds = pool.submit(read, engine).result()
    assert got == 100 and seconds >= 0
    assert seen and seen[0].startswith("test-read")


def test_an_error_in_the_background_reaches_the_caller(tmp_path: Path) -> None:
    engine = _filled(tmp_path / "d.db")

    def broken(_e: object) -> int:
        raise LookupError("no such account")

    with Background(engine, "test-read") as pool:  # type: ignore[arg-type]
        future = pool.submit(broken, engine)
        with pytest.raises(LookupError, match="no such account"):
            future.result()


def test_an_in_memory_database_is_read_inline() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    names: list[str] = []

    def read(e: object) -> int:
        names.append(threading.current_thread().name)
        return _count(e)

    pool = Background(engine, "test-read")
    assert pool.submit(read, engine).result()[0] == 1
    pool.close()
    assert names == [threading.current_thread().name]  # the one connection, on this thread

    def broken(_e: object) -> int:
        raise LookupError("inline too")

    with pytest.raises(LookupError, match="inline too"):
        Background(engine, "test-read").submit(broken, engine).result()


def test_the_checkpointer_copies_the_wal_while_another_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    engine = _filled(path, rows=10)
    ck = checkpointer_for(engine)  # type: ignore[arg-type]
    assert isinstance(ck, Checkpointer)
    ck.interval = 0.01
    with ck:
        for batch in range(40):
            with engine.begin() as conn:  # type: ignore[attr-defined]
                conn.execute(text("INSERT INTO t (n, pad) VALUES (:n, :p)"),
                             [{"n": 1000 + batch * 50 + i, "p": "y" * 500} for i in range(50)])
        # the thread has had its turns (the writer commits forty times meanwhile)
        for _ in range(500):
            if ck.checkpoints >= 3:
                break
            threading.Event().wait(0.01)
    assert ck.checkpoints >= 3
    assert _count(engine) == 10 + 40 * 50
    engine.dispose()  # type: ignore[attr-defined]
    # everything is in the database file: read with the WAL left aside
    plain = sqlite3.connect(path)
    busy, log, copied = plain.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and copied == log
    assert plain.execute("SELECT count(*) FROM t").fetchone()[0] == 2010
    plain.close()


def test_no_checkpointer_for_a_server_or_in_memory_database() -> None:
    assert checkpointer_for(create_engine("sqlite://")) is None
    assert checkpointer_for(create_engine("postgresql+psycopg://u@127.0.0.1:1/x")) is None


def test_a_checkpointer_that_cannot_open_its_database_says_so(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path / "missing-dir" / "d.db", interval=0.01).start()
    with pytest.raises(RuntimeError, match=r"checkpointer of .*d\.db failed"):
        ck.stop()
