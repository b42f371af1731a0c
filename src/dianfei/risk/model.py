"""The arrears-risk model (欠费风险模型): LightGBM on the as-of features of :mod:`features`.

Two binary targets per bill: ``late`` — the next bill is not paid in full by its due date — and
``late30`` — not paid in full 30 days after it. Training rows are *snapshots*: for each month in
which bills were issued before the cut-off, the features as of that month's first issue date and
the outcome of each account's first bill of the month, judged only on payments before the
cut-off (a bill whose due date is not yet past is left out). The last quarter of the snapshots
(at least one) is held out by time: the booster learns on the earlier ones, the isotonic
calibration (scikit-learn) and every reported metric come from the held-out ones.

When the history is too short to do that — fewer than two snapshots with a known outcome, or a
single outcome among the training rows — the transparent points score of :mod:`service` scores
instead, and every result says so (``scorer: "rules"``).

Per-account reasons are the features with the largest positive contributions to the account's
score (LightGBM ``pred_contrib``, i.e. TreeSHAP values), put into words in zh-CN and en.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dianfei.risk.features import CATEGORICAL, EXCLUDED, FEATURES, NUMERIC, History, features, targets

TARGETS = ("late", "late30")


@dataclass(frozen=True)
class TrainConfig:
    trees: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    #: most recent issue months used as training snapshots (6: the recent half-year says more
    #: about next month than older ones, and keeps 200,000 accounts within minutes)
    max_snapshots: int = 6
    #: share of the rows each tree sees (bagging): the cost of a tree is its rows
    bagging_fraction: float = 0.5
    #: share of the snapshots (the latest ones) held out for calibration and metrics
    valid_share: float = 0.25
    #: LightGBM threads. 1 by default: OpenMP threads spin while they wait, and on a machine
    #: whose cores are busy with other work two threads were 12× slower than one (measured in
    #: docs/benchmarks.md); raise it on a machine the model has to itself
    threads: int = 1
    max_bin: int = 63
    seed: int = 1


# -- training data -------------------------------------------------------------------------------


def snapshots(history: History, cutoff: date, max_snapshots: int) -> list[tuple[date, date]]:
    """(as_of, until) per issue month before ``cutoff`` whose bills' due dates are past by then:
    as_of is the month's first issue date, until the first day of the next month."""
    b = history.bills.filter((pl.col("issued_on") < cutoff) & (pl.col("due_on") < cutoff)
                             & (pl.col("amount") > 0))
    if b.height == 0:
        return []
    months = (b.group_by(pl.col("issued_on").dt.truncate("1mo").alias("m"))
              .agg(pl.col("issued_on").min().alias("first")).sort("m"))
    out = []
    for m, first in months.iter_rows():
        nxt = (m.replace(day=28) + timedelta(days=4)).replace(day=1)
        out.append((first, min(nxt, cutoff)))
    return out[-max_snapshots:]


def training_frame(history: History, cutoff: date, shots: list[tuple[date, date]]) -> pl.DataFrame:
    """Features as of each snapshot joined with the outcome of the snapshot's bills, judged on
    payments before ``cutoff`` only; column ``snapshot`` names the as-of date."""
    frames = []
    for as_of, until in shots:
        t = targets(history, as_of, until, known_before=cutoff).filter(pl.col("late_known"))
        if t.height == 0:
            continue
        f = features(history, as_of).join(
            t.select("account_id", "bill_id", "late", "late30", "late30_known"), on="account_id",
            how="inner")
        frames.append(f.with_columns(pl.lit(as_of).alias("snapshot")))
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


# -- encoding ------------------------------------------------------------------------------------


def vocabulary(frame: pl.DataFrame) -> dict[str, list[str]]:
    return {c: sorted(v for v in frame[c].unique().to_list() if v is not None) for c in CATEGORICAL}


def matrix(frame: pl.DataFrame, vocab: dict[str, list[str]],
           names: Sequence[str] = FEATURES) -> np.ndarray:
    """The model's input: numeric features as floats (NaN = unknown) and each categorical as
    its code in the model's vocabulary (NaN when unseen in training). ``names``: the model's
    features in its order (numeric first; a model keeps the list it was trained with)."""
    cols = [frame[c].cast(pl.Float64).fill_null(float("nan")).to_numpy() for c in names
            if c not in CATEGORICAL]
    for c in (c for c in names if c in CATEGORICAL):
        codes = {v: float(i) for i, v in enumerate(vocab[c])}
        cols.append(frame[c].replace_strict(codes, default=None, return_dtype=pl.Float64)
                    .fill_null(float("nan")).to_numpy())
    return np.column_stack(cols) if cols else np.empty((frame.height, 0))


# -- the model -----------------------------------------------------------------------------------


@dataclass
class ArrearsModel:
    """A trained model: a booster and a calibration per target, the vocabulary of the categorical
    features and what the registry records (training window, metrics, importance)."""

    boosters: dict[str, Any]
    calibration: dict[str, tuple[list[float], list[float]]]
    vocab: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    scorer = "lightgbm"

    @property
    def features(self) -> list[str]:
        """The features the model was trained with, in its order: a model trained before a
        feature was added keeps scoring on its own list (retrain to use the new one)."""
        return list(self.meta.get("features") or FEATURES)

    @property
    def threads(self) -> int:
        return int(self.meta.get("config", {}).get("threads", 1))

    def raw(self, frame: pl.DataFrame, target: str = "late") -> np.ndarray:
        if frame.height == 0:
            return np.empty(0)
        return np.asarray(self.boosters[target].predict(matrix(frame, self.vocab, self.features),
                                                        num_threads=self.threads), dtype=np.float64)

    def calibrate(self, raw: np.ndarray, target: str = "late") -> np.ndarray:
        xs, ys = self.calibration.get(target, ([], []))
        if len(xs) < 2:
            return raw
        out: np.ndarray = np.interp(raw, np.asarray(xs), np.asarray(ys))
        return out

    def predict(self, frame: pl.DataFrame) -> pl.DataFrame:
        """account_id, probability (late by the due date), probability_30 (late by +30 days)."""
        p = self.calibrate(self.raw(frame, "late"), "late")
        p30 = self.calibrate(self.raw(frame, "late30"), "late30") if "late30" in self.boosters else p
        # the 30-day outcome implies the due-date one: keep the pair coherent
        return frame.select("account_id").with_columns(
            pl.Series("probability", p, dtype=pl.Float64),
            pl.Series("probability_30", np.minimum(p30, p), dtype=pl.Float64))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """TreeSHAP contributions to the raw score of ``late`` (one column per feature)."""
        names = self.features
        if frame.height == 0:
            return np.empty((0, len(names)))
        c = np.asarray(self.boosters["late"].predict(matrix(frame, self.vocab, names),
                                                     pred_contrib=True, num_threads=self.threads))
        return c[:, :len(names)]

    # -- registry files -------------------------------------------------------------------------

    def save(self, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        for t, b in self.boosters.items():
            (where / f"booster_{t}.txt").write_text(b.model_to_string(), encoding="utf-8")
        (where / "model.json").write_text(json.dumps({
            "calibration": self.calibration, "vocab": self.vocab, "meta": self.meta,
            "targets": sorted(self.boosters)}, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, where: Path) -> ArrearsModel:
        import lightgbm as lgb

        spec = json.loads((where / "model.json").read_text(encoding="utf-8"))
        boosters = {t: lgb.Booster(model_str=(where / f"booster_{t}.txt").read_text(encoding="utf-8"))
                    for t in spec["targets"]}
        cal = {k: (list(v[0]), list(v[1])) for k, v in spec["calibration"].items()}
        return cls(boosters, cal, spec["vocab"], spec["meta"])


@dataclass(frozen=True)
class TooShort:
    """Why no model could be trained (the rules score instead)."""

    reason: str


def train(history: History, cutoff: date, config: TrainConfig | None = None
          ) -> ArrearsModel | TooShort:
    """Train on what was known before ``cutoff`` (see the module doc)."""
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    from dianfei.risk.metrics import calibration_points, lift_points, ranking_metrics, roc_points

    cfg = config or TrainConfig()
    assert not set(EXCLUDED) & set(FEATURES)
    shots = snapshots(history, cutoff, cfg.max_snapshots)
    if len(shots) < 2:
        return TooShort(f"the history before {cutoff} holds {len(shots)} month(s) of bills past "
                        "their due date; a model needs at least 2 (one to learn, one to check)")
    data = training_frame(history, cutoff, shots)
    if data.height == 0:
        return TooShort(f"no bill issued before {cutoff} has a known outcome")
    order = sorted(data["snapshot"].unique().to_list())
    n_valid = max(1, round(len(order) * cfg.valid_share))
    if len(order) - n_valid < 1:
        return TooShort("too few months with known outcomes to hold one out")
    first_valid = order[-n_valid]
    fit = data.filter(pl.col("snapshot") < first_valid)
    valid = data.filter(pl.col("snapshot") >= first_valid)
    if fit["late"].n_unique() < 2:
        return TooShort(f"every training bill before {first_valid} had the same outcome "
                        f"({'late' if fit['late'][0] else 'paid on time'}); nothing to learn")
    vocab = vocabulary(fit)
    params = {"objective": "binary", "learning_rate": cfg.learning_rate,
              "num_leaves": cfg.num_leaves, "min_data_in_leaf": cfg.min_data_in_leaf,
              "feature_fraction": 0.9, "bagging_fraction": cfg.bagging_fraction, "bagging_freq": 1,
              "num_threads": cfg.threads, "seed": cfg.seed, "deterministic": True,
              "max_bin": cfg.max_bin,
              "verbose": -1, "cat_smooth": 10.0}
    cat_idx = [len(NUMERIC) + i for i in range(len(CATEGORICAL))]
    boosters: dict[str, Any] = {}
    calibration: dict[str, tuple[list[float], list[float]]] = {}
    metrics: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for target in TARGETS:
        f, v = fit, valid
        if target == "late30":
            # the +30-day outcome is known a month later: hold out the latest month where it is
            known = data.filter(pl.col("late30_known"))
            months = sorted(known["snapshot"].unique().to_list())
            if not months:
                continue
            last = months[-1] if len(months) > 1 else None
            f = known.filter(pl.col("snapshot") < last) if last else known
            v = known.filter(pl.col("snapshot") == last) if last else known.clear()
        if f.height == 0 or f[target].n_unique() < 2:
            continue
        ds = lgb.Dataset(matrix(f, vocab, FEATURES), label=f[target].cast(pl.Int32).to_numpy(),
                         feature_name=list(FEATURES), categorical_feature=cat_idx,
                         free_raw_data=True)
        booster = lgb.train(params, ds, num_boost_round=cfg.trees)
        boosters[target] = booster
        yv = v[target].cast(pl.Int32).to_numpy()
        rv = (np.asarray(booster.predict(matrix(v, vocab, FEATURES), num_threads=cfg.threads),
                         dtype=np.float64)
              if v.height else np.empty(0))
        if yv.size and 0 < yv.sum() < yv.size:
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(rv, yv)
            calibration[target] = ([float(x) for x in iso.X_thresholds_],
                                   [float(y) for y in iso.y_thresholds_])
        pv = (np.interp(rv, calibration[target][0], calibration[target][1])
              if target in calibration else rv)
        m = ranking_metrics(yv, rv)
        m["brier_calibrated"] = (round(float(np.mean((pv - yv) ** 2)), 6) if yv.size else None)
        metrics[target] = m
        if target == "late":
            curves = {"roc": roc_points(yv, rv), "calibration": calibration_points(yv, pv),
                      "lift": lift_points(yv, rv)}
    if "late" not in boosters:
        return TooShort("no learnable outcome in the training months")
    gain = boosters["late"].feature_importance(importance_type="gain")
    importance = sorted(((FEATURES[i], float(g)) for i, g in enumerate(gain)), key=lambda x: -x[1])
    meta = {
        "kind": "arrears", "scorer": "lightgbm", "cutoff": str(cutoff),
        "window_from": str(shots[0][0]), "window_to": str(cutoff),
        "train_snapshots": [str(s) for s in order if s < first_valid],
        "valid_snapshots": [str(s) for s in order if s >= first_valid],
        "n_train": fit.height, "n_valid": valid.height, "features": list(FEATURES),
        "excluded": list(EXCLUDED), "metrics": metrics, "importance": importance,
        "curves": curves, "config": cfg.__dict__,
        # what the training population looked like: the report's drift reference
        "reference": _profile(fit),
    }
    return ArrearsModel(boosters, calibration, vocab, meta)


def _profile(frame: pl.DataFrame) -> dict[str, dict[str, list[float]]]:
    """Per numeric feature: bin edges (the training deciles, ties merged) and the training
    population's share in each bin, unknown values as a bin of their own — the drift reference."""
    out = {}
    for c in NUMERIC:
        s = frame[c]
        known = s.drop_nulls()
        if known.len() == 0:
            continue
        qs = [known.quantile(q / 10, "linear") for q in range(1, 10)]
        edges = sorted({float(q) for q in qs if q is not None and math.isfinite(q)})
        out[c] = {"edges": edges, "shares": _shares(edges, s)}
    return out


def _shares(edges: list[float], values: pl.Series) -> list[float]:
    v = values.to_numpy().astype(np.float64)
    missing = np.isnan(v)
    bins = np.searchsorted(np.asarray(edges), v[~missing], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
    counts = np.append(counts, missing.sum())
    return [float(x) for x in counts / max(1, v.size)]


def population_stability(reference: dict[str, list[float]], values: pl.Series) -> float | None:
    """PSI of ``values`` against the training population's bins (≥ 0.25: the population moved;
    retrain). Empty bins count as 0.01 % so that the index stays finite."""
    if values.len() == 0:
        return None
    actual = np.clip(np.asarray(_shares(reference["edges"], values.cast(pl.Float64))), 1e-4, None)
    expected = np.clip(np.asarray(reference["shares"]), 1e-4, None)
    return round(float(np.sum((actual - expected) * np.log(actual / expected))), 6)
