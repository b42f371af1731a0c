"""Next-bill forecast (下期电费预测): each account's expected energy and bill for a coming month,
with an interval, rated by the real tariff engine (tier position included).

Pure functions on Polars frames; only months before the target are read (no look-ahead).

1. **Season** (季节): for each customer class and calendar month, the median over the class's
   accounts of kWh ÷ the account's own mean over the 12 months before the target. A class with
   no history for the target's calendar month gets 1 (no season) — the short-history fallback.
2. **Level** (用电水平): the median of the account's last ``level_months`` months divided by
   their season factors — robust to one odd month, quick to follow a lasting change.
3. **Energy**: level × the season factor of the target's calendar month.
4. **Interval**: the same forecast made for each of the ``calibration`` months before the
   target (each from the months before *it*) gives, per class, the spread of
   log(actual ÷ forecast); its 10 % and 90 % quantiles make an 80 % interval.
5. **Bill**: the energy (and both interval ends) rated with ``tariffs.service.rate_frame`` for
   the target period, with the year's energy so far (``ytd_kwh``) so annual tiers start where
   the account stands. Time-of-use tariffs need a split: :data:`TOU_SHARES` (data) splits the
   forecast over the periods the tariff prices. An account the engine cannot rate (a two-part
   tariff with no capacity on file, an unknown tariff) keeps its energy forecast and gets
   ``amount = null`` with the engine's reason.

Amounts are integer fen (the engine's own half-up per line); nothing here is a float on a money
path — the float is the *energy* estimate, rounded to 0.01 kWh before rating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dianfei.core.clock import Period
from dianfei.risk.anomaly import EPS, indexed

if TYPE_CHECKING:
    import polars as pl

    from dianfei.tariffs.service import TariffCatalogue

#: how a time-of-use forecast is split over the periods a tariff prices (shares of total kWh,
#: by the set of periods; the last period takes the remainder). The synthetic county's meter
#: means (docs/sim.md: residential peak U(0.50, 0.72); four-rate sharp 5–12 %, peak and flat
#: 25–35 %); a utility overrides them. Any other set of periods is split evenly.
TOU_SHARES: dict[tuple[str, ...], tuple[float, ...]] = {
    ("peak", "valley"): (0.61, 0.39),
    ("sharp", "peak", "flat", "valley"): (0.085, 0.30, 0.30, 0.315),
}

FORECAST_COLUMNS = ("account_id", "period", "kwh", "kwh_low", "kwh_high", "ytd_kwh", "amount",
                    "amount_low", "amount_high", "usual_kwh", "usual_amount", "high", "basis",
                    "reason")

#: "unusually high" (the advance notice): the forecast bill is at least HIGH_PERCENT % of the
#: usual bill (the account's median month of the last 12, rated the same way) and at least
#: HIGH_MIN_RISE fen above it
HIGH_PERCENT = 130
HIGH_MIN_RISE = 5_000


def _season(h: pl.DataFrame, end: int) -> pl.DataFrame:
    """customer_class, month (1–12), season factor, from the 12 months ending at ``end``."""
    import polars as pl

    year = h.filter((pl.col("pidx") <= end) & (pl.col("pidx") > end - 12))
    mean = pl.col("kwh").mean().over("account_id")
    s = (year.with_columns(((pl.col("kwh") + EPS) / (mean + EPS)).alias("ratio"),
                           (pl.col("pidx") % 12 + 1).alias("month"))
         .group_by("customer_class", "month").agg(pl.col("ratio").median().alias("season")))
    # normalise so a class's months average 1 (a full year of them)
    return s.with_columns(pl.col("season") / pl.col("season").mean().over("customer_class"))


def energy_forecast(history: pl.DataFrame, facts: pl.DataFrame, target: Period, *,
                    level_months: int = 6) -> pl.DataFrame:
    """account_id, customer_class, kwh_f (Float64, 0.01 kWh) for ``target`` from the months
    before it; accounts with no month in the 12 before the target are left out."""
    import polars as pl

    t = target.year * 12 + target.month - 1
    h = (indexed(history).filter((pl.col("pidx") < t) & (pl.col("pidx") >= t - 12))
         .select("account_id", "period", "pidx", "kwh")
         .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown")))
    season = _season(h, t - 1)
    h = (h.with_columns((pl.col("pidx") % 12 + 1).alias("month"))
         .join(season, on=["customer_class", "month"], how="left")
         .with_columns(pl.col("season").fill_null(1.0)))
    deseasoned = (pl.col("kwh") + EPS) / pl.col("season")
    recent = (h.filter(pl.col("pidx") >= t - level_months).group_by("account_id")
              .agg(deseasoned.median().alias("recent")))
    # accounts whose months are all older than level_months still get a level (the year's)
    level = (h.group_by("account_id").agg(deseasoned.median().alias("year"),
                                          pl.col("customer_class").first())
             .join(recent, on="account_id", how="left")
             .with_columns(pl.coalesce("recent", "year").alias("level")))
    target_season = season.filter(pl.col("month") == target.month).select(
        "customer_class", pl.col("season").alias("target_season"))
    return (level.join(target_season, on="customer_class", how="left")
            .select("account_id", "customer_class",
                    pl.max_horizontal(pl.col("level") * pl.col("target_season").fill_null(1.0)
                                      - EPS, pl.lit(0.0)).alias("kwh_f")))


def residual_quantiles(history: pl.DataFrame, facts: pl.DataFrame, target: Period, *,
                       calibration: int = 3, low: float = 0.10,
                       high: float = 0.90) -> pl.DataFrame:
    """customer_class, q_low, q_high of log((actual+1 kWh)/(forecast+1 kWh)) over the
    ``calibration`` months before ``target`` (each forecast from the months before it)."""
    import polars as pl

    history = indexed(history)
    parts = []
    p = target
    for _ in range(calibration):
        p = p.prev()
        f = energy_forecast(history, facts, p)
        actual = history.filter(pl.col("period") == str(p)).select("account_id", "kwh")
        parts.append(f.join(actual, on="account_id", how="inner").select(
            "customer_class",
            ((pl.col("kwh") + EPS) / (pl.col("kwh_f") + EPS)).log().alias("err")))
    if not parts:
        return pl.DataFrame(schema={"customer_class": pl.String, "q_low": pl.Float64,
                                    "q_high": pl.Float64})
    errs = pl.concat(parts)
    # the interval always holds the forecast itself, even when the recent months all erred
    # one way (a short history, a season change)
    return errs.group_by("customer_class").agg(
        pl.min_horizontal(pl.col("err").quantile(low), pl.lit(0.0)).alias("q_low"),
        pl.max_horizontal(pl.col("err").quantile(high), pl.lit(0.0)).alias("q_high"))


def tou_split(usage: pl.DataFrame, periods_of: dict[str, tuple[str, ...]]) -> pl.DataFrame:
    """``usage`` + ``{period}_kwh`` columns for the accounts whose tariff prices time-of-use
    periods (``periods_of``: tariff_id → periods), split by :data:`TOU_SHARES`; the last period
    takes the remainder so the parts add up to ``kwh`` exactly."""
    import polars as pl

    out = usage
    for name in ("sharp", "peak", "flat", "valley"):
        out = out.with_columns(pl.lit(None, dtype=pl.Int64).alias(f"{name}_kwh"))
    for tariff_id, periods in periods_of.items():
        if not periods:
            continue
        mine = pl.col("tariff_id") == tariff_id
        shares = list(TOU_SHARES.get(periods, [1.0 / len(periods)] * len(periods)))
        total = sum(shares)
        given = pl.lit(0, dtype=pl.Int64)
        for name, share in zip(periods[:-1], shares[:-1], strict=True):
            part = (pl.col("kwh") * (share / total)).floor().cast(pl.Int64)
            out = out.with_columns(pl.when(mine).then(part).otherwise(pl.col(f"{name}_kwh"))
                                   .alias(f"{name}_kwh"))
            given = given + pl.col(f"{name}_kwh").fill_null(0)
        last = periods[-1]
        out = out.with_columns(pl.when(mine).then(pl.col("kwh") - given)
                               .otherwise(pl.col(f"{last}_kwh")).alias(f"{last}_kwh"))
    return out


def rate_forecast(catalogue: TariffCatalogue, target: Period, usage: pl.DataFrame,
                  column: str) -> pl.DataFrame:
    """account_id, amount (fen) and reason for ``usage`` (account_id, tariff_id, low_income,
    ytd_kwh and the energy in ``column``) rated for ``target`` by the tariff engine."""
    import polars as pl

    from dianfei.core.errors import TariffError
    from dianfei.tariffs.service import rate_frame

    periods_of: dict[str, tuple[str, ...]] = {}
    for t in usage["tariff_id"].drop_nulls().unique().to_list():
        try:
            energy = catalogue.version_for(t, target).energy
        except TariffError:
            continue
        periods_of[t] = tuple(getattr(energy, "periods", ()))
    u = tou_split(usage.select("account_id", "tariff_id", "low_income", "ytd_kwh",
                               pl.col(column).alias("kwh")), periods_of)
    lines, errors = rate_frame(catalogue, target, u)
    amounts = lines.group_by("account_id").agg(pl.col("amount").sum().alias("amount"))
    return (usage.select("account_id").join(amounts, on="account_id", how="left")
            .join(errors.select("account_id", pl.col("reason")), on="account_id", how="left"))


def forecast_bills(history: pl.DataFrame, facts: pl.DataFrame, target: Period,
                   catalogue: TariffCatalogue, *, calibration: int = 3) -> pl.DataFrame:
    """The next-bill forecast of every account with history: FORECAST_COLUMNS.

    ``history``: account_id, period, kwh (0.01 kWh) of past bills; ``facts``: account_id,
    customer_class, tariff_id, low_income. kWh columns are Int64 in 0.01 kWh, amounts Int64
    fen (null when the engine could not rate; ``reason`` says why). ``basis`` says which season
    was used (``season`` or ``no_season`` — fewer than 12 months of class history).
    """
    import polars as pl

    t = target.year * 12 + target.month - 1
    history = indexed(history)
    f = energy_forecast(history, facts, target)
    q = residual_quantiles(history, facts, target, calibration=calibration)
    seen = (history.filter((pl.col("pidx") < t) & (pl.col("pidx") >= t - 12))
            .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
            .with_columns(pl.col("customer_class").fill_null("unknown"))
            .group_by("customer_class").agg(pl.col("pidx").n_unique().alias("months_seen")))
    usual = (history.filter((pl.col("pidx") < t) & (pl.col("pidx") >= t - 12))
             .group_by("account_id").agg(pl.col("kwh").median().round(0).cast(pl.Int64)
                                         .alias("usual_kwh")))
    ytd = (history.filter((pl.col("pidx") < t) & (pl.col("pidx") >= target.year * 12))
           .group_by("account_id").agg(pl.col("kwh").sum().cast(pl.Int64).alias("ytd_kwh")))
    out = (f.join(q, on="customer_class", how="left")
           .join(seen, on="customer_class", how="left")
           .join(ytd, on="account_id", how="left")
           .join(usual, on="account_id", how="left")
           .join(facts.select("account_id", "tariff_id", "low_income"), on="account_id",
                 how="left")
           .with_columns(
               pl.lit(str(target)).alias("period"),
               pl.col("kwh_f").round(0).cast(pl.Int64).alias("kwh"),
               # no calibration months yet: a wide ±50 % interval rather than none
               (((pl.col("kwh_f") + EPS) * pl.col("q_low").fill_null(-0.69).exp()) - EPS)
               .clip(lower_bound=0).round(0).cast(pl.Int64).alias("kwh_low"),
               (((pl.col("kwh_f") + EPS) * pl.col("q_high").fill_null(0.41).exp()) - EPS)
               .clip(lower_bound=0).round(0).cast(pl.Int64).alias("kwh_high"),
               pl.col("ytd_kwh").fill_null(0),
               pl.col("low_income").fill_null(False),
               pl.when(pl.col("months_seen") >= 12).then(pl.lit("season"))
               .otherwise(pl.lit("no_season")).alias("basis")))
    rated = {c: rate_forecast(catalogue, target, out, c)
             for c in ("kwh", "kwh_low", "kwh_high", "usual_kwh")}
    out = (out.join(rated["kwh"], on="account_id", how="left")
           .join(rated["kwh_low"].select("account_id", pl.col("amount").alias("amount_low")),
                 on="account_id", how="left")
           .join(rated["kwh_high"].select("account_id", pl.col("amount").alias("amount_high")),
                 on="account_id", how="left")
           .join(rated["usual_kwh"].select("account_id", pl.col("amount").alias("usual_amount")),
                 on="account_id", how="left")
           .with_columns(pl.when(pl.col("tariff_id").is_null()).then(pl.lit("no_tariff"))
                         .otherwise(pl.col("reason")).alias("reason"),
                         ((pl.col("amount") * 100 >= pl.col("usual_amount") * HIGH_PERCENT)
                          & (pl.col("amount") - pl.col("usual_amount") >= HIGH_MIN_RISE))
                         .fill_null(False).alias("high")))
    return out.select(FORECAST_COLUMNS).sort("account_id")


def accuracy(history: pl.DataFrame, facts: pl.DataFrame, catalogue: TariffCatalogue,
             periods: list[Period]) -> dict[str, float | int]:
    """Held-out accuracy: each of ``periods`` forecast from the months before it and compared
    with what was billed. MAPE over accounts whose actual is at least 10 kWh (a percentage error
    on a near-zero month means nothing); coverage = share of actuals inside the interval."""
    import polars as pl

    history = indexed(history)
    rows = []
    for p in periods:
        f = forecast_bills(history, facts, p, catalogue)
        actual = history.filter(pl.col("period") == str(p)).select(
            "account_id", pl.col("kwh").alias("actual_kwh"))
        real_amount = rate_forecast(
            catalogue, p,
            actual.join(f.select("account_id", "ytd_kwh"), on="account_id", how="inner")
            .join(facts.select("account_id", "tariff_id", "low_income"), on="account_id",
                  how="left"), "actual_kwh").select("account_id",
                                                   pl.col("amount").alias("actual_amount"))
        rows.append(f.join(actual, on="account_id", how="inner")
                    .join(real_amount, on="account_id", how="left"))
    j = pl.concat(rows)
    sized = j.filter(pl.col("actual_kwh") >= 1_000)
    priced = sized.filter(pl.col("amount").is_not_null() & pl.col("actual_amount").is_not_null()
                          & (pl.col("actual_amount") > 0))
    kwh_err = ((pl.col("kwh") - pl.col("actual_kwh")).abs() / pl.col("actual_kwh"))
    amt_err = ((pl.col("amount") - pl.col("actual_amount")).abs() / pl.col("actual_amount"))
    inside = ((pl.col("actual_kwh") >= pl.col("kwh_low"))
              & (pl.col("actual_kwh") <= pl.col("kwh_high")))
    return {
        "months": len(periods),
        "n": j.height,
        "mape_kwh": float(sized.select(kwh_err.mean()).item() or 0.0),
        "median_ape_kwh": float(sized.select(kwh_err.median()).item() or 0.0),
        "mape_amount": float(priced.select(amt_err.mean()).item() or 0.0),
        "coverage": float(j.select(inside.mean()).item() or 0.0),
        "rated": priced.height,
    }
