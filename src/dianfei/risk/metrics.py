"""Ranking metrics of a risk score against what happened, safe on awkward data.

AUC and PR-AUC are undefined when every bill had the same outcome (all paid on time, or none):
they come back as ``None`` with a note saying why, never NaN — JSON has no NaN and a check that
reads one would fail far from the cause.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """n, positives, auc, pr_auc, top_decile_lift, base_rate, brier (when ``score`` is a
    probability in [0, 1]) and ``note`` when a metric is undefined.

    The top decile is the ceil(n/10) highest scores; ties at its edge are broken by position
    (the caller sorts its rows by account id first), so the figure is deterministic."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    n = int(y.size)
    pos = int(y.sum())
    out: dict[str, Any] = {"n": n, "positives": pos, "auc": None, "pr_auc": None,
                           "top_decile_lift": None, "base_rate": (pos / n) if n else None}
    notes = []
    if n == 0:
        notes.append("no bills to score")
    elif pos == 0 or pos == n:
        same = "all paid in full by the due date" if pos == 0 else "none paid in full by the due date"
        notes.append(f"AUC and PR-AUC are undefined: every bill had the same outcome ({same})")
    else:
        out["auc"] = _finite(roc_auc_score(y, score))
        out["pr_auc"] = _finite(average_precision_score(y, score))
    if n and pos:
        k = max(1, math.ceil(n / 10))
        order = np.argsort(-score, kind="stable")
        out["top_decile_lift"] = _finite(float(y[order[:k]].mean()) / (pos / n))
    elif n:
        notes.append("top-decile lift is undefined with no positives")
    if n and score.min() >= 0.0 and score.max() <= 1.0:
        out["brier"] = _finite(float(np.mean((score - y) ** 2)))
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _finite(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def roc_points(y: np.ndarray, score: np.ndarray, k: int = 50) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) at about ``k`` thresholds, for the report."""
    from sklearn.metrics import roc_curve

    if y.size == 0 or y.min() == y.max():
        return []
    fpr, tpr, _ = roc_curve(y, score)
    idx = np.unique(np.linspace(0, fpr.size - 1, min(k, fpr.size)).astype(int))
    return [(float(fpr[i]), float(tpr[i])) for i in idx]


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per decile of the prediction."""
    if y.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, y.size)):
        if chunk.size:
            out.append((float(p[chunk].mean()), float(y[chunk].mean()), int(chunk.size)))
    return out


def lift_points(y: np.ndarray, score: np.ndarray, bins: int = 10) -> list[tuple[int, float]]:
    """(decile 1 = highest scores, lift of the decile's positive rate over the base rate)."""
    if y.size == 0 or y.sum() == 0:
        return []
    base = y.mean()
    order = np.argsort(-score, kind="stable")
    return [(i + 1, float(y[chunk].mean() / base))
            for i, chunk in enumerate(np.array_split(order, min(bins, y.size))) if chunk.size]
