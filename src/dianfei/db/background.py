"""Reads on the second core: a read submitted here runs on a thread of its own, on a connection
of its own, while the caller goes on with work that does not change what the read reads.

SQLite (``sqlite3_step``), the PostgreSQL driver and Polars release the interpreter while they
work, so a read and the caller's own statements overlap on a two-core machine. On an in-memory
SQLite database (one connection, which another thread cannot share) the read runs at once,
inline: the same results, one after the other."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Engine

T = TypeVar("T")


class Background:
    """``submit(fn, *args)`` → a future of ``(result, seconds)``; ``close()`` waits for what is
    running (an error of a read is raised by its ``result()``, never dropped)."""

    def __init__(self, engine: Engine, name: str) -> None:
        inline = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
        self._pool = None if inline else ThreadPoolExecutor(max_workers=1,
                                                             thread_name_prefix=name)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[tuple[T, float]]:
        if self._pool is not None:
            return self._pool.submit(_timed, fn, *args)
        done: Future[tuple[T, float]] = Future()
        try:
            done.set_result(_timed(fn, *args))
        except BaseException as exc:  # handed to the caller by result(), as the pool would
            done.set_exception(exc)
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    # the read's own seconds (the caller's wait for it is another figure)
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t
