from __future__ import annotations

import gc
import time

from dianfei.core.clock import Period
from dianfei.sim import build_utility, monthly_reads


def test_million_customers_build_and_one_month_of_reads() -> None:
    t0 = time.perf_counter()
    u = build_utility(1_000_000, seed=1)
    t1 = time.perf_counter()
    reads = monthly_reads(u, Period(2025, 1))
    t2 = time.perf_counter()
    print(f"\n1M customers: build {t1 - t0:.2f} s, one month of reads {t2 - t1:.2f} s "
          f"({reads.height:,} rows)")
    assert u.customers.height == 1_000_000
    assert reads["meter_id"].n_unique() > 998_000
    assert t2 - t0 < 20
    del u, reads
    gc.collect()
