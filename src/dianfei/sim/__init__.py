"""The synthetic county utility: customers, meters, consumption, reads and payment behaviour.

Seeded and deterministic (same seed → byte-identical frames), vectorised (a million customers
build in seconds). See docs/sim.md.
"""

from dianfei.sim.behaviour import pay_after_suspension, payment_day_offsets, payment_profile
from dianfei.sim.consumption import (
    daily_reads,
    daily_usage,
    monthly_reads,
    opening_reads,
    period_consumption,
    period_tou,
    read_faults,
    station_supply,
    tamper_modes,
)
from dianfei.sim.population import Utility, build_utility, id_number_valid
from dianfei.sim.prepay import prepaid_opening_credit, prepaid_topups, prepay_profile
from dianfei.sim.supply import as_metered

__all__ = [
    "Utility",
    "as_metered",
    "build_utility",
    "daily_reads",
    "daily_usage",
    "id_number_valid",
    "monthly_reads",
    "opening_reads",
    "pay_after_suspension",
    "payment_day_offsets",
    "payment_profile",
    "period_consumption",
    "period_tou",
    "prepaid_opening_credit",
    "prepaid_topups",
    "prepay_profile",
    "read_faults",
    "station_supply",
    "tamper_modes",
]
