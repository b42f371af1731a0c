"""Arrears-risk features and scores on Spark: :func:`dianfei.risk.engine.score_frame` per
partition of accounts.

Every feature of :func:`dianfei.risk.features.features` is a function of one account's own rows
(its bills, the clearings of them and its own payments, its notices, its broken plans, its
account facts): no class mean, percentile or other figure over the population enters a feature,
so an account scored with only its partition's rows gets exactly the features it gets among
everyone. The model is fixed before the job (trained and registered by ``risk train``), and a
row's LightGBM prediction and calibration read that row alone. One step ranks the whole
population: which of the high band get reasons (:func:`riskiest_high`, 5,000 a day). The tasks
score without reasons; the driver ranks everyone and gives the top their reasons from their own
rows (:func:`history_of_accounts`) — the same accounts, with the same words, as the local path.
(Each task giving reasons to its own partition's top 5,000 would do the costly TreeSHAP for up
to 5,000 accounts per partition instead of 5,000 in all.)

The history is cut by a hash of the account id into ``partitions`` parts; every row goes to the
part of the account it describes (a clearing also to the part of its bill's account when another
account paid it: it counts for the payer's channels and for the bill's lateness). Each part's
frames go to one Spark task (:func:`spark_score_frame` says how and why), which rebuilds the
:class:`History` and calls :func:`score_frame`. The scores come back to the driver, which stores
them as the local path does: nothing is written until the whole job has succeeded.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import polars as pl

from dianfei.core.faults import kill_point
from dianfei.risk.engine import REASONS_FOR, riskiest_high, score_frame, truncate, with_reasons
from dianfei.risk.features import (
    ACCOUNTS_SCHEMA,
    BILLS_SCHEMA,
    CLEARINGS_SCHEMA,
    NOTICES_SCHEMA,
    PLANS_SCHEMA,
    History,
    features,
)
from dianfei.scale.session import SparkSettings, job_failed, spark_session

if TYPE_CHECKING:
    from dianfei.core.settings import Settings
    from dianfei.risk.model import ArrearsModel

#: the frames of a History and their columns
FRAMES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("bills", BILLS_SCHEMA), ("clearings", CLEARINGS_SCHEMA), ("accounts", ACCOUNTS_SCHEMA),
    ("notices", NOTICES_SCHEMA), ("plans", PLANS_SCHEMA))

#: what score_frame returns, column by column
SCORES_SCHEMA: dict[str, Any] = {
    "account_id": pl.String, "probability": pl.Float64, "probability_30": pl.Float64,
    "band": pl.String, "scorer": pl.String, "model_version": pl.String, "reasons_zh": pl.String,
    "reasons_en": pl.String, "customer_class": pl.String, "region_id": pl.String,
    "low_income": pl.Boolean, "protected": pl.Boolean}

#: one partition's rows as they travel to its task: (part, {frame name: rows})
Part = tuple[int, dict[str, pl.DataFrame]]


def account_part(account_id: pl.Expr, parts: int) -> pl.Expr:
    """The partition (0 … parts − 1) of each account: a hash of its id with a fixed seed. Polars
    keeps its hash stable within a version; the assignment only has to hold for one job, whose
    driver cuts the history and collects every part's scores."""
    return (account_id.hash(seed=13) % parts).cast(pl.Int32)


def routed(history: History, part_of: Callable[[pl.Expr], pl.Expr]) -> dict[str, pl.DataFrame]:
    """The frames of ``history`` (checked; an absent frame stays absent) with a column ``part``:
    ``part_of(account_id)`` of the account each row describes (a null part drops the row). A
    clearing goes to its own account's part and, when another account's bill is what it paid,
    to that account's part as well — once to each part."""
    h = history
    owners = h.bills.select("bill_id", pl.col("account_id").alias("_owner")).unique()
    out = {}
    for name, schema in FRAMES:
        frame: pl.DataFrame | None = getattr(h, name)
        if frame is None:
            continue
        if name == "clearings":
            c = frame.with_row_index("_row")
            both = pl.concat([
                c.with_columns(part_of(pl.col("account_id")).alias("part")),
                c.join(owners, on="bill_id", how="inner")
                .with_columns(part_of(pl.col("_owner")).alias("part")).drop("_owner")])
            rows = (both.filter(pl.col("part").is_not_null()).unique(["_row", "part"])
                    .sort("_row", "part").drop("_row"))
        else:
            rows = frame.with_columns(part_of(pl.col("account_id")).alias("part")).filter(
                pl.col("part").is_not_null())
        out[name] = rows.select(pl.col("part").cast(pl.Int32), *schema)
    return out


def split_parts(frames: dict[str, pl.DataFrame]) -> list[Part]:
    """The routed frames cut into their parts (a part without rows of some frame gets it empty),
    in part order."""
    cut = {name: f.partition_by("part", as_dict=True, include_key=False)
           for name, f in frames.items()}
    parts = sorted({int(k[0]) for pieces in cut.values() for k in pieces})
    return [(p, {name: pieces.get((p,), frames[name].clear().drop("part"))
                 for name, pieces in cut.items()}) for p in parts]


def part_history(frames: dict[str, pl.DataFrame]) -> History:
    """The :class:`History` of one part's frames. Plans are there (perhaps without rows) exactly
    when the whole history had them: without plans the broken_plans feature is unknown, with
    none it is 0."""
    return History(bills=frames["bills"], clearings=frames["clearings"],
                   accounts=frames["accounts"], notices=frames["notices"],
                   plans=frames.get("plans")).checked()


def history_of_accounts(history: History, ids: pl.Series) -> History:
    """The part of ``history`` that the accounts ``ids`` are scored from (their features equal
    their features among everyone)."""
    h = history.checked()
    wanted = ids.implode()
    frames = routed(h, lambda a: pl.when(a.is_in(wanted)).then(pl.lit(0, pl.Int32)))
    return part_history({k: f.drop("part") for k, f in frames.items()})


# -- the Spark job --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A trained model as it travels to the tasks (plain text and lists, as in its registry
    files: every task rebuilds the same boosters)."""

    version: str | None
    boosters: dict[str, str]
    calibration: dict[str, tuple[list[float], list[float]]]
    vocab: dict[str, list[str]]
    meta: dict[str, Any]

    @classmethod
    def of(cls, found: tuple[dict[str, Any], ArrearsModel]) -> ModelSpec:
        row, model = found
        return cls(version=row["version"],
                   boosters={t: b.model_to_string() for t, b in model.boosters.items()},
                   calibration=model.calibration, vocab=model.vocab, meta=model.meta)

    def model(self) -> ArrearsModel:
        import lightgbm as lgb

        from dianfei.risk.model import ArrearsModel

        return ArrearsModel({t: lgb.Booster(model_str=s) for t, s in self.boosters.items()},
                            self.calibration, self.vocab, self.meta)


@dataclass(frozen=True)
class PartJob:
    """What every task of one scoring job needs besides its rows."""

    as_of: date
    #: "none" or "all" (:func:`model_scores`): the riskiest's reasons are the driver's
    reasons: str
    #: the broadcast ModelSpec (None: the points score)
    model: Any = None
    #: names this job's model in a worker's cache (a new one per job)
    model_key: str = ""


#: per Python worker: the model of the broadcast it was last rebuilt from (a worker runs many
#: tasks; parsing the boosters once per worker, not once per partition)
_models: dict[str, tuple[dict[str, Any], ArrearsModel]] = {}


def model_of(job: PartJob) -> tuple[dict[str, Any], ArrearsModel] | None:
    if job.model is None:
        return None
    key = job.model_key
    if key not in _models:
        spec: ModelSpec = job.model.value
        _models.clear()
        _models[key] = ({"version": spec.version}, spec.model())
    return _models[key]


def score_part(frames: dict[str, pl.DataFrame], job: PartJob,
               found: tuple[dict[str, Any], ArrearsModel] | None) -> pl.DataFrame:
    """One partition's scores: its History rebuilt from its rows, then the local path's
    features and scorer."""
    h = part_history(frames)
    feats = features(h, job.as_of)
    out = score_frame(h, job.as_of, found, reasons=job.reasons, feats=feats)
    return out.select([pl.col(c).cast(t) for c, t in SCORES_SCHEMA.items()])


def _task(part: Part, job: PartJob) -> pl.DataFrame:
    out = score_part(part[1], job, model_of(job))
    # the crash tests die here: the partition scored, nothing handed back yet
    kill_point("risk.partition_scored")
    return out


def spark_score_frame(settings: Settings, history: History, as_of: date,
                      found: tuple[dict[str, Any], ArrearsModel] | None, *,
                      reasons: str = "high", reasons_for: int = REASONS_FOR,
                      partitions: int | None = None) -> pl.DataFrame:
    """:func:`score_frame` on Spark: the same columns and rows (in account order), computed per
    partition of accounts. Raises ``SparkUnavailable`` before reading anything when Spark cannot
    start, ``SparkJobFailed`` when the job fails; it writes nothing either way.

    Each part travels as one element of an RDD of as many slices as parts (its frames pickled
    as Arrow IPC by Polars), so each part is one task and nothing is shuffled. Measured against
    one DataFrame of all rows with ``groupBy("part").applyInArrow``: for 100,000 accounts (2.2
    million rows) a task doing nothing took 12 s there against 2.6 s here (the JVM converting
    and shuffling every row), and Spark's hash of the part put three of four parts into one task
    (docs/benchmarks.md)."""
    spark = spark_session(settings)
    parts = partitions or SparkSettings.from_settings(settings).default_partitions()
    h = truncate(history, as_of)
    items = split_parts(routed(h, lambda a: account_part(a, parts)))
    sc = spark.sparkContext
    model = None if found is None else sc.broadcast(ModelSpec.of(found))
    # the reasons of the riskiest are given on the driver, after everyone is ranked
    job = PartJob(as_of=as_of, reasons="none" if reasons == "high" else reasons, model=model,
                  model_key=uuid.uuid4().hex)
    try:
        scored = (sc.parallelize(items, max(1, len(items)))
                  .map(functools.partial(_task, job=job)).collect())
    except Exception as exc:  # the job's own failure, said in words an operator can act on
        raise job_failed(exc, f"risk scoring as of {as_of}") from exc
    finally:
        if model is not None:
            model.destroy()
    scores = pl.concat([pl.DataFrame(schema=SCORES_SCHEMA), *scored]).sort("account_id")
    if found is not None and reasons == "high":
        ids = riskiest_high(scores, reasons_for)
        feats = features(history_of_accounts(h, ids), as_of)
        scores = with_reasons(scores, feats, found[1], ids)
    return scores
