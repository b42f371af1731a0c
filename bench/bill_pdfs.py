"""PDF bills benchmark: N synthetic accounts billed for two months, then the second month's
bills rendered to A4 PDFs (``billing.rendering.render_period``) with 1 and with 2 processes,
and once more with nothing changed (every bill skipped by its content hash).

    python -m bench.bill_pdfs --bills 10000 [--workers 1,2] [--backend sqlite|postgresql]

prints one JSON object with the figures (target: 100,000 PDFs in ≤ 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(bills: int, workers: list[int], backend: str, chunk_size: int) -> dict[str, Any]:
    from sqlalchemy import text

    from dianfei import sim
    from dianfei.billing.rendering import render_period
    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.metering.service import store_reads

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-pdf-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"bills": bills, "backend": backend, "chunk_size": chunk_size,
                           "cpus": os.cpu_count()}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                          "DIANFEI_DATA_DIR": str(tmp / "var")}))
        t = time.perf_counter()
        u = sim.build_utility(bills, seed=7)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"b" * 32), regions=u.regions, stations=u.stations,
                            collectors=u.collectors, customers=u.customers, meters=u.meters)
            store_reads(conn, sim.opening_reads(u))
        period = u.start
        for p in (period, period.next()):
            with db.engine.begin() as conn:
                store_reads(conn, sim.monthly_reads(u, p))
            d = p.end_date
            run_bill_run(db, p, FixedClock(datetime.combine(d.replace(day=3), dtime(9),
                                                            tzinfo=BUSINESS_TZ)))
        target = period.next()
        with db.engine.connect() as conn:
            out["issued"] = conn.execute(text("SELECT count(*) FROM bills WHERE period = :p "
                                              "AND status <> 'cancelled'"),
                                         {"p": str(target)}).scalar_one()
        out["setup_s"] = round(time.perf_counter() - t, 2)
        day = target.end_date
        for w in workers:
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM bill_renders"))
            shutil.rmtree(tmp / "pdf", ignore_errors=True)
            load = os.getloadavg()[0]
            cpu0 = _cpu()
            res = render_period(db, target, out_dir=tmp / "pdf", workers=w, chunk_size=chunk_size,
                                as_of=day)
            files = list((tmp / "pdf" / str(target)).glob("*.pdf"))
            out[f"workers_{w}"] = {
                "rendered": res.rendered, "failed": len(res.failed),
                "seconds": round(res.seconds, 1),
                "bills_per_s": round(res.rendered / res.seconds, 1),
                "ms_per_bill_in_workers": {k: round(v * 1000 / max(res.rendered, 1), 2)
                                    for k, v in res.timings.items()},
                "files": len(files),
                "mean_kb": round(sum(f.stat().st_size for f in files) / max(len(files), 1) / 1024,
                                 1),
                # CPU seconds of this process and its workers: what the bills cost on a
                # machine shared with other work, where wall time depends on the neighbours
                "cpu_s": round(_cpu() - cpu0, 1),
                "cpu_ms_per_bill": round((_cpu() - cpu0) * 1000 / max(res.rendered, 1), 1),
                "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            }
            print(json.dumps({f"workers_{w}": out[f"workers_{w}"]}), file=sys.stderr, flush=True)
        t = time.perf_counter()
        again = render_period(db, target, out_dir=tmp / "pdf", workers=1, chunk_size=chunk_size,
                              as_of=day)
        out["rerun_unchanged"] = {"skipped": again.skipped, "rendered": again.rendered,
                                  "seconds": round(time.perf_counter() - t, 1)}
        db.engine.dispose()
    finally:
        _drop(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_rss_children_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bills", type=int, default=10_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--chunk-size", type=int, default=1000)
    a = ap.parse_args()
    print(json.dumps(run(a.bills, [int(w) for w in a.workers.split(",")], a.backend,
                         a.chunk_size), ensure_ascii=False))


if __name__ == "__main__":
    main()
