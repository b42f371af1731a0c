"""A few more days of a demo, on a copy of its database: judge a change to the collections day
in a minute instead of a whole default demo.

    python -m bench.demo_replay --from var [--days 10]

``--from`` is a demo's data directory (``var/`` of ``dianfei demo``, its ``demo.json`` says which
county). The directory is copied (the original is not touched) and the demo goes on from the day
after its last collections day, as ``dianfei demo`` would: the next month's reads and bill run
first when that day is the next issue day, then each day's prepaid reads, collections, the
collectors' field work and the payments; the day after the issue day the closure review (销户 of
the accounts off supply for six months, ``--no-closures`` skips it: a demo built before it
existed closes them all at once on that day, its part ``closure_review``). The payments still
ahead come from the synthetic customers' behaviour for the last two billed periods; what the
demo kept only in memory (plan instalments agreed, reconnection payments of customers cut off
before the copy) is not replayed, so the days are like the demo's, not identical to them. It
stops before the issue day after that.

Prints one JSON line: the machine, the days, the wall time of the days (and the process's CPU
seconds and megabytes written over them: less noisy than the wall time), and per step of
``run_day`` (``collection_runs.report``) and per part of the demo's day (its collectors, the
prepaid reads, posting the payments) the seconds summed over the days. Runs of the same code on
the same copy differ by ±8–10 % over ten days (docs/benchmarks.md, "session 21"): alternate the
two codes (``PYTHONPATH=…/src``) and replay more days to see a change of a few per cent. The
replay is a fresh process: its first day pays for what a demo warms over months (the
simulation's span ends, SQLite's pages), so judge a part's cost from the third day on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.machine import describe


def _timed(counter: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            counter[label] += time.perf_counter() - t
    return run


def replay(source: Path, days: int, *, closures: bool = True) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dianfei-replay-"))
    data = work / "var"
    shutil.copytree(source, data)
    os.environ["DIANFEI_DATA_DIR"] = str(data)
    os.environ["DIANFEI_DATABASE_URL"] = f"sqlite:///{data / 'dianfei.db'}"
    try:
        return _replay(data, days, closures)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replay(data: Path, days: int, closures: bool) -> dict[str, Any]:
    import polars as pl
    from sqlalchemy import func, select, text

    from dianfei import closure_demo, demo, fieldwork_demo, sim
    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period, start_of_day
    from dianfei.db.checkpoint import checkpointer_for
    from dianfei.db.engine import open_database
    from dianfei.metering.models import RegisterRead
    from dianfei.metering.service import store_reads
    from dianfei.payments import service as payments

    marker = json.loads((data / "demo.json").read_text())
    db = open_database()
    with db.engine.connect() as conn:
        last = conn.execute(text("SELECT max(day) FROM collection_runs")).scalar()
        billed = conn.execute(text("SELECT max(period) FROM bills")).scalar()
    if last is None or billed is None:
        raise SystemExit(f"{data}: no collections day and bill run to go on from (run a demo "
                         "with collections first)")
    first = (last if isinstance(last, date) else date.fromisoformat(str(last))) + timedelta(days=1)
    period = Period.parse(str(billed))
    utility = sim.build_utility(int(marker["customers"]), seed=int(marker["seed"]),
                                start=Period.parse(str(marker["start"])[:7]))
    parts: dict[str, float] = defaultdict(float)
    # the demo's parts of a day, timed where the demo looks them up (at call time)
    demo._prepaid_day = _timed(parts, "prepaid_reads", demo._prepaid_day)
    fieldwork_demo.fieldwork_day = _timed(parts, "collectors", fieldwork_demo.fieldwork_day)
    closure_demo.monthly_review = _timed(parts, "closure_review", closure_demo.monthly_review)
    payments.post_payments_frame = _timed(parts, "payments_posted", payments.post_payments_frame)
    with checkpointer_for(db.engine) or nullcontext():
        issue = period.next().end_date + demo.ISSUE_DELAY
        pending = [demo._payments_for(db, utility, period.prev()),
                   demo._payments_for(db, utility, period)]
        if first == issue:  # the month's step first, as the demo does on its issue day
            period = period.next()
            at = start_of_day(period.end_date)
            with db.engine.begin() as conn:
                if not conn.execute(select(func.count()).select_from(RegisterRead)
                                    .where(RegisterRead.read_at == at)).scalar_one():
                    store_reads(conn, demo.metered(db, utility, sim.monthly_reads(utility, period)))
            t = time.perf_counter()
            run_bill_run(db, period, FixedClock(datetime.combine(issue, dtime(9),
                                                                 tzinfo=BUSINESS_TZ)))
            parts["bill_run"] = time.perf_counter() - t
            pending = [pending[1], demo._payments_for(db, utility, period)]
        stop = min(first + timedelta(days=days), period.next().end_date + demo.ISSUE_DELAY)
        pending = [p.filter(pl.col("paid_on") >= first) for p in pending]
        t, cpu, written = time.perf_counter(), _cpu_seconds(), _bytes_written()
        demo._run_days(db, pending, first, stop, utility=utility, closures=closures)
        wall = time.perf_counter() - t
        cpu, written = _cpu_seconds() - cpu, _bytes_written() - written
    steps: dict[str, float] = defaultdict(float)
    with db.engine.connect() as conn:
        for (report,) in conn.execute(text("SELECT report FROM collection_runs WHERE day >= :d"),
                                      {"d": first}):
            for step, secs in json.loads(report)["timings"].items():
                steps[step] += secs
    db.engine.dispose()
    return {"machine": describe(), "from": str(first), "until": str(stop - timedelta(days=1)),
            "days": (stop - first).days, "seconds": round(wall, 2),
            # less noisy than the wall time on a shared VM: the process's CPU (all threads) and
            # what it wrote (the WAL above all), over the same days
            "cpu_seconds": round(cpu, 2), "written_mb": round(written / 1e6, 1),
            "closures": closures,
            "run_day_steps": _largest_first(steps), "demo_parts": _largest_first(parts)}


def _cpu_seconds() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _bytes_written() -> int:
    """Bytes this process wrote through write(2) so far (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _largest_first(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", type=Path, required=True,
                    help="a demo's data directory (its var/)")
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--no-closures", action="store_true",
                    help="skip the monthly closure review (the day after the issue day): "
                         "the demo before accounts off supply for six months were closed")
    args = ap.parse_args()
    if not (args.source / "demo.json").is_file() or not (args.source / "dianfei.db").is_file():
        raise SystemExit(f"{args.source}: not the data directory of a demo on the embedded "
                         "database (no demo.json and dianfei.db)")
    print(json.dumps(replay(args.source, args.days, closures=not args.no_closures)))


if __name__ == "__main__":
    main()
