"""Synthetic utility at scale: build 1,000,000 customers and one month of register reads.

    python -m bench.sim_scale [--customers 1000000]

Target: ≤ 20 s for both together (docs/sim.md: "1,000,000 customers in seconds"). The test
``tests/sim/test_scale.py`` checks the result (1,000,000 customers, reads for > 99.8% of the
meters); this measures the time, which a test on a busy CI machine cannot assert. Prints one
JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

TARGET_S = 20.0


def run(customers: int) -> dict[str, object]:
    from dianfei.core.clock import Period
    from dianfei.sim import build_utility, monthly_reads

    t0 = time.perf_counter()
    u = build_utility(customers, seed=1)
    t1 = time.perf_counter()
    reads = monthly_reads(u, Period(2025, 1))
    t2 = time.perf_counter()
    return {"customers": u.customers.height, "reads": reads.height,
            "meters_read": reads["meter_id"].n_unique(),
            "build_s": round(t1 - t0, 2), "reads_s": round(t2 - t1, 2),
            "total_s": round(t2 - t0, 2), "target_s": TARGET_S,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    print(json.dumps(run(ap.parse_args().customers)))


if __name__ == "__main__":
    main()
