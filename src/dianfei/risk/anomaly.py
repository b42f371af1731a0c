"""Theft and anomaly warnings (窃电/计量异常预警) on monthly consumption.

Pure functions on Polars frames, so the same code scores the synthetic county, an imported
utility's bill history, or a million accounts. The input is one row per account and month:
``account_id``, ``period`` (``YYYY-MM``), ``kwh`` (Int64, 0.01 kWh — billed or metered energy),
and the account facts ``account_id``, ``customer_class``.

Every signal compares an account with itself before and with *similar customers in the same
month* (its class), so seasons, holidays and weather cancel out:

``rel`` = (kwh + 1 kWh) / (median kwh of the class that month + 1 kWh) — the account's usage
relative to its peers. The last ``recent`` months ("now") are compared with the ``baseline``
months before them ("before"):

| signal | meaning | column |
|---|---|---|
| sudden sustained drop | log(median rel now / median rel before) | ``drop`` |
| … measured in the account's own noise | ``drop`` / the spread of its log rel before | ``drop_z`` |
| … and against its peers | robust z-score of ``drop`` within the class (median, MAD) | ``peer_z`` |
| sustained | months now below 70 % of the account's level before | ``months_low`` |
| zero run on an occupied profile | trailing months at 0 kWh, before ≥ 30 kWh a month | ``zero_run`` |
| flat line | the last ``flat_months`` months within 1 % while the class moved ≥ 10 % | ``flat_line`` |

``score`` (0–100) is the transparent unsupervised score: the larger of the drop measured in the
account's own noise and against its peers (each only downwards, capped at 6σ) plus points for
a sustained drop, a zero run and a flat line — see :data:`WEIGHTS`. An isolation forest
(scikit-learn) gives a second, model-free view (``iforest``, 0–1) on the same features.
``reasons`` names the signals that fired, in words.

Not here (docs/risk-insight.md says why): night/day pattern breaks need time-of-use registers
or interval data on the bill history, and station line loss needs a station (台区) meter —
neither the synthetic county nor the metering store has one today.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    import polars as pl

#: 1 kWh in the 0.01-kWh units of ``kwh``: keeps a near-zero month (winter irrigation) finite
EPS = 100
#: MAD → standard deviation for a normal distribution
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Weights:
    """The points of the unsupervised score (a utility may tune them; they are data)."""

    per_sigma: float = 10.0       # per σ of downward drop (the larger of own and peer σ)
    sigma_cap: float = 6.0
    sustained: float = 5.0        # per month now below 70 % of before
    low_share: float = 0.7
    zero_run: float = 25.0        # a zero run of ≥ 2 months on an occupied profile
    occupied_kwh: int = 3_000     # 30 kWh a month (0.01 kWh)
    flat_line: float = 15.0
    flat_tolerance: float = 0.01
    class_moved: float = 0.10


WEIGHTS = Weights()

FEATURE_COLUMNS = ("drop", "drop_z", "peer_z", "months_low", "zero_run", "flat_line",
                   "level_before")


def indexed(history: pl.DataFrame) -> pl.DataFrame:
    """history + ``pidx`` (months since year 0, Int32), computed once from the distinct periods
    (a handful) rather than by parsing every row; a period that is not ``YYYY-MM`` is refused."""
    import polars as pl

    if "pidx" in history.columns:
        return history
    if history.height == 0:
        return history.with_columns(pl.lit(None, dtype=pl.Int32).alias("pidx"))
    mapping: dict[str, int] = {}
    for p in history["period"].unique().to_list():
        try:
            mapping[p] = Period.parse(str(p)).index()
        except ValidationError as exc:
            raise ValidationError(exc.message, where="consumption history") from None
    return history.with_columns(pl.col("period").replace_strict(
        mapping, return_dtype=pl.Int32).alias("pidx"))


def relative_usage(history: pl.DataFrame, facts: pl.DataFrame) -> pl.DataFrame:
    """history + ``pidx`` and ``rel``: usage relative to the class median of the same month."""
    import polars as pl

    h = (indexed(history).select("account_id", "period", "pidx", pl.col("kwh").cast(pl.Int64))
         .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown")))
    med = pl.col("kwh").median().over("customer_class", "period")
    return h.with_columns(((pl.col("kwh") + EPS) / (med + EPS)).alias("rel"))


def features(history: pl.DataFrame, facts: pl.DataFrame, as_of: Period, *, recent: int = 3,
             baseline: int = 21, flat_months: int = 4, weights: Weights = WEIGHTS) -> pl.DataFrame:
    """One row per account with a month in the window ending at ``as_of`` (inclusive): the
    signals of the module table. Only months ≤ ``as_of`` are read (no look-ahead)."""
    import polars as pl

    end = as_of.year * 12 + as_of.month - 1
    h0 = indexed(history)
    h = relative_usage(h0.filter((pl.col("pidx") <= end)
                                 & (pl.col("pidx") > end - recent - baseline)), facts)
    h = h.with_columns((pl.col("pidx") > end - recent).alias("now"),
                       pl.col("rel").log().alias("lrel"))
    # the level before: the highest 3-month median of rel in the baseline — theft that began
    # long ago still shows against the months before it began
    before = (h.filter(~pl.col("now")).group_by("account_id").agg(
        pl.col("rel").sort_by("pidx").rolling_median(window_size=min(3, baseline), min_samples=1)
        .max().alias("rel_before"),
        pl.col("lrel").std().alias("spread"),
        pl.col("kwh").median().alias("level_before"),
        pl.len().alias("months_before")))
    now = (h.filter(pl.col("now")).join(before.select("account_id", "rel_before"),
                                         on="account_id", how="inner")
           .group_by("account_id").agg(
               pl.col("rel").median().alias("rel_now"),
               (pl.col("rel") < pl.col("rel_before") * weights.low_share).sum().cast(pl.Int32)
               .alias("months_low"),
               pl.len().alias("months_now")))
    # trailing zero months: walk back from the newest month while kwh == 0
    zeros = h.group_by("account_id").agg(
        (pl.col("kwh").sort_by("pidx", descending=True) == 0).cast(pl.Int32).cum_prod().sum()
        .alias("zeros"))
    class_mean = (h.group_by("customer_class", "pidx").agg(pl.col("kwh").median().alias("cm")))
    last = h.filter(pl.col("pidx") > end - flat_months)
    flat = (last.join(class_mean, on=["customer_class", "pidx"], how="left")
            .group_by("account_id").agg(
                pl.len().alias("n_flat"),
                ((pl.col("kwh").max() - pl.col("kwh").min())
                 <= pl.col("kwh").mean() * weights.flat_tolerance).alias("still"),
                ((pl.col("cm").max() - pl.col("cm").min())
                 >= pl.col("cm").mean() * weights.class_moved).alias("moved"),
                (pl.col("kwh").mean() > 0).alias("some")))
    f = (now.join(before, on="account_id", how="inner")
         .join(zeros, on="account_id", how="left").join(flat, on="account_id", how="left")
         .join(facts.select("account_id", "customer_class"), on="account_id", how="left")
         .with_columns(pl.col("customer_class").fill_null("unknown")))
    drop = (pl.col("rel_now") / pl.col("rel_before")).log()
    f = f.with_columns(
        drop.alias("drop"),
        (drop / pl.max_horizontal(pl.col("spread").fill_null(0.0), pl.lit(0.05))).alias("drop_z"))
    med = pl.col("drop").median().over("customer_class")
    mad = (pl.col("drop") - med).abs().median().over("customer_class") * MAD_SCALE
    f = f.with_columns(
        ((pl.col("drop") - med) / pl.max_horizontal(mad, pl.lit(0.05))).alias("peer_z"),
        pl.when(pl.col("level_before") >= weights.occupied_kwh).then(pl.col("zeros"))
        .otherwise(0).cast(pl.Int32).alias("zero_run"),
        (pl.col("still") & pl.col("moved") & pl.col("some")
         & (pl.col("n_flat") >= flat_months)).fill_null(False).alias("flat_line"),
    )
    return f.select("account_id", "customer_class", "months_before", "months_now", *FEATURE_COLUMNS)


def score(feats: pl.DataFrame, weights: Weights = WEIGHTS) -> pl.DataFrame:
    """feats + ``score`` (Float64, 0–100) and ``reasons`` (the signals that fired, in words)."""
    import polars as pl

    w = weights
    # a drop counts only on an occupied profile: a vacant home's 0–3 kWh swing wildly in
    # relative terms and are worth no inspection
    occupied = pl.col("level_before") >= w.occupied_kwh
    sigma = pl.when(occupied).then(pl.min_horizontal(
        pl.max_horizontal(-pl.col("drop_z"), -pl.col("peer_z"), pl.lit(0.0)),
        pl.lit(w.sigma_cap))).otherwise(0.0)
    zero = pl.col("zero_run") >= 2
    points = (sigma * w.per_sigma
              + pl.when(occupied).then(pl.col("months_low") * w.sustained).otherwise(0.0)
              + pl.when(zero).then(w.zero_run).otherwise(0.0)
              + pl.when(pl.col("flat_line")).then(w.flat_line).otherwise(0.0))
    reasons = pl.concat_str([
        pl.when((sigma >= 2) & (pl.col("months_low") >= 2)).then(pl.format(
            "sustained drop: {}% below its usual level against similar customers",
            ((1 - pl.col("drop").exp()) * 100).round(0).cast(pl.Int64))),
        pl.when(-pl.col("peer_z") >= 3).then(pl.lit("unlike similar customers")),
        pl.when(zero).then(pl.format("{} months at zero on an occupied profile", "zero_run")),
        pl.when(pl.col("flat_line")).then(pl.lit("flat line: the same reading month after month")),
    ], separator="; ", ignore_nulls=True)
    return feats.with_columns(pl.min_horizontal(points, pl.lit(100.0)).alias("score"),
                              reasons.alias("reasons"))


def isolation_scores(feats: pl.DataFrame, *, seed: int = 0) -> pl.Series:
    """An isolation forest (scikit-learn) on the signals, as 0–1 (higher = more unusual).
    Unsupervised and direction-free: it also finds sudden rises, which the points score does
    not; the two are shown side by side."""
    import numpy as np
    import polars as pl
    from sklearn.ensemble import IsolationForest

    if feats.height < 2:
        return pl.Series("iforest", [0.0] * feats.height, dtype=pl.Float64)
    x = feats.select(pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
                     for c in FEATURE_COLUMNS if c != "level_before").to_numpy()
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(x)
    raw = -forest.score_samples(x)  # in (0, 1]; higher = shorter paths = more isolated
    return pl.Series("iforest", np.asarray(raw, dtype=np.float64))


#: fewer recorded inspections than this (or only one kind of outcome): no supervised model
MIN_INSPECTIONS = 20


def supervised_scores(train: pl.DataFrame, feats: pl.DataFrame) -> pl.Series | None:
    """Probability of theft learnt from inspection outcomes, or None when there are too few.

    ``train``: the signals of inspected accounts as of the month before each inspection (no
    look-ahead) with ``theft`` (Boolean) — what the inspection found; ``feats``: the signals to
    score (with ``score``). A logistic regression on standardised signals (scikit-learn): few
    labels are the rule in inspection data, and its weights can be read and explained.
    """
    import numpy as np
    import polars as pl
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = train["theft"].cast(pl.Boolean).to_numpy()
    if train.height < MIN_INSPECTIONS or y.all() or not y.any():
        return None
    cols = [*FEATURE_COLUMNS, "score"]

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        return frame.select(pl.col(c).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
                            for c in cols).to_numpy()

    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced",
                                                               max_iter=1000))
    model.fit(matrix(train), y)
    return pl.Series("supervised", model.predict_proba(matrix(feats))[:, 1], dtype=pl.Float64)


def evaluate(scores: pl.Series, truth: pl.Series, top_share: float = 0.01) -> dict[str, float]:
    """AUC and precision in the top ``top_share`` of ``scores`` against ``truth`` (Boolean);
    ties broken by order, so the top is exactly ⌈share × n⌉ accounts."""
    import math

    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = truth.cast(bool).to_numpy()
    s = scores.cast(float).fill_null(0.0).to_numpy()
    k = max(1, math.ceil(top_share * len(s)))
    top = np.argsort(-s, kind="stable")[:k]
    if not 0 < y.sum() < len(y):
        raise ValidationError("AUC needs both thieves and honest accounts in the truth",
                              where=f"{int(y.sum())} positives of {len(y)}")
    auc = float(roc_auc_score(y, s))
    return {"n": float(len(s)), "positives": float(y.sum()), "auc": auc,
            "precision_top": float(y[top].mean()), "top": float(k)}
