"""Strategy experiments drive the ladders (策略实验): which arm of the experiment the ladders
name each account in arrears is in, for the daily snapshot (``experiment_arm``).

The assignment lives in risk (``risk.service.experiment_arms``, written once by ``dianfei
experiment create``); the ladders that dun an arm are data (``ladders/*.toml`` with
``experiment`` and ``arms``, collections/ladder.py). Before the experiment's start no account is
in an arm: everyone is dunned as before.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.ladder import Ladder
    from dianfei.db.engine import Database


def with_experiment_arms(db: Database, day: date, ladders: list[Ladder],
                         snap: pl.DataFrame) -> pl.DataFrame:
    """``snap`` + ``experiment_arm`` (the account's arm, null when it is in none or the
    experiment has not started), when a ladder names an experiment; ``snap`` unchanged when
    none does. A ladder naming an experiment that does not exist stops the run, naming both:
    dunning an arm nobody was assigned to would silently dun everyone the usual way."""
    import polars as pl

    from dianfei.collections.ladder import LadderError
    from dianfei.core.errors import NotFoundError
    from dianfei.risk.service import experiment, experiment_arms

    named = {ld.experiment: ld.file for ld in ladders if ld.experiment is not None}
    if not named:
        return snap
    (exp_id, file), = named.items()  # the loader allows one experiment at a time
    try:
        started_on = experiment(db, exp_id)["started_on"]
    except NotFoundError:
        raise LadderError(f"{file}: experiment {exp_id!r} does not exist (create it with "
                          "dianfei experiment create)") from None
    if started_on > day:
        return snap.with_columns(pl.lit(None, pl.String).alias("experiment_arm"))
    arms = experiment_arms(db.engine, exp_id).join(snap.select("account_id"), on="account_id",
                                                    how="semi")
    return snap.join(arms.select("account_id", pl.col("arm").alias("experiment_arm")),
                     on="account_id", how="left")
