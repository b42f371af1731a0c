"""The model-backed entry points of risk (re-exported by :mod:`dianfei.risk.service`):
backtest, training into the registry, daily scores and the early-warning list, explanations, and
the scorer collections reads its risk band from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl

from dianfei.core.errors import ValidationError
from dianfei.core.faults import kill_point
from dianfei.risk.features import History, features, load_history, targets
from dianfei.risk.model import ArrearsModel, TooShort, TrainConfig, train
from dianfei.risk.rules import RulesScorer

if TYPE_CHECKING:
    from collections.abc import Callable

    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database


@dataclass(frozen=True)
class ModelBands:
    """Calibrated probability of not paying the next bill in full by its due date → band; the
    early-warning list takes accounts that rose past ``warn_from`` or by ``jump`` since the
    previous scoring."""

    high_from: float = 0.40
    medium_from: float = 0.15
    warn_from: float = 0.40
    jump: float = 0.20
    #: a reason is given only for a contribution of at least this much (log-odds)
    min_contribution: float = 0.05


MODEL_BANDS = ModelBands()

#: the rules score's reasons in zh-CN (its own words are English)
_RULES_ZH = ((r"late bills (\d+)", "逾期账单 ${1} 张"), (r"slow payer", "缴费慢"),
             (r"arrears now", "当前欠费"), (r"broken plans (\d+)", "违约分期 ${1} 次"), (r"; ", "；"))


def truncate(history: History, before: date) -> History:
    """The history as it stood on ``before``: nothing dated on or after it (a bill cancelled
    later was still live then)."""
    h = history.checked()
    d = pl.lit(before)
    bills = h.bills.filter(pl.col("issued_on") < d).with_columns(
        pl.when(pl.col("cancelled_on") < d).then(pl.col("cancelled_on")).alias("cancelled_on"))
    return replace(h, bills=bills, clearings=h.clearings.filter(pl.col("paid_on") < d),
                   notices=None if h.notices is None else h.notices.filter(pl.col("sent_on") < d),
                   plans=None if h.plans is None else h.plans.filter(pl.col("broken_on") < d))


def rules_scores(feats: pl.DataFrame) -> pl.DataFrame:
    """The points score on the as-of features: account_id, probability (points / 100),
    probability_30 (null), band, scorer, reasons_zh, reasons_en."""
    f = feats.select(
        "account_id", pl.col("late_count_12").cast(pl.Int64).alias("late_count"),
        pl.col("days_late_mean").alias("avg_days_late"),
        (pl.col("overdue_amount") * 100).round(0).cast(pl.Int64).alias("arrears"),
        pl.col("broken_plans").cast(pl.Int64))
    s = RulesScorer().score(f)
    zh = pl.col("reasons")
    for a, b in _RULES_ZH:
        zh = zh.str.replace_all(a, b)
    return s.select(
        "account_id", (pl.col("score").cast(pl.Float64) / 100).clip(0, 1).alias("probability"),
        pl.lit(None, pl.Float64).alias("probability_30"), "band",
        pl.lit("rules").alias("scorer"), pl.lit(None, pl.String).alias("model_version"),
        zh.alias("reasons_zh"),
        pl.col("reasons").alias("reasons_en"))


def _band(p: pl.Expr, bands: ModelBands) -> pl.Expr:
    return (pl.when(p >= bands.high_from).then(pl.lit("high"))
            .when(p >= bands.medium_from).then(pl.lit("medium")).otherwise(pl.lit("low")))


def model_scores(feats: pl.DataFrame, model: ArrearsModel, version: str | None, *,
                 bands: ModelBands = MODEL_BANDS, reasons: str = "high",
                 reasons_for: int | None = None) -> pl.DataFrame:
    """The model's scores of ``feats`` with reasons for every row (``reasons="all"``), for
    none (``"none"``), or for the ``reasons_for`` (default :data:`REASONS_FOR`) riskiest of the
    high band (``"high"``, :func:`riskiest_high`): TreeSHAP is the costly part (a million rows
    would take many CPU-minutes), and a collector reads the reasons of the accounts at the top
    of the list and of the early warnings (:func:`with_reasons` adds those)."""
    p = model.predict(feats).with_columns(_band(pl.col("probability"), bands).alias("band"))
    out = p.select("account_id", "probability", "probability_30", "band",
                   pl.lit("lightgbm").alias("scorer"), pl.lit(version, pl.String).alias("model_version"),
                   pl.lit("").alias("reasons_zh"), pl.lit("").alias("reasons_en"))
    if reasons == "none":
        return out
    if reasons == "all":
        ids = out["account_id"]
    else:
        ids = riskiest_high(out, REASONS_FOR if reasons_for is None else reasons_for)
    return with_reasons(out, feats, model, ids, bands)


#: how many of the riskiest accounts get reasons in a day's scores (others: ``risk explain``)
REASONS_FOR = 5000


def riskiest_high(scores: pl.DataFrame, n: int) -> pl.Series:
    """The account ids of the ``n`` riskiest accounts of the high band (equal probabilities in
    account order): the ones a day's scores give reasons. A ranking over every account — the
    Spark backend ranks each partition's own and then everyone's again on the driver."""
    return (scores.filter(pl.col("band") == "high")
            .sort(["probability", "account_id"], descending=[True, False])
            .head(n)["account_id"])


def with_reasons(scores: pl.DataFrame, feats: pl.DataFrame, model: ArrearsModel, ids: pl.Series,
                 bands: ModelBands = MODEL_BANDS) -> pl.DataFrame:
    """``scores`` with the reasons of the accounts ``ids`` filled in (zh-CN and en)."""
    from dianfei.risk.reasons import top_reasons

    sub = feats.filter(pl.col("account_id").is_in(ids.implode()))
    if sub.height == 0:
        return scores
    contrib = model.contributions(sub)
    contrib = np.where(contrib >= bands.min_contribution, contrib, 0.0)
    words = top_reasons(sub, contrib, names=model.features).select(
        "account_id", pl.col("reasons_zh").alias("_zh"), pl.col("reasons_en").alias("_en"))
    return scores.join(words, on="account_id", how="left").with_columns(
        pl.coalesce("_zh", "reasons_zh").alias("reasons_zh"),
        pl.coalesce("_en", "reasons_en").alias("reasons_en")).drop("_zh", "_en")


# -- backtest ------------------------------------------------------------------------------------


def _issue_dates_near(history: History, day: date) -> str:
    dates = history.bills.filter(pl.col("amount") > 0)["issued_on"].unique().sort()
    before = dates.filter(dates < day).tail(2).to_list()
    after = dates.filter(dates > day).head(2).to_list()
    near = [str(d) for d in before + after]
    return ", ".join(near) if near else "none at all"


def backtest(history: History, as_of: date, *, config: TrainConfig | None = None,
             window_days: int = 1) -> dict[str, Any]:
    """Train on what was known before ``as_of``, score each account's first bill issued in
    [as_of, as_of + window_days) (the contract: the bills issued on D), and compare with what
    happened: ``{"n", "positives", "auc", "pr_auc", "top_decile_lift", …}``."""
    h = history.checked()
    if window_days < 1:
        raise ValidationError(f"--window-days must be at least 1, got {window_days}")
    until = as_of + timedelta(days=window_days)
    t = targets(h, as_of, until)
    if t.height == 0:
        raise ValidationError(
            f"no bill of a positive amount was issued on {as_of}"
            + (f" or in the {window_days} days from it" if window_days > 1 else "")
            + f"; bills were issued on: {_issue_dates_near(h, as_of)} "
              "(choose one as --as-of, or widen --window-days)")
    past = truncate(h, as_of)
    model = train(past, as_of, config)
    feats = t.select("account_id").join(features(past, as_of), on="account_id", how="left")
    if isinstance(model, TooShort):
        scored = rules_scores(feats.with_columns(
            [pl.col(c).fill_null(0) for c in ("late_count_12", "overdue_amount")]))
        scorer, why = "rules", model.reason
    else:
        scored = model_scores(feats, model, None, reasons="none")
        scorer, why = "lightgbm", None
    from dianfei.risk.metrics import ranking_metrics

    x = t.join(scored.select("account_id", "probability", "probability_30"), on="account_id",
               how="left").sort("account_id")
    y = x["late"].cast(pl.Int64).to_numpy()
    out = ranking_metrics(y, x["probability"].fill_null(0.0).to_numpy())
    if scorer == "rules":
        out.pop("brier", None)  # points / 100 is a rank, not a probability
    out.update({"as_of": str(as_of), "window_days": window_days, "scorer": scorer,
                "label": "first bill issued in [as_of, as_of + window_days) not paid in full by "
                         "its due date"})
    if why:
        out["scorer_reason"] = why
    if scorer == "lightgbm":
        assert isinstance(model, ArrearsModel)
        out["train_rows"] = model.meta["n_train"]
        out["valid_rows"] = model.meta["n_valid"]
        out["train_window"] = [model.meta["window_from"], str(as_of - timedelta(days=1))]
        late30 = x.filter(pl.col("due_on") + timedelta(days=30) <= (h.last_day() or as_of))
        if late30.height:
            out["late30"] = {k: v for k, v in ranking_metrics(
                late30["late30"].cast(pl.Int64).to_numpy(),
                late30["probability_30"].fill_null(0.0).to_numpy()).items()
                if k in ("n", "positives", "auc", "pr_auc", "top_decile_lift", "note")}
    last = h.last_day()
    latest_due = t["due_on"].max()
    if last is not None and isinstance(latest_due, date) and last < latest_due:
        out["warning"] = (f"the history ends on {last}, before the due date {latest_due}: bills "
                          "not paid by then count as not paid in full")
    return out


# -- registry ------------------------------------------------------------------------------------


def _models_dir(db: Database) -> Path:
    return Path(db.settings.data_dir) / "models" / "arrears"


def train_model(db: Database, as_of: date, *, clock: Clock, config: TrainConfig | None = None,
                history: History | None = None) -> dict[str, Any]:
    """Train on everything known before ``as_of`` and register the model (files under
    ``DATA_DIR/models/arrears/<version>`` and a ``risk_models`` row). When the history is too
    short, nothing is registered and the answer says the rules score stays in charge."""
    from dianfei.risk import repository

    h = history if history is not None else load_history(db.engine)
    model = train(truncate(h, as_of), as_of, config)
    if isinstance(model, TooShort):
        return {"scorer": "rules", "registered": False, "reason": model.reason}
    prefix = f"arrears-{as_of:%Y%m%d}-"
    with db.engine.begin() as conn:
        version = f"{prefix}{repository.count_models(conn, prefix) + 1:04d}"
        rel = Path("models") / "arrears" / version
        model.meta["version"] = version
        model.save(Path(db.settings.data_dir) / rel)
        m = model.meta
        repository.add_model(conn, {
            "version": version, "kind": "arrears", "trained_at": clock.now(), "cutoff": as_of,
            "window_from": date.fromisoformat(m["window_from"]), "n_train": m["n_train"],
            "n_valid": m["n_valid"], "features": json.dumps(m["features"]),
            "metrics": json.dumps(m["metrics"]), "auc": m["metrics"]["late"]["auc"],
            "path": str(rel)})
    return {"scorer": "lightgbm", "registered": True, "version": version,
            "window": [m["window_from"], str(as_of - timedelta(days=1))],
            "n_train": m["n_train"], "n_valid": m["n_valid"], "metrics": m["metrics"],
            "path": str(Path(db.settings.data_dir) / rel)}


def latest_model(db: Database) -> tuple[dict[str, Any], ArrearsModel] | None:
    """The most recently trained model of the registry, loaded (None when there is none)."""
    from dianfei.risk import repository

    rows = repository.models(db.engine)
    if not rows:
        return None
    row = rows[0]
    return row, ArrearsModel.load(Path(db.settings.data_dir) / row["path"])


def models(db: Database) -> list[dict[str, Any]]:
    from dianfei.risk import repository

    return repository.models(db.engine)


# -- daily scores and the early-warning list -----------------------------------------------------


def _scores_dir(db: Database) -> Path:
    return Path(db.settings.data_dir) / "risk" / "scores"


def score_frame(history: History, as_of: date, found: tuple[dict[str, Any], ArrearsModel] | None,
                *, reasons: str = "high", feats: pl.DataFrame | None = None,
                reasons_for: int | None = None) -> pl.DataFrame:
    """Every account's score as of ``as_of`` (model or rules, column ``scorer`` says which),
    with customer_class, region_id, low_income and protected for the fairness figures."""
    if feats is None:
        feats = features(truncate(history, as_of), as_of)
    if found is None:
        scored = rules_scores(feats)
    else:
        scored = model_scores(feats, found[1], found[0]["version"], reasons=reasons,
                              reasons_for=reasons_for)
    return scored.join(feats.select("account_id", "customer_class", "region_id", "low_income",
                                    "protected"), on="account_id", how="left")


class ScoreBackend(Protocol):
    """Computes :func:`score_frame` (reasons for the riskiest of the high band) elsewhere than
    in this process — Spark, per partition of accounts (``dianfei.scale.risk.spark_scorer``) —
    and returns the same frame."""

    def __call__(self, history: History, as_of: date,
                 found: tuple[dict[str, Any], ArrearsModel] | None) -> pl.DataFrame: ...


def daily_scores(db: Database, day: date, *, history: History | None = None,
                 refresh: bool = False, plans: Callable[[], pl.DataFrame] | None = None,
                 backend: ScoreBackend | None = None) -> pl.DataFrame:
    """The day's scores of every account, computed once a day and kept as Parquet under
    ``DATA_DIR/risk/scores/<day>.parquet``; computing them also writes the day's early-warning
    list (accounts whose probability rose past the warning threshold or jumped since the
    previous scoring; the first scoring only sets the baseline). ``backend``: None computes the
    scores here; a partitioned backend (Spark) computes the same scores elsewhere, and they are
    stored here the same way once it has computed all of them."""
    from dianfei.risk import repository

    path = _scores_dir(db) / f"{day}.parquet"
    found = latest_model(db)
    if path.exists() and not refresh:
        kept = pl.read_parquet(path)
        # scores of an older model (or of the points, before the first model) are redone
        want = None if found is None else found[0]["version"]
        have = kept["model_version"].drop_nulls().first() if kept.height else want
        if have == want:
            return kept
    h = history if history is not None else load_history(
        db.engine, plans=plans() if plans is not None else None)
    if backend is not None:
        scores = backend(h, day, found)
    else:
        feats = features(truncate(h, day), day)
        scores = score_frame(h, day, found, feats=feats)
    prev = _previous_scores(db, day)
    warn = warning_frame(scores, prev, day)
    if found is not None and warn.height:
        if backend is not None:
            from dianfei.risk.partitions import history_of_accounts

            # the warned accounts' own rows give them the features they have among everyone
            feats = features(truncate(history_of_accounts(h, warn["account_id"]), day), day)
        # every early warning carries its reasons
        scores = with_reasons(scores, feats, found[1], warn["account_id"])
        warn = warning_frame(scores, prev, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    scores.write_parquet(tmp)
    tmp.replace(path)
    # the crash tests die here: the day's scores stored, its early warnings not yet
    kill_point("risk.scores_written")
    with db.engine.begin() as conn:
        repository.replace_warnings(conn, day, warn)
    return scores


def _previous_scores(db: Database, day: date) -> pl.DataFrame | None:
    d = _scores_dir(db)
    if not d.exists():
        return None
    older = sorted(p for p in d.glob("*.parquet") if p.stem < str(day))
    return pl.read_parquet(older[-1]) if older else None


def warning_frame(scores: pl.DataFrame, previous: pl.DataFrame | None, day: date,
                  bands: ModelBands = MODEL_BANDS) -> pl.DataFrame:
    """The early-warning rows: risk crossed ``warn_from`` or rose by ``jump``."""
    cols = ["day", "account_id", "kind", "probability", "previous", "band", "scorer",
            "model_version", "reasons_zh", "reasons_en"]
    if previous is None:
        return pl.DataFrame(schema={"day": pl.Date, "account_id": pl.String, "kind": pl.String,
                                    "probability": pl.Float64, "previous": pl.Float64,
                                    "band": pl.String, "scorer": pl.String,
                                    "model_version": pl.String, "reasons_zh": pl.String,
                                    "reasons_en": pl.String})
    x = scores.join(previous.select("account_id", pl.col("probability").alias("previous")),
                    on="account_id", how="inner")
    crossed = (pl.col("previous") < bands.warn_from) & (pl.col("probability") >= bands.warn_from)
    jumped = (pl.col("probability") - pl.col("previous")) >= bands.jump
    return (x.filter(crossed | jumped)
            .with_columns(pl.lit(day).alias("day"),
                          pl.when(crossed).then(pl.lit("crossed")).otherwise(pl.lit("jumped"))
                          .alias("kind"),
                          pl.col("reasons_zh").fill_null(""), pl.col("reasons_en").fill_null(""))
            .select(cols).sort("account_id"))


def early_warnings(db: Database, day: date) -> pl.DataFrame:
    """The day's early-warning list (day, account_id, kind, probability, previous, band, scorer,
    model_version, reasons_zh, reasons_en), highest risk first; empty until the day is scored."""
    from dianfei.risk import repository

    return repository.warnings(db.engine, day)


# -- collections' scorer -------------------------------------------------------------------------


@dataclass
class ModelScorer:
    """The risk band for the dunning ladders from the latest trained model (the day's scores);
    an account the model did not score keeps the points score. ``scorer`` in the scores says
    which one decided."""

    db: Database
    day: date
    #: the broken plans (account_id, broken_on) from collections, asked for only when the day's
    #: scores have to be computed
    plans: Callable[[], pl.DataFrame] | None = None

    def score(self, feats: pl.DataFrame) -> pl.DataFrame:
        day_scores = daily_scores(self.db, self.day, plans=self.plans).select(
            "account_id", (pl.col("probability") * 100).round(0).cast(pl.Int64).alias("score"),
            "band", pl.col("reasons_en").alias("reasons"), "scorer")
        rules = RulesScorer().score(feats).with_columns(pl.lit("rules").alias("scorer"))
        model = feats.select("account_id").join(day_scores, on="account_id", how="inner")
        return pl.concat([model, rules.join(model.select("account_id"), on="account_id", how="anti")],
                         how="vertical_relaxed")


def scorer_for(db: Database, day: date, *, plans: Callable[[], pl.DataFrame] | None = None) -> Any:
    """What collections scores with on ``day``: the model when one is trained, else the points.
    ``plans`` gives the broken payment plans (collections' facts) if the day must be scored."""
    from dianfei.risk import repository

    if repository.models(db.engine):
        return ModelScorer(db, day, plans)
    return RulesScorer()


# -- one account ---------------------------------------------------------------------------------


def explain(db: Database, account_id: str, as_of: date, *, history: History | None = None
            ) -> dict[str, Any]:
    """An account's score as of ``as_of`` with every feature and its contribution."""
    from dianfei.risk.reasons import phrase

    h = history if history is not None else load_history(db.engine)
    feats = features(truncate(h, as_of), as_of).filter(pl.col("account_id") == account_id)
    if feats.height == 0:
        raise ValidationError(f"account {account_id}: unknown, or nothing known of it before {as_of}")
    found = latest_model(db)
    row = feats.to_dicts()[0]
    out: dict[str, Any] = {"account": account_id, "as_of": str(as_of)}
    if found is None:
        s = rules_scores(feats).to_dicts()[0]
        out.update({"scorer": "rules", "model_version": None, "probability": s["probability"],
                    "band": s["band"], "reasons_zh": s["reasons_zh"], "reasons_en": s["reasons_en"],
                    "contributions": []})
    else:
        meta, model = found
        s = model_scores(feats, model, meta["version"], reasons="all").to_dicts()[0]
        contrib = model.contributions(feats)[0]
        names = model.features
        order = np.argsort(-np.abs(contrib), kind="stable")
        out.update({"scorer": "lightgbm", "model_version": meta["version"],
                    "probability": round(s["probability"], 4),
                    "probability_30": round(s["probability_30"], 4), "band": s["band"],
                    "reasons_zh": s["reasons_zh"], "reasons_en": s["reasons_en"],
                    "contributions": [
                        {"feature": names[i], "value": row[names[i]],
                         "contribution": round(float(contrib[i]), 4),
                         "zh": phrase(names[i], row[names[i]])[0],
                         "en": phrase(names[i], row[names[i]])[1]}
                        for i in order[:10]]})
    out["never_used"] = ["low_income", "protected"]
    return out
