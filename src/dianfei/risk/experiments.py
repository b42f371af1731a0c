"""Strategy experiments (策略实验, champion/challenger): random assignment of accounts to arms
with a holdout, the seed's KPIs per arm with 95 % confidence intervals, and the simulation
behind the built-in "uniform vs risk-driven dunning" experiment on the synthetic county.

Pure functions on Polars frames; ``risk.insight`` persists assignments and reads the KPIs from
the database (docs/risk-insight.md).

**Confidence intervals.** Accounts, not bills, are the unit of randomisation, so every interval
is clustered by account: a rate Σc/Σb (collection rate, overdue rate) has the linearised
standard error √(n/(n−1) · Σ(cᵢ − R·bᵢ)²) / Σb over accounts i; a mean (payment days, contact
cost) uses per-account sums the same way. 95 % = ± 1.96 standard errors. The difference of a
challenger and the champion adds the variances (independent arms).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    from collections.abc import Callable

    import polars as pl

Z95 = 1.96
_ARM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
#: an experiment's id
ARM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: what a contact costs (fen), for the KPI "cost of contacts" — data a utility overrides:
#: an SMS 0.05 yuan, a letter 2.00 yuan, a stop (crew visit and reconnection) 50.00 yuan
CONTACT_COST_FEN = {"sms": 5, "email": 0, "wechat": 0, "letter": 200, "stop": 5_000}


def parse_arms(text: str) -> list[tuple[str, float]]:
    """``"holdout:0.1,uniform:0.45,risk_driven:0.45"`` → [(arm, share)]; shares must add to 1."""
    arms: list[tuple[str, float]] = []
    for part in text.split(","):
        name, _, share = part.strip().partition(":")
        if not _ARM.match(name):
            raise ValidationError(f"arm name {name!r}: lower-case letters, digits, _ (≤ 32)",
                                  where="--arms")
        try:
            value = float(share)
        except ValueError:
            raise ValidationError(f"arm {name}: share {share!r} is not a number",
                                  where="--arms") from None
        if not 0 < value < 1:
            raise ValidationError(f"arm {name}: share must be between 0 and 1", where="--arms")
        arms.append((name, value))
    if len({a for a, _ in arms}) != len(arms) or len(arms) < 2:
        raise ValidationError("at least two arms, each named once", where="--arms")
    if abs(sum(s for _, s in arms) - 1.0) > 1e-9:
        raise ValidationError(f"shares add up to {sum(s for _, s in arms):g}, not 1",
                              where="--arms")
    return arms


def assign(accounts: pl.Series, arms: list[tuple[str, float]], seed: int) -> pl.DataFrame:
    """account_id, arm: a seeded random permutation of the (sorted, distinct) accounts cut into
    arms of exactly round(share × n) accounts (largest remainder), so the same accounts, arms and
    seed always give the same assignment."""
    import numpy as np
    import polars as pl

    ids = accounts.unique().sort()
    n = ids.len()
    raw = [s * n for _, s in arms]
    counts = [math.floor(x) for x in raw]
    for i in sorted(range(len(arms)), key=lambda i: raw[i] - counts[i], reverse=True)[
            :n - sum(counts)]:
        counts[i] += 1
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    labels = np.repeat(np.arange(len(arms)), counts)
    arm_of = np.empty(n, dtype=np.int64)
    arm_of[order] = labels
    return pl.DataFrame({"account_id": ids,
                         "arm": pl.Series([a for a, _ in arms]).gather(arm_of)})


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def as_json(self, places: int = 4) -> dict[str, float]:
        return {"value": round(self.value, places), "low": round(self.low, places),
                "high": round(self.high, places)}


def _ratio(num: Any, den: Any) -> tuple[float, float]:
    """(R, standard error) of Σnum/Σden over accounts (numpy arrays), clustered."""
    import numpy as np

    n = len(den)
    total = float(np.sum(den))
    if n == 0 or total == 0:
        return 0.0, 0.0
    r = float(np.sum(num)) / total
    z = num - r * den
    se = math.sqrt(n / max(n - 1, 1) * float(np.sum(z * z))) / total
    return r, se


def _estimate(r: float, se: float) -> Estimate:
    return Estimate(r, r - Z95 * se, r + Z95 * se)


KPI_NAMES = ("collection_rate", "overdue_rate", "avg_payment_days", "contact_cost_per_account")


def _json(name: str, e: Estimate) -> dict[str, Any]:
    """Rates to 4 places, days to 2; the contact cost (an estimate in fen) as yuan strings."""
    if name == "contact_cost_per_account":
        def yuan(x: float) -> str:
            return str((Decimal(repr(x)) / 100).quantize(Decimal("0.01"), ROUND_HALF_UP))
        return {"value": yuan(e.value), "low": yuan(e.low), "high": yuan(e.high)}
    return e.as_json(2 if name == "avg_payment_days" else 4)


def arm_kpis(bills: pl.DataFrame, contacts: pl.DataFrame, as_of: date) -> dict[str, Any]:
    """The seed's KPIs per arm with 95 % intervals, and each challenger minus the champion.

    ``bills``: account_id, arm, amount (fen), issued_on, due_on, collected (fen allocated to
    the bill by ``as_of``), paid_in_full_on (null = not yet). ``contacts``: account_id, arm,
    cost (fen) — one row per contact. The champion is the arm named ``champion`` or
    ``uniform`` if there is one, else the first arm that is not ``holdout``.
    """
    import numpy as np
    import polars as pl

    b = bills.filter(pl.col("amount") > 0).with_columns(
        pl.when(pl.col("paid_in_full_on") <= as_of).then(pl.col("paid_in_full_on"))
        .otherwise(None).alias("paid_on"))
    per = b.group_by("account_id", "arm").agg(
        pl.col("amount").sum().alias("billed"),
        pl.col("collected").clip(upper_bound=pl.col("amount")).sum().alias("collected"),
        (pl.col("amount") - pl.col("collected").clip(upper_bound=pl.col("amount")))
        .filter(pl.col("due_on") < as_of).sum().alias("overdue"),
        (pl.col("paid_on") - pl.col("issued_on")).dt.total_days().filter(
            pl.col("paid_on").is_not_null()).sum().alias("days"),
        pl.col("paid_on").is_not_null().sum().alias("paid_bills"))
    cost = contacts.group_by("account_id").agg(pl.col("cost").sum().alias("cost"),
                                               pl.len().alias("contacts"))
    per = per.join(cost, on="account_id", how="left").with_columns(
        pl.col("cost", "contacts").fill_null(0))
    arms = sorted(per["arm"].unique().to_list())
    out: dict[str, Any] = {"as_of": as_of.isoformat(), "arms": {}}
    ses: dict[str, dict[str, tuple[float, float]]] = {}
    for arm in arms:
        a = per.filter(pl.col("arm") == arm)
        f = {c: a[c].cast(pl.Float64).to_numpy() for c in
             ("billed", "collected", "overdue", "days", "paid_bills", "cost", "contacts")}
        ones = np.ones(a.height)
        k = {"collection_rate": _ratio(f["collected"], f["billed"]),
             "overdue_rate": _ratio(f["overdue"], f["billed"]),
             "avg_payment_days": _ratio(f["days"], f["paid_bills"]),
             "contact_cost_per_account": _ratio(f["cost"], ones)}
        ses[arm] = k
        out["arms"][arm] = {
            "accounts": a.height, "bills": int(b.filter(pl.col("arm") == arm).height),
            "billed": fmt_yuan(int(f["billed"].sum())),
            "collected": fmt_yuan(int(f["collected"].sum())),
            "contacts": int(f["contacts"].sum()),
            **{name: _json(name, _estimate(*k[name])) for name in KPI_NAMES}}
    named = [a for a in ("champion", "uniform") if a in arms]
    champion = named[0] if named else next((a for a in arms if a != "holdout"), arms[0])
    out["champion"] = champion
    out["differences"] = {}
    for arm in arms:
        if arm == champion:
            continue
        out["differences"][arm] = {}
        for name in KPI_NAMES:
            (r1, s1), (r0, s0) = ses[arm][name], ses[champion][name]
            out["differences"][arm][name] = _json(
                name, _estimate(r1 - r0, math.sqrt(s1 * s1 + s0 * s0)))
    return out


# -- the built-in experiment: uniform vs risk-driven dunning on the synthetic county ---------------

#: dunning ladders as data: (days after the due date, action, channel). "stop" is the supply
#: stop (a residential stop notice comes at least 7 days before it, as collections requires)
LADDERS: dict[str, dict[str, list[tuple[int, str, str]]]] = {
    "holdout": {"low": [], "medium": [], "high": []},
    "uniform": {band: [(1, "reminder", "sms"), (15, "final_reminder", "sms"),
                       (30, "stop_notice", "letter"), (37, "stop", "stop")]
                for band in ("low", "medium", "high")},
    "risk_driven": {
        "low": [(5, "reminder", "sms"), (45, "stop_notice", "letter"), (52, "stop", "stop")],
        "medium": [(1, "reminder", "sms"), (15, "final_reminder", "sms"),
                   (30, "stop_notice", "letter"), (37, "stop", "stop")],
        "high": [(1, "reminder", "sms"), (8, "stop_notice", "letter"), (15, "stop", "stop")],
    },
}


def simulate_dunning(bills: pl.DataFrame, bands: pl.DataFrame, arms: pl.DataFrame,
                     reconnect: Callable[[pl.DataFrame], pl.DataFrame],
                     as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Run each arm's ladder over the bills → (bills with collected and paid_in_full_on as the
    ladder left them, contacts) for :func:`arm_kpis`.

    ``bills``: account_id, bill_id, amount, issued_on, due_on, natural_paid_on (when the
    customer pays with no dunning; null = never). ``bands``: account_id, band (low|medium|high:
    the risk score as of the experiment's start). ``arms``: account_id, arm. ``reconnect``:
    cases (case_id Int64, customer_id, suspended_on) → the same with paid_on (when a stopped
    customer pays to be reconnected; null = never) — the synthetic county's
    ``pay_after_suspension``. A contact is made only if the bill is still unpaid that day; a
    bill is paid at the earlier of its natural date and the reconnection payment. Each bill is
    dunned on its own (a simplification: one stop would settle every open bill).
    """
    import polars as pl

    steps = pl.DataFrame(
        [{"arm": arm, "band": band, "day": d, "action": act, "channel": ch}
         for arm, by_band in LADDERS.items() for band, ladder in by_band.items()
         for d, act, ch in ladder],
        schema={"arm": pl.String, "band": pl.String, "day": pl.Int64, "action": pl.String,
                "channel": pl.String})
    b = (bills.join(arms, on="account_id", how="inner")
         .join(bands, on="account_id", how="left")
         .with_columns(pl.col("band").fill_null("low"))
         .filter(pl.col("arm").is_in(list(LADDERS))))
    overdue = b.filter(pl.col("natural_paid_on").is_null()
                       | (pl.col("natural_paid_on") > pl.col("due_on")))
    # contacts happen while the bill is unpaid (naturally) and on or before as_of
    acts = (overdue.join(steps, on=["arm", "band"], how="inner")
            .with_columns((pl.col("due_on") + pl.duration(days=pl.col("day"))).alias("on"))
            .filter((pl.col("on") <= as_of)
                    & (pl.col("natural_paid_on").is_null()
                       | (pl.col("natural_paid_on") > pl.col("on")))))
    stops = acts.filter(pl.col("action") == "stop").with_row_index("case_id").select(
        pl.col("case_id").cast(pl.Int64), pl.col("account_id").alias("customer_id"),
        pl.col("on").alias("suspended_on"), "bill_id")
    back = reconnect(stops.select("case_id", "customer_id", "suspended_on")).select(
        "case_id", pl.col("paid_on").alias("reconnect_paid_on"))
    stops = stops.join(back, on="case_id", how="left")
    out = (b.join(stops.select("bill_id", "reconnect_paid_on"), on="bill_id", how="left")
           .with_columns(pl.min_horizontal("natural_paid_on", "reconnect_paid_on")
                         .alias("paid_in_full_on"))
           .with_columns(pl.when(pl.col("paid_in_full_on") <= as_of).then(pl.col("amount"))
                         .otherwise(0).alias("collected")))
    costs = pl.DataFrame({"channel": list(CONTACT_COST_FEN),
                          "cost": list(CONTACT_COST_FEN.values())})
    contacts = acts.join(costs, on="channel", how="left").select("account_id", "arm", "cost")
    return out.select("account_id", "arm", "bill_id", "amount", "issued_on", "due_on",
                      "collected", "paid_in_full_on"), contacts


def risk_bands(payment: pl.DataFrame) -> pl.DataFrame:
    """account_id, band from payment facts (``segments.payment_facts``) with the transparent
    points score of ``risk.service.RulesScorer`` (the band collections' ladders use today)."""
    import polars as pl

    from dianfei.risk.service import RulesScorer

    feats = payment.select("account_id", pl.col("late_12m").alias("late_count"),
                           "avg_days_late", pl.col("overdue_amount").alias("arrears"),
                           pl.lit(0).alias("broken_plans"))
    return RulesScorer().score(feats).select("account_id", "band")


def experiment_window(start: date, months: int) -> tuple[date, date]:
    """(first issue day, the as-of day) of an experiment over ``months`` months of bills,
    measured 60 days after the last due date so the ladders have run."""
    return start, start + timedelta(days=30 * months + 75)
