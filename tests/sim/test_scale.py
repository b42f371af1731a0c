from __future__ import annotations

import gc

from dianfei.core.clock import Period
from dianfei.sim import build_utility, monthly_reads


def test_million_customers_build_and_one_month_of_reads() -> None:
    # how long it takes (target ≤ 20 s) is measured by `python -m bench.sim_scale`
    u = build_utility(1_000_000, seed=1)
    reads = monthly_reads(u, Period(2025, 1))
    assert u.customers.height == 1_000_000
    assert reads["meter_id"].n_unique() > 998_000
    del u, reads
    gc.collect()
