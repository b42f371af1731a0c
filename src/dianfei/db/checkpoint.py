"""A background WAL checkpointer for an embedded (SQLite) database in a long-running process.

In WAL mode every commit appends the pages it changed to the ``-wal`` file, and a checkpoint
copies them back into the database file. Left to SQLite, the checkpoint runs inside whichever
commit finds the WAL over ``wal_autocheckpoint`` pages — a payment posting or a day's meter reads
then waits for hundreds of megabytes to be copied and synced, on the one thread doing the work.
Here a thread of its own, on a connection of its own, runs a PASSIVE checkpoint (it takes no lock
that a reader or the writer waits for; SQLite's ``sqlite3_step`` releases the GIL) every
``interval`` seconds: the copying overlaps the process's own work on the other core, and the
automatic checkpoint becomes a backstop that is rarely reached.

A checkpoint is SQLite's own operation on the file: durability, readers' snapshots and recovery
after a crash are SQLite's, as with the automatic one. Stopping the checkpointer (or the process
dying) loses nothing: the WAL is checkpointed by the next connection as usual."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: seconds between two checkpoints (what a busy process appends to the WAL meanwhile is a few
#: tens of megabytes; the automatic checkpoint stays at 256 MB as a backstop)
INTERVAL_SECONDS = 1.0


class Checkpointer:
    """``start()`` once; ``stop()`` (or use as a context manager) when the work is done."""

    def __init__(self, path: Path, *, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            # a checkpoint that failed is not lost work (SQLite checkpoints again later), but it
            # is not hidden either
            raise RuntimeError(f"the WAL checkpointer of {self.path} failed: {self.error}") \
                from self.error

    def __enter__(self) -> Checkpointer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # Never open the -wal or -shm file here, not even to read a header: closing any
        # descriptor of a file drops every POSIX lock the process holds on it, SQLite's included
        # (a first version read the WAL index that way and the demo died of SIGBUS).
        try:
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        except sqlite3.Error as exc:
            self.error = exc
            return
        try:
            while not self._stop.wait(self.interval):
                # PASSIVE: copies what no reader still needs, waits for no lock; with nothing
                # new in the WAL it returns at once without syncing anything
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()


def checkpointer_for(engine: Engine) -> Checkpointer | None:
    """A checkpointer for the engine's database file; None for a server database or an
    in-memory one (nothing to checkpoint)."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    if not name or name == ":memory:":
        return None
    return Checkpointer(Path(name))
