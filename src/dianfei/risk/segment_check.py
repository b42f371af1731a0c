"""The segments checked against the arrears model (客户分类校验): are the transparent rules of
``segments.toml`` ordered by risk the way the model — and what then happened — says?

As of a day D, every open account has a segment by the rules (``insight.segments``: payment
facts as of D) and a score by the scorer collections would use on D: the trained model that was
in use then (the newest whose cut-off is on or before D), or, with none trained, the rules-only
points score (points / 100, a rank rather than a probability; every answer says which scored).
The score is computed with the model's own feature and scoring functions on the history cut at D
(``engine.truncate``, ``features.features``, ``engine.model_scores``) — nothing after D is
seen. What happened is each account's next bill: the first live bill of a positive amount issued
in [D, D + window), not paid in full by its due date (``features.targets``), counted where its
outcome is known (its due date is before the last day the history knows).

Per segment: accounts, the score's mean and spread, the observed rate of the next bill not paid
in full by its due date, how many of its accounts are in the model's top and bottom decile, and a
verdict. The segments :data:`ORDERED` should rank by risk (on_time < occasionally_late < chronic,
in the mean score and in the observed rate); an account whose rule and model disagree strongly
(:data:`WRONG_DECILE`: "on_time" in the model's top decile, "chronic" in its bottom one) is
counted and listed with the rule that put it there and the model's reasons, so an analyst can
see which rule to fix. The other segments (theft, vacant, strategic, hardship) are not about
paying late: their figures are shown, with no verdict on order.

Deciles are by rank with ties kept together: an account is in the top decile when at least 90 %
of the accounts scored lower, in the bottom decile when at least 90 % scored higher — so a score
that cannot tell accounts apart (the points score gives most accounts 0) puts none of them in a
decile, rather than some chosen by their ids. A model's accounts are ranked by its raw score: the
calibration is monotone and only merges ranks (its lowest step can hold more than a tenth of
the accounts), so the raw score puts the same accounts in the same order with fewer ties.

No figure is NaN: an empty segment, or one with no known outcome, has ``null`` with a ``note``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dianfei.risk.segments import SEGMENTS

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.risk.features import History
    from dianfei.risk.model import ArrearsModel

#: the segments about paying late, from the least to the most risky: their scores and observed
#: rates should rise in this order
ORDERED = ("on_time", "occasionally_late", "chronic")
#: the decile of the model a segment's accounts should not be in
WRONG_DECILE = {"on_time": "top", "chronic": "bottom"}
#: share of a segment in its wrong decile from which the rule is called into question: a rule
#: no better than chance puts a tenth of its accounts in any decile
DISAGREE_SHARE = 0.10
#: days from D in which an account's next bill is looked for (one billing cycle: every reading
#: route's issue day falls in it)
WINDOW_DAYS = 31
#: how many disagreeing accounts are listed (all are counted)
LIST_TOP = 50


@dataclass(frozen=True)
class Scorer:
    """What scored: ``"lightgbm"`` with the model and its registry row, or ``"rules"``."""

    name: str
    reason: str | None = None
    row: dict[str, Any] | None = None
    model: ArrearsModel | None = None


# -- pure: the figures from frames ------------------------------------------------------------------


def deciles(scores: pl.DataFrame, by: str = "probability") -> pl.DataFrame:
    """``scores`` (account_id, ``by``) with ``decile``: "top" when at least 90 % of the
    accounts scored lower, "bottom" when at least 90 % scored higher, else null."""
    n = scores.height
    p = pl.col(by)
    lower = p.rank("min") - 1          # accounts with a strictly lower score
    higher = n - p.rank("max")         # accounts with a strictly higher score
    return scores.with_columns(
        pl.when(lower >= 0.9 * n).then(pl.lit("top"))
        .when(higher >= 0.9 * n).then(pl.lit("bottom"))
        .otherwise(pl.lit(None, pl.String)).alias("decile"))


def _r(x: Any, places: int = 4) -> float | None:
    if x is None:
        return None
    v = float(x)
    return round(v, places) if math.isfinite(v) else None


def _spread(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"mean": None, "sd": None, "p10": None, "p50": None, "p90": None}
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return {"mean": _r(values.mean()), "sd": _r(values.std(ddof=1)) if values.size > 1 else None,
            "p10": _r(q[0]), "p50": _r(q[1]), "p90": _r(q[2])}


def summarise(frame: pl.DataFrame, labels: dict[str, str]) -> list[dict[str, Any]]:
    """One object per segment of :data:`SEGMENTS` (in the rules' order) from ``frame``
    (account_id, segment, probability, decile, known, late): accounts, predicted (mean, sd,
    p10, p50, p90 of the score), outcomes (known, late, rate, predicted_mean over the same
    accounts), top_decile, bottom_decile, disagree, and the verdict with its notes."""
    out = []
    for name in SEGMENTS:
        rows = frame.filter(pl.col("segment") == name)
        probs = rows["probability"].cast(pl.Float64).to_numpy()
        known = rows.filter(pl.col("known"))
        n_known, n_late = known.height, int(known["late"].sum() or 0)
        seg: dict[str, Any] = {
            "segment": name, "label": labels.get(name, name), "accounts": rows.height,
            "predicted": _spread(probs),
            "outcomes": {"known": n_known, "late": n_late,
                         "rate": _r(n_late / n_known) if n_known else None,
                         "predicted_mean": _r(known["probability"].mean()) if n_known else None},
            "top_decile": rows.filter(pl.col("decile") == "top").height,
            "bottom_decile": rows.filter(pl.col("decile") == "bottom").height,
            "notes": []}
        if rows.height == 0:
            seg["notes"].append("no account is in this segment")
        elif n_known == 0:
            seg["notes"].append("no next bill with a known outcome: the observed rate is unknown")
        wrong = WRONG_DECILE.get(name)
        if wrong is not None:
            k = seg[f"{wrong}_decile"]
            seg["disagree"] = {"decile": wrong, "accounts": k,
                               "share": _r(k / rows.height) if rows.height else None}
        out.append(seg)
    return out


def verdicts(segs: list[dict[str, Any]]) -> dict[str, Any]:
    """Set each segment's ``verdict`` — ``ok``, ``check`` (a note says why), ``no_accounts`` or
    ``not_ordered`` (a segment not about paying late) — and return the order check:
    ``{"segments", "predicted_ordered", "observed_ordered"}`` (null when undecidable)."""
    by = {s["segment"]: s for s in segs}
    problems: dict[str, list[str]] = {s: [] for s in ORDERED}

    def ordered(get: Any, what: str) -> bool | None:
        present = [s for s in ORDERED if get(by[s]) is not None]
        if len(present) < 2:
            return None
        good = True
        for a, b in pairwise(present):
            va, vb = get(by[a]), get(by[b])
            if va >= vb:
                good = False
                msg = f"{what} of {a} ({va}) is not below that of {b} ({vb})"
                problems[a].append(msg)
                problems[b].append(msg)
        return good

    predicted = ordered(lambda s: s["predicted"]["mean"], "the mean score")
    observed = ordered(lambda s: s["outcomes"]["rate"], "the observed late rate")
    for s in segs:
        name = s["segment"]
        if name not in ORDERED:
            s["verdict"] = "not_ordered" if s["accounts"] else "no_accounts"
            continue
        if s["accounts"] == 0:
            s["verdict"] = "no_accounts"
            continue
        notes = list(problems[name])
        d = s.get("disagree")
        if d and d["share"] is not None and d["share"] >= DISAGREE_SHARE:
            notes.append(f"{d['accounts']} of {s['accounts']} accounts ({d['share']:.1%}) are in "
                         f"the model's {d['decile']} decile — no better than chance "
                         f"(≥ {DISAGREE_SHARE:.0%})")
        s["notes"] += notes
        s["verdict"] = "check" if notes else "ok"
    return {"segments": list(ORDERED), "predicted_ordered": predicted,
            "observed_ordered": observed}


def disagreements(frame: pl.DataFrame) -> pl.DataFrame:
    """The accounts whose rule and model disagree strongly (:data:`WRONG_DECILE`), the
    strongest first: on_time by the highest score, chronic by the lowest."""
    wrong = pl.col("segment").replace_strict(WRONG_DECILE, default=None, return_dtype=pl.String)
    hits = frame.filter(pl.col("decile").is_not_null() & (pl.col("decile") == wrong))
    score = pl.col("rank_score" if "rank_score" in frame.columns else "probability")
    strength = pl.when(pl.col("decile") == "top").then(score).otherwise(-score)
    return hits.with_columns(strength.alias("_strength")).sort(
        ["_strength", "account_id"], descending=[True, False]).drop("_strength")


# -- the database side ------------------------------------------------------------------------------


def model_in_use(db: Database, as_of: date) -> Scorer:
    """The scorer of ``as_of``: the newest registered model whose cut-off is on or before it
    (it learnt nothing of what followed), else the newest model (:func:`check_segments` warns that
    outcomes after ``as_of`` may be in its training data), else the rules-only points score."""
    from dianfei.risk import repository
    from dianfei.risk.model import ArrearsModel

    rows = repository.models(db.engine)
    if not rows:
        return Scorer("rules", "no arrears model is trained (`dianfei risk train`): the "
                               "rules-only points score ranks the accounts (points / 100, not a "
                               "probability)")
    fit = [r for r in rows if str(r["cutoff"])[:10] <= str(as_of)]
    row = fit[0] if fit else rows[0]
    return Scorer("lightgbm", None, row, ArrearsModel.load(Path(db.settings.data_dir) / row["path"]))


def _leak_warning(scorer: Scorer, as_of: date) -> str | None:
    if scorer.row is None or str(scorer.row["cutoff"])[:10] <= str(as_of):
        return None
    return (f"model {scorer.row['version']} was trained on what was known before "
            f"{str(scorer.row['cutoff'])[:10]}, after {as_of}: the outcomes of bills due before "
            f"then may be in its training data, so they are not held out; choose a later --as-of "
            f"(or train a model as of {as_of})")


def check_segments(db: Database, as_of: date, *, history: History,
                   rules_file: Path | None = None, window_days: int = WINDOW_DAYS,
                   top: int = LIST_TOP, scorer: Scorer | None = None) -> dict[str, Any]:
    """The check as of ``as_of`` (the JSON of ``dianfei segments check``; docs/risk-insight.md).
    ``scorer``: score with this one instead of the model in use on ``as_of`` (the model report
    checks its own model)."""
    from dianfei.core.errors import ValidationError
    from dianfei.risk.engine import model_scores, rules_scores, truncate
    from dianfei.risk.features import features, targets
    from dianfei.risk.insight import segment_labels, segments

    if window_days < 1:
        raise ValidationError(f"--window-days must be at least 1, got {window_days}")
    if top < 0:
        raise ValidationError(f"--top must be 0 or more, got {top}")
    h = history.checked()
    if scorer is None:
        scorer = model_in_use(db, as_of)
    warning = _leak_warning(scorer, as_of)
    segs = segments(db, as_of, rules_file=rules_file)
    feats = features(truncate(h, as_of), as_of)
    if scorer.model is not None:
        assert scorer.row is not None
        scored = model_scores(feats, scorer.model, scorer.row["version"], reasons="none")
        # deciles by the booster's raw score: the isotonic calibration is a step function (a
        # tenth of the accounts and more can share its lowest step) and only ever merges ranks,
        # so the raw score orders the same accounts with fewer ties
        scored = scored.join(feats.select("account_id").with_columns(
            pl.Series("rank_score", scorer.model.raw(feats), dtype=pl.Float64)),
            on="account_id", how="left")
    else:
        scored = rules_scores(feats).with_columns(pl.col("probability").alias("rank_score"))
    # the next bill of each account and whether it was paid in full by its due date, judged on
    # what the history knows (a bill due on or after its last day is not known yet)
    last = h.last_day()
    known_before = (last + timedelta(days=1)) if last is not None else as_of
    nxt = targets(h, as_of, as_of + timedelta(days=window_days), known_before=known_before)
    frame = (segs.select("account_id", "segment", "why")
             .join(scored.select("account_id", "probability", "rank_score", "reasons_zh",
                                 "reasons_en"), on="account_id", how="inner"))
    unscored = segs.height - frame.height
    frame = deciles(frame, "rank_score").join(
        nxt.select("account_id", pl.col("late_known").alias("known"), "late", "due_on"),
        on="account_id", how="left").with_columns(
        pl.col("known").fill_null(False), pl.col("late").fill_null(False))
    labels = segment_labels(rules_file)
    per = summarise(frame, labels)
    order = verdicts(per)
    wrong = disagreements(frame)
    listed = wrong.head(top)
    if scorer.model is not None and listed.height:
        # the model's reasons: what raised the score of an on_time account in the top decile,
        # what lowered the score of a chronic one in the bottom decile
        listed = _model_reasons(listed, feats, scorer.model)
    out: dict[str, Any] = {
        "as_of": str(as_of), "scorer": scorer.name,
        "model_version": scorer.row["version"] if scorer.row else None,
        "model_cutoff": str(scorer.row["cutoff"])[:10] if scorer.row else None,
        "scorer_reason": scorer.reason,
        "rules_file": str(rules_file) if rules_file else "segments.toml (packaged)",
        "accounts": frame.height, "not_scored": unscored,
        "next_bill": {"window_days": window_days,
                      "label": "the first bill issued in [as_of, as_of + window_days) not paid "
                               "in full by its due date",
                      "outcomes_known_through": str(last) if last is not None else None,
                      "known": int(frame["known"].sum() or 0)},
        "deciles": _edges(frame),
        "segments": per, "order": order,
        "disagreements": {"total": wrong.height, "by_segment": {
            s: wrong.filter(pl.col("segment") == s).height for s in WRONG_DECILE},
            "listed": [_disagreement(r) for r in listed.iter_rows(named=True)]},
    }
    if warning:
        out["warning"] = warning
    return out


def _edges(frame: pl.DataFrame) -> dict[str, float | None]:
    top = frame.filter(pl.col("decile") == "top")["probability"]  # calibrated, as shown
    bottom = frame.filter(pl.col("decile") == "bottom")["probability"]
    return {"top_from": _r(top.min()) if top.len() else None,
            "bottom_to": _r(bottom.max()) if bottom.len() else None}


def _model_reasons(listed: pl.DataFrame, feats: pl.DataFrame, model: ArrearsModel
                   ) -> pl.DataFrame:
    from dianfei.risk.engine import MODEL_BANDS, with_reasons
    from dianfei.risk.reasons import top_reasons

    up = listed.filter(pl.col("decile") == "top")
    down = listed.filter(pl.col("decile") == "bottom")
    parts = []
    if up.height:
        parts.append(with_reasons(up.with_columns(pl.lit("").alias("reasons_zh"),
                                                  pl.lit("").alias("reasons_en")),
                                  feats, model, up["account_id"]))
    if down.height:
        sub = feats.filter(pl.col("account_id").is_in(down["account_id"].implode()))
        lowered = -model.contributions(sub)
        lowered = np.where(lowered >= MODEL_BANDS.min_contribution, lowered, 0.0)
        words = top_reasons(sub, lowered, names=model.features).select(
            "account_id", "reasons_zh", "reasons_en")
        parts.append(down.drop("reasons_zh", "reasons_en").join(words, on="account_id",
                                                                how="left"))
    got = pl.concat(parts, how="diagonal_relaxed").select("account_id", "reasons_zh",
                                                          "reasons_en")
    return listed.drop("reasons_zh", "reasons_en").join(got, on="account_id", how="left",
                                                        maintain_order="left")


def _disagreement(r: dict[str, Any]) -> dict[str, Any]:
    return {"account": r["account_id"], "segment": r["segment"], "rule": r["why"],
            "score": _r(r["probability"]), "decile": r["decile"],
            "model_direction": "raised" if r["decile"] == "top" else "lowered",
            "model_reasons_en": r["reasons_en"] or None,
            "model_reasons_zh": r["reasons_zh"] or None,
            "next_bill_late": bool(r["late"]) if r["known"] else None}
