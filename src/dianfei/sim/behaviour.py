"""How the synthetic customers pay: a profile per customer and, for a set of bills, when and how
much each customer pays. Deterministic for (seed, period, customer), whatever the order or
subset of the bills passed in.

Behaviours (``customers.behaviour``):

- ``on_time``: pays in full on or before the due date (a few days early on average);
- ``late``: pays 1-40 days after the due date, sometimes only part;
- ``chronic_arrears``: pays rarely (~40% of bills), often partially, 20-150 days late;
- ``hardship_shock``: pays on time until ``shock_month`` (months after start), then mostly stops;
- ``vacant``: small bills paid on time; a large one (> 50 yuan) is paid late;
- ``tamper``: pays on time (keeps a low profile while the meter under-records).

Prepaid customers (``payment_mode = prepaid``) never pay a bill as such: their bills are settled
from the credit they top up (``dianfei.sim.prepay``).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dianfei.core.clock import Period
from dianfei.sim._rng import stream
from dianfei.sim.population import (
    CHANNELS,
    CHRONIC,
    HARDSHIP,
    LATE,
    ON_TIME,
    TAMPER,
    VACANT,
    Utility,
)

#: (mean days relative to the due date, probability of paying a bill, probability of paying
#: only part of it), per behaviour in population.BEHAVIOURS order
PROFILE = np.array(
    [
        [-6.0, 0.995, 0.01],  # on_time
        [15.0, 0.98, 0.08],  # late (mean drawn per customer in 5..25)
        [60.0, 0.40, 0.50],  # chronic_arrears (mean drawn per customer in 40..90)
        [-4.0, 0.99, 0.02],  # hardship_shock, before the shock
        [-8.0, 0.995, 0.00],  # vacant
        [-2.0, 0.98, 0.02],  # tamper
    ]
)
AFTER_SHOCK = (75.0, 0.10, 0.70)
VACANT_SMALL_FEN = 5000
assert (ON_TIME, LATE, CHRONIC, HARDSHIP, VACANT, TAMPER) == (0, 1, 2, 3, 4, 5)


def _profile_arrays(utility: Utility) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cached = utility._cache.get("payment_profile")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    beh = utility.model.behaviour.astype(np.int64)
    n = int(beh.shape[0])
    rng = stream(utility.seed, "payment_profile")
    delay = PROFILE[beh, 0] + rng.uniform(-2.0, 2.0, size=n)
    delay = np.where(beh == LATE, rng.uniform(5.0, 25.0, size=n), delay)
    delay = np.where(beh == CHRONIC, rng.uniform(40.0, 90.0, size=n), delay)
    jitter = rng.uniform(0.9, 1.0, size=n)
    pay_prob = np.where(beh == CHRONIC, PROFILE[beh, 1] * jitter, PROFILE[beh, 1])
    partial = PROFILE[beh, 2] * rng.uniform(0.5, 1.5, size=n)
    out = (np.round(delay, 1), np.round(pay_prob, 4), np.round(partial, 4))
    utility._cache["payment_profile"] = out
    return out


def payment_profile(utility: Utility) -> pl.DataFrame:
    """customer_id, behaviour, preferred_channel, pay_delay_mean_days (relative to the due date;
    negative = before it), pay_prob, partial_prob. Hardship customers are shown before their
    shock; after it they pay with probability 0.10, 70% of the time partially."""
    delay, pay_prob, partial = _profile_arrays(utility)
    c = utility.customers
    return pl.DataFrame(
        {
            "customer_id": c["customer_id"],
            "behaviour": c["behaviour"],
            "preferred_channel": c["preferred_channel"],
            "pay_delay_mean_days": pl.Series(delay, dtype=pl.Float64),
            "pay_prob": pl.Series(pay_prob, dtype=pl.Float64),
            "partial_prob": pl.Series(partial, dtype=pl.Float64),
        }
    )


def customer_index(utility: Utility, customer_ids: pl.Series) -> np.ndarray:
    index = utility._cache.get("customer_index")
    if index is None:
        index = utility.customers.select("customer_id").with_row_index("_i")
        utility._cache["customer_index"] = index
    joined = pl.DataFrame({"customer_id": customer_ids}).join(
        index, on="customer_id", how="left", maintain_order="left"
    )
    if joined["_i"].null_count():
        unknown = joined.filter(pl.col("_i").is_null())["customer_id"].head(3).to_list()
        raise ValueError(f"bills for customers not in this utility: {unknown}")
    out: np.ndarray = joined["_i"].to_numpy().astype(np.int64)
    return out


def payment_day_offsets(utility: Utility, period: Period, bills: pl.DataFrame) -> pl.DataFrame:
    """For each bill (customer_id, amount in fen, due_on), when and how much the customer pays.

    Returns the bills with ``paid_on`` (Date, null = never), ``delay_days`` (paid_on − due_on,
    null = never), ``paid_amount`` (Int64 fen, 0 when never) and ``channel`` (the customer's
    preferred channel 90% of the time). Bills of zero or negative amount, and the bills of
    prepaid customers (settled from their credit), are never paid.
    """
    for col in ("customer_id", "amount", "due_on"):
        if col not in bills.columns:
            raise ValueError(f"bills need a {col!r} column")
    if bills.height == 0:
        return bills.with_columns(
            pl.lit(None, dtype=pl.Date).alias("paid_on"),
            pl.lit(None, dtype=pl.Int32).alias("delay_days"),
            pl.lit(0, dtype=pl.Int64).alias("paid_amount"),
            pl.lit(None, dtype=pl.String).alias("channel"),
        )
    idx = customer_index(utility, bills["customer_id"])
    m = utility.model
    n = int(m.cls.shape[0])
    delay_mean, pay_prob, partial_prob = (a[idx] for a in _profile_arrays(utility))
    beh = m.behaviour.astype(np.int64)[idx]
    amount = bills["amount"].cast(pl.Int64).to_numpy()

    rng = stream(utility.seed, "payments", period.index())
    u_pay = rng.random(size=n)[idx]
    u_part = rng.random(size=n)[idx]
    frac = rng.uniform(0.3, 0.8, size=n)[idx]
    z = rng.standard_normal(size=n)[idx]
    u_chan = rng.random(size=n)[idx]
    other = rng.integers(0, len(CHANNELS), size=n)[idx]

    rel = period.index() - utility.start.index()
    shock = utility.customers["shock_month"].fill_null(10**6).to_numpy().astype(np.int64)[idx]
    after = (beh == HARDSHIP) & (rel >= shock)
    delay_mean = np.where(after, AFTER_SHOCK[0], delay_mean)
    pay_prob = np.where(after, AFTER_SHOCK[1], pay_prob)
    partial_prob = np.where(after, AFTER_SHOCK[2], partial_prob)
    big_vacant = (beh == VACANT) & (amount > VACANT_SMALL_FEN)
    delay_mean = np.where(big_vacant, 20.0, delay_mean)

    early = np.clip(np.rint(delay_mean + 3.0 * z), -20, 0)
    late = np.clip(np.rint(delay_mean + 8.0 * z), 1, 40)
    very_late = np.clip(np.rint(delay_mean + 20.0 * z), 20, 150)
    is_late = (beh == LATE) | big_vacant
    delay = np.where(is_late, late, np.where((beh == CHRONIC) | after, very_late, early))
    delay = delay.astype(np.int64)

    prepaid = (utility.customers["payment_mode"] == "prepaid").to_numpy()[idx]
    pays = (u_pay < pay_prob) & (amount > 0) & ~prepaid
    part = u_part < partial_prob
    paid_amount = np.where(part, np.maximum(1, np.floor(amount * frac)), amount)
    paid_amount = np.where(pays, paid_amount, 0).astype(np.int64)

    preferred = utility.customers["preferred_channel"].gather(idx)
    alt = pl.Series(CHANNELS, dtype=pl.String).gather(other)
    due = bills["due_on"].cast(pl.Date)
    return bills.with_columns(
        pl.Series("paid_on", due.to_numpy() + delay.astype("timedelta64[D]"))
        .cast(pl.Date),
        pl.Series("delay_days", delay, dtype=pl.Int32),
        pl.Series("paid_amount", paid_amount, dtype=pl.Int64),
        pl.when(pl.Series(u_chan < 0.9)).then(preferred).otherwise(alt).alias("channel"),
    ).with_columns(
        pl.when(pl.Series(pays)).then(pl.col("paid_on")).alias("paid_on"),
        pl.when(pl.Series(pays)).then(pl.col("delay_days")).alias("delay_days"),
        pl.when(pl.Series(pays)).then(pl.col("channel")).alias("channel"),
    )



#: probability that a customer whose supply was suspended for arrears pays everything owed to
#: be reconnected, per behaviour (population.BEHAVIOURS order); the rest stay cut off (a vacated
#: house, a customer who left). Most pay within days: that is why a lawful stop works.
PAY_TO_RECONNECT = np.array([0.97, 0.95, 0.80, 0.70, 0.60, 0.95])
#: mean days from the stop to that payment (geometric, at least the next day)
RECONNECT_DELAY_MEAN = 2.5


def pay_after_suspension(utility: Utility, cases: pl.DataFrame) -> pl.DataFrame:
    """For each stop case (case_id, customer_id, suspended_on) of a postpaid customer whose supply
    was suspended, whether and when the customer pays everything owed to be reconnected: adds
    ``paid_on`` (Date, null = never) and ``channel`` (the preferred one). Deterministic for
    (seed, case_id), whatever the order or subset of the cases passed in; the amount is what the
    account owes on that day, which only the caller knows."""
    for col in ("case_id", "customer_id", "suspended_on"):
        if col not in cases.columns:
            raise ValueError(f"cases need a {col!r} column")
    if cases.height == 0:
        return cases.with_columns(pl.lit(None, dtype=pl.Date).alias("paid_on"),
                                  pl.lit(None, dtype=pl.String).alias("channel"))
    idx = customer_index(utility, cases["customer_id"])
    beh = utility.model.behaviour.astype(np.int64)[idx]
    draws = [stream(utility.seed, "pay_to_reconnect", int(c)).random(size=2)
             for c in cases["case_id"].to_list()]
    u = np.array([d[0] for d in draws])
    v = np.array([d[1] for d in draws])
    pays = u < PAY_TO_RECONNECT[beh]
    # geometric days ≥ 1 by inversion, capped at a month
    p = 1.0 / RECONNECT_DELAY_MEAN
    days = np.clip(np.ceil(np.log1p(-v) / np.log1p(-p)), 1, 30).astype(np.int64)
    on = cases["suspended_on"].cast(pl.Date).to_numpy() + days.astype("timedelta64[D]")
    preferred = utility.customers["preferred_channel"].gather(idx)
    return cases.with_columns(
        pl.when(pl.Series(pays)).then(pl.Series("paid_on", on).cast(pl.Date)).alias("paid_on"),
        pl.when(pl.Series(pays)).then(preferred).alias("channel"))
