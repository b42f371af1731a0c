"""How the synthetic prepaid customers (智能交费) top up their accounts.

A prepaid customer watches the balance the utility's app shows (ledger credit less the usage
since the last bill) and buys electricity in round amounts. Each has a habit, drawn once:

- ``planner`` (most): tops up before the balance gets near the utility's warning threshold;
  tops up when it falls below a personal trigger (50 yuan + ⅓–1 month of usage), 1–3 months
  of usage at a time;
- ``on_warning``: waits for the low-balance warning (below 50 yuan) and tops up a day or two
  after it, 1–2.5 months of usage at a time; a few run out before they get round to it;
- ``lapser``: ignores the warning and the cut-off notice, runs out, is cut off, and tops up
  1–4 days after running out — the debt and about a month of usage.

On time payers are mostly planners, late payers mostly wait for the warning, chronic arrears
customers mostly lapse, and hardship customers lapse after their shock. The decisions of a day
are a function of (seed, day, customer) and the balances passed in, so a run is deterministic
for a seed. Amounts and balances are fen.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from dianfei.core.clock import Period
from dianfei.sim._rng import pick, stream
from dianfei.sim.consumption import prepaid_index, registers_at
from dianfei.sim.population import CHRONIC, HARDSHIP, LATE, ON_TIME, Utility

HABITS = ("planner", "on_warning", "lapser")
PLANNER, ON_WARNING, LAPSER = range(3)
#: habit mix per behaviour (rows: population.BEHAVIOURS; columns: HABITS)
HABIT_SHARES = np.array(
    [
        [0.86, 0.12, 0.02],  # on_time
        [0.30, 0.55, 0.15],  # late
        [0.00, 0.30, 0.70],  # chronic_arrears
        [0.86, 0.12, 0.02],  # hardship_shock (a lapser after the shock)
        [1.00, 0.00, 0.00],  # vacant
        [0.95, 0.05, 0.00],  # tamper
    ]
)
assert (ON_TIME, LATE, CHRONIC, HARDSHIP) == (0, 1, 2, 3)
#: the utility's low-balance warning threshold the customers know from its SMS (fen)
WARNING_FEN = 5000
#: the price a customer reckons with (fen per kWh): tier 1 of cn-zj-residential; TOU meters
#: the customer's peak/valley mix of 0.568 / 0.288
PRICE_FEN = 53.8
PEAK_FEN, VALLEY_FEN = 56.8, 28.8
#: chance a customer below their trigger acts that day (planners, on_warning)
ACT_PROB = (0.7, 0.45)
#: top-up channels: bank withholding and online banking customers top up with Alipay
TOPUP_CHANNEL = {"counter": "counter", "bank_withholding": "alipay", "alipay": "alipay",
                 "wechatpay": "wechatpay", "online_banking": "alipay",
                 "post_office": "post_office"}


def _arrays(utility: Utility) -> dict[str, np.ndarray]:
    cached = utility._cache.get("prepay_profile")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    m = utility.model
    idx = prepaid_index(utility)
    k = int(idx.shape[0])
    beh = m.behaviour.astype(np.int64)[idx]
    habit = pick(stream(utility.seed, "prepay_habit"), HABIT_SHARES, beh)
    rng = stream(utility.seed, "prepay_profile")
    price = np.full(k, PRICE_FEN)
    pos2 = np.searchsorted(m.idx2, idx)
    is2 = (pos2 < m.idx2.shape[0]) & (m.idx2[np.minimum(pos2, m.idx2.shape[0] - 1)] == idx)
    share = m.peak2_share[pos2[is2]]
    price[is2] = share * PEAK_FEN + (1 - share) * VALLEY_FEN
    monthly = np.maximum(m.base_kwh[idx] * m.multiplier[idx] * price, 500.0)  # fen a month
    trigger = WARNING_FEN + rng.uniform(0.33, 1.0, size=k) * monthly
    months = np.select([habit == PLANNER, habit == ON_WARNING],
                       [rng.uniform(1.0, 3.0, size=k), rng.uniform(1.0, 2.5, size=k)],
                       rng.uniform(0.5, 1.5, size=k))
    # the credit held at ``start`` (bought before the simulation): January's bill and then some
    opening = monthly * np.select([habit == PLANNER, habit == ON_WARNING],
                                  [rng.uniform(2.0, 4.0, size=k), rng.uniform(1.8, 3.0, size=k)],
                                  rng.uniform(1.4, 2.4, size=k)) + np.where(
        habit == PLANNER, trigger, 0.0)
    shock = utility.customers["shock_month"].fill_null(10**6).to_numpy().astype(np.int64)[idx]
    out = {"idx": idx, "habit": habit, "price": price, "monthly": monthly, "trigger": trigger,
           "months": months, "opening": np.ceil(opening / 5000) * 5000,
           "after_shock": np.where(beh == HARDSHIP, shock, 10**6)}
    utility._cache["prepay_profile"] = out
    return out


def _channels(utility: Utility, idx: np.ndarray) -> pl.Series:
    preferred = utility.customers["preferred_channel"].gather(idx)
    return preferred.replace_strict(TOPUP_CHANNEL, return_dtype=pl.String)


def prepay_profile(utility: Utility) -> pl.DataFrame:
    """One row per prepaid customer: customer_id, habit, price (the fen per kWh the customer
    reckons with), monthly (fen, a month of their usage), trigger (fen: a planner tops up
    below it), topup_months (months of usage bought at a time), opening_credit (fen held at
    ``start``), channel (of their top-ups)."""
    cached = utility._cache.get("prepay_profile_frame")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    a = _arrays(utility)
    idx = a["idx"]
    out = pl.DataFrame(
        {
            "customer_id": utility.customers["customer_id"].gather(idx),
            "habit": pl.Series(HABITS, dtype=pl.String).gather(a["habit"]),
            "price": pl.Series(np.round(a["price"], 2), dtype=pl.Float64),
            "monthly": pl.Series(np.rint(a["monthly"]), dtype=pl.Int64),
            "trigger": pl.Series(np.rint(a["trigger"]), dtype=pl.Int64),
            "topup_months": pl.Series(np.round(a["months"], 2), dtype=pl.Float64),
            "opening_credit": pl.Series(a["opening"], dtype=pl.Int64),
            "channel": _channels(utility, idx),
        }
    )
    utility._cache["prepay_profile_frame"] = out  # computed once per utility (a daily read)
    return out


def prepaid_opening_credit(utility: Utility) -> pl.DataFrame:
    """customer_id, amount (fen), channel: the credit each prepaid customer held at ``start``,
    to be posted as a top-up before the first bill is settled."""
    return prepay_profile(utility).select("customer_id", pl.col("opening_credit").alias("amount"),
                                          "channel")


def prepaid_topups(utility: Utility, day: date, balances: pl.DataFrame,
                   billed_to: date) -> pl.DataFrame:
    """The top-ups the prepaid customers make on ``day``: customer_id, amount (fen, > 0),
    channel (sim channel names), habit. At most one per customer and day.

    ``balances``: customer_id, balance (the ledger balance in fen at the start of the day;
    negative = credit; a missing customer counts as 0). ``billed_to``: the day at whose 00:00
    the last bill's reads closed; the customer reckons the usage since then (the daily frozen
    reads up to 00:00 of ``day``) at their price, so what they see is close to the utility's
    available balance (``dianfei.collections.prepay``) without needing it.
    """
    a = _arrays(utility)
    idx = a["idx"]
    k = int(idx.shape[0])
    m = utility.model
    ids = utility.customers["customer_id"].gather(idx)
    bal = (pl.DataFrame({"customer_id": ids})
           .join(balances.select("customer_id", pl.col("balance").cast(pl.Int64)),
                 on="customer_id", how="left", maintain_order="left")
           ["balance"].fill_null(0).to_numpy())
    now, _ = registers_at(utility, day, idx) if day.day > 1 else (_month_end(utility, day, idx),
                                                                   None)
    then = _month_end(utility, billed_to, idx)
    used = (now["total"] - then["total"]) * m.multiplier[idx] / 100.0  # kWh
    seen = -bal - used * a["price"]  # what the app shows, fen
    daily = a["monthly"] / 30.4

    rng = stream(utility.seed, "prepay_topup", day.toordinal())
    u_act = rng.random(size=k)
    grace = rng.uniform(1.0, 4.0, size=k)
    extra = rng.uniform(0.0, 0.3, size=k)
    rel = Period(day.year, day.month).index() - utility.start.index()
    habit = np.where(rel >= a["after_shock"], LAPSER, a["habit"])
    act = np.select(
        [habit == PLANNER, habit == ON_WARNING],
        [(seen < a["trigger"]) & (u_act < ACT_PROB[0]),
         (seen < WARNING_FEN) & (u_act < ACT_PROB[1])],
        seen <= -grace * daily)
    want = np.maximum(a["months"] + extra, 0.5) * a["monthly"] - np.minimum(seen, 0)
    step = np.where(want > 20000, 5000, 1000)  # round amounts: 10 yuan, 50 above 200 yuan
    amount = (np.ceil(want / step) * step).astype(np.int64)
    pos = np.flatnonzero(act)
    return pl.DataFrame(
        {
            "customer_id": ids.gather(pos),
            "amount": pl.Series(amount[pos], dtype=pl.Int64),
            "channel": _channels(utility, idx[pos]),
            "habit": pl.Series(HABITS, dtype=pl.String).gather(habit[pos]),
        }
    )


def _month_end(utility: Utility, day: date, idx: np.ndarray) -> dict[str, np.ndarray]:
    """True unwrapped totals at 00:00 of ``day``, the 1st of a month (a monthly read)."""
    from dianfei.sim.consumption import cumulative

    if day.day != 1:
        raise ValueError(f"billed_to must be the 1st of a month, got {day}")
    prev = Period(day.year, day.month).prev()
    return {"total": cumulative(utility, prev.index())["total"][idx]}
