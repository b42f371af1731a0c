"""Fault injection for the crash tests: named points where a job can be made to die as SIGKILL
would — no ``finally``, no rollback handler, no atexit; only what was committed survives.

``DIANFEI_FAULT_KILL_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th time (default
the first) it reaches :func:`kill_point` with that name. Unset — always, outside the tests — a
point costs one comparison: the variable is read once per process. The points and what a crash
there must leave behind are listed in docs/operations.md ("Faults").

Points are placed where a crash really hurts: after something was committed (or handed to the
outside world) and before the job recorded that it was done — the state a rerun must finish
from without doing anything twice.
"""

from __future__ import annotations

import os
import signal

#: the environment variable naming the point (and which time through it) to die at
ENV = "DIANFEI_FAULT_KILL_AT"

#: every point in the code, for the docs and for a check that a test names a real one
POINTS = (
    "bill_run.chunk_written",          # a chunk of bills, lines and debits committed
    "collections.late_fees_posted",    # the day's late fees and accruals committed
    "collections.dunning_written",     # the ladder's events, tasks, notices and stop cases committed
    "collections.command_sent",        # the meter confirmed a trip/close, not yet recorded
    "notify.sent_unrecorded",          # the gateway accepted the batch, outcomes not recorded
    "reconcile.line_posted",           # a statement line auto-posted (inside the file's transaction)
    "import.chunk_fed",                # a chunk of the file stored (inside the import's transaction)
    "risk.scores_written",             # the day's scores file written, warnings not yet stored
    "spark.partition_priced",          # a Spark task priced its partition, nothing written yet
    "spark.partition_written",         # a Spark task committed its partition, not yet returned
    "spark.partition_scored",          # a Spark task scored its accounts' risk, not yet handed back
)

_target: tuple[str, int] | None = None
_read = False
_seen = 0


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.strip().partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}: unknown fault point {name!r} (known: {', '.join(POINTS)})")
    try:
        n = int(count) if count else 1
    except ValueError:
        raise ValueError(f"{ENV}: the count after ':' must be a whole number, got {count!r}") from None
    if n < 1:
        raise ValueError(f"{ENV}: the count after ':' must be 1 or more, got {n}")
    return name, n


def kill_point(name: str) -> None:
    """Die here (SIGKILL to this process) if ``DIANFEI_FAULT_KILL_AT`` names this point and this
    is the n-th time through it; otherwise nothing."""
    global _target, _read, _seen
    if not _read:
        spec = os.environ.get(ENV)
        _target = _parse(spec) if spec else None
        _read = True
    if _target is None or _target[0] != name:
        return
    _seen += 1
    if _seen >= _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Read the environment again at the next point (for tests that change it in-process)."""
    global _target, _read, _seen
    _target, _read, _seen = None, False, 0
