"""Arrears-risk scores per partition of accounts: what a partitioned backend (Spark,
:mod:`dianfei.scale.risk`) needs to give every account the score, band and reasons of
:func:`dianfei.risk.engine.score_frame` — no rule of its own.

Every feature of :func:`dianfei.risk.features.features` is a function of one account's own rows
(its bills, the clearings of them and its own payments, its notices, its broken plans, its
account facts): no class mean, percentile or other figure over the population enters a feature,
so an account scored with only its partition's rows gets exactly the features it gets among
everyone. The model is fixed before the job (trained and registered by ``risk train``), and a
row's LightGBM prediction and calibration read that row alone. One step ranks the whole
population: which of the high band get reasons (:func:`riskiest_high`, 5,000 a day). So the
partitions are scored without reasons, and :func:`give_reasons` then ranks everyone and gives the
top their reasons from their own rows — the same accounts, with the same words, as the local
path. (Each partition giving reasons to its own top 5,000 would do the costly TreeSHAP for up to
5,000 accounts per partition instead of 5,000 in all.)

Which rows are an account's (:func:`routed`): the rows naming it, and a clearing also for its
bill's account when another account paid it — it counts for the payer's channels and for the
bill's lateness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

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

#: one partition's rows: (part, {frame name: rows})
Part = tuple[int, dict[str, pl.DataFrame]]
#: a registry row (its "version") and the model it names, as daily_scores passes them
Found = tuple[dict[str, Any], ArrearsModel]


def account_part(account_id: pl.Expr, parts: int) -> pl.Expr:
    """The partition (0 … parts − 1) of each account: a hash of its id with a fixed seed. Polars
    keeps its hash stable within a version; the assignment only has to hold for one job, whose
    driver cuts the history and collects every part's scores."""
    return (account_id.hash(seed=13) % parts).cast(pl.Int32)


def routed(history: History, part_of: Callable[[pl.Expr], pl.Expr]) -> dict[str, pl.DataFrame]:
    """The frames of ``history`` (checked; an absent frame stays absent) with a column ``part``:
    ``part_of(account_id)`` of the account each row is for (a null part drops the row). A
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


def score_part(frames: dict[str, pl.DataFrame], as_of: date, found: Found | None,
               reasons: str = "none") -> pl.DataFrame:
    """One partition's scores: its History rebuilt from its rows, then the local path's
    features and scorer (``reasons``: "none" or "all"; the riskiest's are :func:`give_reasons`'
    once everyone is ranked)."""
    if reasons not in ("none", "all"):
        raise ValueError(f"a partition's reasons are none or all, not {reasons!r}")
    h = part_history(frames)
    out = score_frame(h, as_of, found, reasons=reasons, feats=features(h, as_of))
    return out.select([pl.col(c).cast(t) for c, t in SCORES_SCHEMA.items()])


def give_reasons(scores: pl.DataFrame, history: History, as_of: date, found: Found,
                 reasons_for: int = REASONS_FOR) -> pl.DataFrame:
    """Everyone's ``scores`` (no reasons) with the reasons of the ``reasons_for`` riskiest of
    the high band, as :func:`model_scores` gives them: ranked over everyone, explained from
    their own rows."""
    ids = riskiest_high(scores, reasons_for)
    feats = features(truncate(history_of_accounts(history, ids), as_of), as_of)
    return with_reasons(scores, feats, found[1], ids)


@dataclass(frozen=True)
class ModelText:
    """A trained model as it travels to other processes: its boosters as their exact text (as
    in the registry's files, so every process rebuilds the same trees), calibration, vocabulary
    and metadata."""

    version: str | None
    boosters: dict[str, str]
    calibration: dict[str, tuple[list[float], list[float]]]
    vocab: dict[str, list[str]]
    meta: dict[str, Any]

    @classmethod
    def of(cls, found: Found) -> ModelText:
        row, model = found
        return cls(version=row["version"],
                   boosters={t: b.model_to_string() for t, b in model.boosters.items()},
                   calibration=model.calibration, vocab=model.vocab, meta=model.meta)

    def found(self) -> Found:
        import lightgbm as lgb

        return ({"version": self.version},
                ArrearsModel({t: lgb.Booster(model_str=s) for t, s in self.boosters.items()},
                             self.calibration, self.vocab, self.meta))
