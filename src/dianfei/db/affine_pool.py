"""A connection pool that hands each thread back the SQLite connection it used last.

Why: SQLite drops a connection's whole page cache — and unmaps its memory-mapped view of the
file — when it begins a read and sees that *another* connection has committed since its last
one (``pagerBeginReadTransaction``: any change of the WAL index resets the pager). A
connection's own commits keep its cache. The plain LIFO pool hands out whichever connection
came back last: after the second core's read (``db.background``) or a read nested in an open
transaction, the main thread's next unit of work takes the *other* connection, reads the
database cold, writes there, and so makes its own connection cold in turn — some fifty
alternations a day in the demo, each paid for in page reads and page faults. Here the main
thread keeps writing and reading through one connection, whose cache stays warm from day to
day; the connections of the reads on the side are the ones that start cold.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.pool import ConnectionPoolEntry, QueuePool


class ThreadAffinePool(QueuePool):
    """A :class:`QueuePool` (LIFO) that first offers a thread the connection it returned last,
    when that one is idle; otherwise the pool's usual choice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("use_lifo", True)
        super().__init__(*args, **kwargs)
        self._last: dict[int, ConnectionPoolEntry] = {}

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        self._last[threading.get_ident()] = record
        super()._do_return_conn(record)

    def _do_get(self) -> ConnectionPoolEntry:
        mine = self._last.get(threading.get_ident())
        if mine is not None:
            queue: Any = self._pool  # sqlalchemy.util.queue.Queue: its deque, lock, conditions
            with queue.mutex:
                if mine in queue.queue:  # idle
                    queue.queue.remove(mine)
                    queue.not_full.notify()
                    return mine
        return super()._do_get()
