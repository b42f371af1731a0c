"""Risk scores (风险评分) behind one interface a model can later fill.

``RiskScorer.score(features)`` takes one row per account and returns account_id, score (0–100),
band (low / medium / high) and the reasons that made the score — so every band a dunning ladder
acts on can be explained to a collector or a customer.

Until a trained model exists, :class:`RulesScorer` is a transparent points table on payment
history (its weights are data, not code):

| feature | points |
|---|---|
| late_count — bills paid late in the last 12 months | 10 each, at most 40 |
| avg_days_late — mean days past due of those bills | ≥ 15 days: 20; ≥ 5 days: 10 |
| arrears — amount overdue now (fen) | ≥ 500 yuan: 20; > 0: 10 |
| broken_plans — payment plans broken | 20 each, at most 40 |

Band: score ≥ 50 high, ≥ 20 medium, else low.
"""

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


def default_scorer() -> RiskScorer:
    return RulesScorer()


# == Risk intelligence (issue 10, deliverables 5–8): theft and anomaly warnings, next-bill
# forecasts, segments, strategy experiments. Logic in risk/anomaly.py, forecast.py,
# segments.py, experiments.py and insight.py; these are the entry points other packages and
# the CLI use (docs/risk-insight.md). ==========================================================

from dianfei.risk.insight import INSPECTION_OUTCOMES as INSPECTION_OUTCOMES  # noqa: E402
from dianfei.risk.insight import PAYMENT_MODES as PAYMENT_MODES  # noqa: E402
from dianfei.risk.insight import account_facts as account_facts  # noqa: E402
from dianfei.risk.insight import bill_document_forecast as bill_document_forecast  # noqa: E402
from dianfei.risk.insight import bill_payments as bill_payments  # noqa: E402
from dianfei.risk.insight import consumption_history as consumption_history  # noqa: E402
from dianfei.risk.insight import create_experiment as create_experiment  # noqa: E402
from dianfei.risk.insight import experiment as experiment  # noqa: E402
from dianfei.risk.insight import experiment_arms as experiment_arms  # noqa: E402
from dianfei.risk.insight import experiment_report as experiment_report  # noqa: E402
from dianfei.risk.insight import forecast_next_bill as forecast_next_bill  # noqa: E402
from dianfei.risk.insight import inspections as inspections  # noqa: E402
from dianfei.risk.insight import queue_forecast_notices as queue_forecast_notices  # noqa: E402
from dianfei.risk.insight import record_inspection as record_inspection  # noqa: E402
from dianfei.risk.insight import segments as segments  # noqa: E402
from dianfei.risk.insight import theft_scan as theft_scan  # noqa: E402
