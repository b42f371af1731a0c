"""What the synthetic customers say when a collector calls or visits (催费员上门/电话催收).

``visit_outcomes(utility, day, worked, scheduled)`` draws, for each account a collector works on
``day``, the outcome the customer's hidden behaviour implies:

- a customer who will pay soon anyway (a payment the simulator already scheduled within
  ``PROMISE_HORIZON_DAYS``) promises to pay on that day and that amount — a promise the
  simulator keeps; one paying today says "paid";
- otherwise the behaviour decides, with the weights of ``OUTCOME_WEIGHTS``: chronic defaulters
  refuse, promise and break, or dispute; households after a hardship shock plead hardship (and are
  offered a plan, kept or abandoned per ``PLAN_KEEP``); vacant premises are found vacant; anyone
  may turn out to have a wrong phone number;
- a survey after the visit (30% answer) scores it 1–5, lower when the customer refused or
  disputed; a dispute is upheld or not, and decided after 1–4 working days.

Deterministic for (seed, day, customer) whatever the subset or order of the accounts, like the
rest of the simulator. Collector work does not change the payments already scheduled: a promise
is either the truth (kept) or talk (broken); only a plan agreed for hardship adds payments.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from dianfei.sim._rng import stream
from dianfei.sim.behaviour import customer_index
from dianfei.sim.population import CHRONIC, HARDSHIP, LATE, ON_TIME, TAMPER, VACANT, Utility

#: the outcomes of visits and calls (the vocabulary of collections' visit register)
OUTCOMES = ("paid", "promise", "dispute", "hardship", "wrong_contact", "vacant", "refused")
#: a payment already scheduled this many days ahead is promised at the door
PROMISE_HORIZON_DAYS = 14
#: outcome weights (OUTCOMES order) for a customer with no payment coming soon, per behaviour
#: (population.BEHAVIOURS order)
OUTCOME_WEIGHTS = np.array([
    # paid promise dispute hardship wrong_contact vacant refused
    [0.00, 0.80, 0.05, 0.02, 0.08, 0.00, 0.05],  # on_time
    [0.00, 0.70, 0.07, 0.05, 0.08, 0.00, 0.10],  # late
    [0.00, 0.35, 0.10, 0.05, 0.10, 0.00, 0.40],  # chronic_arrears
    [0.00, 0.15, 0.03, 0.70, 0.04, 0.00, 0.08],  # hardship_shock
    [0.00, 0.05, 0.00, 0.00, 0.25, 0.70, 0.00],  # vacant
    [0.00, 0.70, 0.15, 0.00, 0.05, 0.00, 0.10],  # tamper
])
assert (ON_TIME, LATE, CHRONIC, HARDSHIP, VACANT, TAMPER) == (0, 1, 2, 3, 4, 5)
#: probability that a household offered a plan for hardship pays every instalment, per behaviour
PLAN_KEEP = np.array([0.95, 0.85, 0.35, 0.65, 0.50, 0.90])
#: a broken promise names a date this many days ahead
TALK_PROMISE_DAYS = 7
#: survey answer rate and mean score by outcome (OUTCOMES order)
SURVEY_RATE = 0.3
SURVEY_MEAN = np.array([4.6, 4.2, 2.6, 3.8, 3.5, 3.5, 2.2])
#: share of disputes decided in the customer's favour
DISPUTE_UPHELD = 0.3


def visit_outcomes(utility: Utility, day: date, worked: pl.DataFrame,
                   scheduled: pl.DataFrame) -> pl.DataFrame:
    """For each row of ``worked`` (customer_id, account_id, overdue fen > 0) the outcome of the
    collector's contact on ``day``; ``scheduled`` holds the simulator's coming payments
    (account_id, paid_on, amount — fen, null for "whatever is owed then").

    Adds: outcome, channel (``visit`` or ``call``), promise_on, promise_fen (promises only),
    promise_kept (bool), plan_kept (hardship only: the customer pays every instalment of a plan),
    survey (1–5 or null), dispute_upheld, decide_after (working days, disputes only)."""
    for col in ("customer_id", "account_id", "overdue"):
        if col not in worked.columns:
            raise ValueError(f"worked accounts need a {col!r} column")
    if worked.height == 0:
        return worked.with_columns(
            pl.lit(None, pl.String).alias("outcome"), pl.lit(None, pl.String).alias("channel"),
            pl.lit(None, pl.Date).alias("promise_on"), pl.lit(None, pl.Int64).alias("promise_fen"),
            pl.lit(None, pl.Boolean).alias("promise_kept"),
            pl.lit(None, pl.Boolean).alias("plan_kept"), pl.lit(None, pl.Int64).alias("survey"),
            pl.lit(None, pl.Boolean).alias("dispute_upheld"),
            pl.lit(None, pl.Int64).alias("decide_after"))
    idx = customer_index(utility, worked["customer_id"])
    n = utility.n_customers
    rng = stream(utility.seed, "fieldwork", day.toordinal())
    u_out, u_chan, u_plan = rng.random(size=n)[idx], rng.random(size=n)[idx], rng.random(size=n)[idx]
    u_survey, u_upheld = rng.random(size=n)[idx], rng.random(size=n)[idx]
    z_score = rng.standard_normal(size=n)[idx]
    decide = rng.integers(1, 5, size=n)[idx]
    beh = utility.model.behaviour.astype(np.int64)[idx]

    horizon = day + timedelta(days=PROMISE_HORIZON_DAYS)
    soon = (scheduled.filter((pl.col("paid_on") >= day) & (pl.col("paid_on") <= horizon))
            .group_by("account_id").agg(pl.col("paid_on").min().alias("_on"),
                                        pl.col("amount").sum().alias("_amt"),
                                        pl.col("amount").is_null().any().alias("_all")))
    w = worked.join(soon, on="account_id", how="left", maintain_order="left")
    on = w["_on"]
    has_soon = on.is_not_null().to_numpy()
    today = (on == day).fill_null(False).to_numpy()

    cum = np.cumsum(OUTCOME_WEIGHTS, axis=1)
    cum[:, -1] = 1.0 + 1e-9
    drawn = (u_out[:, None] >= cum[beh]).sum(axis=1)
    code = np.where(today, OUTCOMES.index("paid"),
                    np.where(has_soon, OUTCOMES.index("promise"), drawn))
    outcome = pl.Series("outcome", np.array(OUTCOMES)[code], dtype=pl.String)
    is_promise = code == OUTCOMES.index("promise")
    kept = is_promise & has_soon
    overdue = w["overdue"].cast(pl.Int64)
    # a true promise: the day and (at most what is overdue of) the amount already coming
    promised_amount = (pl.when(w["_all"].fill_null(False)).then(overdue)
                       .otherwise(pl.min_horizontal(w["_amt"].fill_null(0), overdue)))
    talk_on = day + timedelta(days=TALK_PROMISE_DAYS)
    score = np.clip(np.rint(SURVEY_MEAN[code] + 0.8 * z_score), 1, 5).astype(np.int64)
    dispute = code == OUTCOMES.index("dispute")
    return worked.with_columns(
        outcome,
        pl.Series("channel", np.where(u_chan < 0.6, "visit", "call"), dtype=pl.String),
        pl.when(pl.Series(kept)).then(on).when(pl.Series(is_promise)).then(pl.lit(talk_on))
        .alias("promise_on"),
        pl.when(pl.Series(kept)).then(w.select(promised_amount.alias("a"))["a"])
        .when(pl.Series(is_promise)).then(overdue).alias("promise_fen"),
        pl.when(pl.Series(is_promise)).then(pl.Series(kept)).alias("promise_kept"),
        pl.when(pl.Series(code == OUTCOMES.index("hardship")))
        .then(pl.Series(u_plan < PLAN_KEEP[beh])).alias("plan_kept"),
        pl.when(pl.Series(u_survey < SURVEY_RATE)).then(pl.Series(score)).alias("survey"),
        pl.when(pl.Series(dispute)).then(pl.Series(u_upheld < DISPUTE_UPHELD))
        .alias("dispute_upheld"),
        pl.when(pl.Series(dispute)).then(pl.Series(decide, dtype=pl.Int64)).alias("decide_after"),
    )


def ticket_decisions(utility: Utility, ticket_ids: list[int]) -> list[tuple[int, bool]]:
    """For each ticket, after how many working days (1–4) the supervisor decides it and whether
    it is upheld — deterministic for (seed, ticket)."""
    out = []
    for t in ticket_ids:
        u = stream(utility.seed, "ticket_decision", int(t)).random(size=2)
        out.append((1 + int(u[0] * 4), bool(u[1] < DISPUTE_UPHELD)))
    return out
