"""The transparent points score (积分卡) on payment history: the fallback whenever no trained
model can score (see :mod:`dianfei.risk.service` for the table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import polars as pl

#: the columns a scorer receives (missing values mean "none")
FEATURES = ("account_id", "late_count", "avg_days_late", "arrears", "broken_plans")
BANDS = ("low", "medium", "high")


class RiskScorer(Protocol):
    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """account_id, score (Int64 0–100), band (low|medium|high), reasons (String)."""
        ...


@dataclass(frozen=True)
class RulesScorer:
    """The points table above; every threshold is a field so a utility can tune it."""

    per_late_bill: int = 10
    late_cap: int = 40
    slow_days: float = 15.0
    slow_points: int = 20
    some_days: float = 5.0
    some_points: int = 10
    big_arrears_fen: int = 50_000
    big_arrears_points: int = 20
    arrears_points: int = 10
    per_broken_plan: int = 20
    broken_cap: int = 40
    high_from: int = 50
    medium_from: int = 20

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        import polars as pl

        f = features.with_columns(
            pl.col("late_count").fill_null(0).cast(pl.Int64),
            pl.col("avg_days_late").fill_null(0.0).cast(pl.Float64),
            pl.col("arrears").fill_null(0).cast(pl.Int64),
            pl.col("broken_plans").fill_null(0).cast(pl.Int64),
        )
        late = pl.min_horizontal(pl.col("late_count") * self.per_late_bill, pl.lit(self.late_cap))
        slow = (pl.when(pl.col("avg_days_late") >= self.slow_days).then(pl.lit(self.slow_points))
                .when(pl.col("avg_days_late") >= self.some_days).then(pl.lit(self.some_points))
                .otherwise(pl.lit(0)))
        owed = (pl.when(pl.col("arrears") >= self.big_arrears_fen).then(pl.lit(self.big_arrears_points))
                .when(pl.col("arrears") > 0).then(pl.lit(self.arrears_points)).otherwise(pl.lit(0)))
        broken = pl.min_horizontal(pl.col("broken_plans") * self.per_broken_plan,
                                   pl.lit(self.broken_cap))
        f = f.with_columns(late.alias("_late"), slow.alias("_slow"), owed.alias("_owed"),
                           broken.alias("_broken"))
        total = pl.col("_late") + pl.col("_slow") + pl.col("_owed") + pl.col("_broken")
        reasons = pl.concat_str([
            pl.when(pl.col("_late") > 0).then(pl.format("late bills {}", pl.col("late_count"))),
            pl.when(pl.col("_slow") > 0).then(pl.lit("slow payer")),
            pl.when(pl.col("_owed") > 0).then(pl.lit("arrears now")),
            pl.when(pl.col("_broken") > 0).then(pl.format("broken plans {}", pl.col("broken_plans"))),
        ], separator="; ", ignore_nulls=True)
        return f.select(
            "account_id", total.cast(pl.Int64).alias("score"),
            pl.when(total >= self.high_from).then(pl.lit("high"))
            .when(total >= self.medium_from).then(pl.lit("medium")).otherwise(pl.lit("low"))
            .alias("band"),
            reasons.alias("reasons"))
