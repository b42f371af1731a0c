"""Risk scores (风险评分): the entry points of risk, behind one interface collections reads.

``RiskScorer.score(features)`` takes one row per account and returns account_id, score (0–100),
band (low / medium / high) and the reasons that made the score — so every band a dunning ladder
acts on can be explained to a collector or a customer.

When a trained arrears model exists (``dianfei risk train``), the band comes from it
(:func:`scorer_for`); until then, and for any account the model could not score,
:class:`RulesScorer` is a transparent points table on payment history (its weights are data, not
code):

| feature | points |
|---|---|
| late_count — bills paid late in the last 12 months | 10 each, at most 40 |
| avg_days_late — mean days past due of those bills | ≥ 15 days: 20; ≥ 5 days: 10 |
| arrears — amount overdue now (fen) | ≥ 500 yuan: 20; > 0: 10 |
| broken_plans — payment plans broken | 20 each, at most 40 |

Band: score ≥ 50 high, ≥ 20 medium, else low.
"""

from __future__ import annotations

# the model-backed entry points (risk.engine) and the points score (risk.rules), public here
from dianfei.risk.engine import MODEL_BANDS as MODEL_BANDS
from dianfei.risk.engine import ModelBands as ModelBands
from dianfei.risk.engine import ModelScorer as ModelScorer
from dianfei.risk.engine import ScoreBackend as ScoreBackend
from dianfei.risk.engine import backtest as backtest
from dianfei.risk.engine import daily_scores as daily_scores
from dianfei.risk.engine import early_warnings as early_warnings
from dianfei.risk.engine import explain as explain
from dianfei.risk.engine import latest_model as latest_model
from dianfei.risk.engine import models as models
from dianfei.risk.engine import scorer_for as scorer_for
from dianfei.risk.engine import train_model as train_model
from dianfei.risk.rules import BANDS as BANDS
from dianfei.risk.rules import FEATURES as FEATURES
from dianfei.risk.rules import RiskScorer as RiskScorer
from dianfei.risk.rules import RulesScorer as RulesScorer


def default_scorer() -> RiskScorer:
    """The points score (what collections uses when no model is trained)."""
    return RulesScorer()


# == Risk intelligence (issue 10, deliverables 5–8): theft and anomaly warnings, next-bill
# forecasts, segments, strategy experiments. Logic in risk/anomaly.py, forecast.py,
# segments.py, experiments.py and insight.py; these are the entry points other packages and
# the CLI use (docs/risk-insight.md). ==========================================================

from dianfei.risk import segments as _segment_rules  # noqa: E402
from dianfei.risk.insight import INSPECTION_OUTCOMES as INSPECTION_OUTCOMES  # noqa: E402
from dianfei.risk.insight import PAYMENT_MODES as PAYMENT_MODES  # noqa: E402
from dianfei.risk.insight import account_facts as account_facts  # noqa: E402
from dianfei.risk.insight import assign_segments as assign_segments  # noqa: E402
from dianfei.risk.insight import bill_document_forecast as bill_document_forecast  # noqa: E402
from dianfei.risk.insight import bill_payments as bill_payments  # noqa: E402
from dianfei.risk.insight import consumption_history as consumption_history  # noqa: E402
from dianfei.risk.insight import create_experiment as create_experiment  # noqa: E402
from dianfei.risk.insight import experiment as experiment  # noqa: E402
from dianfei.risk.insight import experiment_arms as experiment_arms  # noqa: E402
from dianfei.risk.insight import experiment_report as experiment_report  # noqa: E402
from dianfei.risk.insight import forecast_next_bill as forecast_next_bill  # noqa: E402
from dianfei.risk.insight import inspections as inspections  # noqa: E402
from dianfei.risk.insight import list_experiments as list_experiments  # noqa: E402
from dianfei.risk.insight import queue_forecast_notices as queue_forecast_notices  # noqa: E402
from dianfei.risk.insight import record_inspection as record_inspection  # noqa: E402
from dianfei.risk.insight import segment_consumption_facts as segment_consumption_facts  # noqa: E402
from dianfei.risk.insight import segment_labels as segment_labels  # noqa: E402
from dianfei.risk.insight import segments as segments  # noqa: E402
from dianfei.risk.insight import station_losses as station_losses  # noqa: E402
from dianfei.risk.insight import store_forecasts as store_forecasts  # noqa: E402
from dianfei.risk.insight import theft_scan as theft_scan  # noqa: E402

# what the ladders and the daily snapshot need to know of the segment rules (collections reads
# them here): the segments in the rules' order, the default, the facts kept per billed period
RISK_SEGMENTS: tuple[str, ...] = _segment_rules.SEGMENTS
DEFAULT_SEGMENT: str = _segment_rules.DEFAULT
SEGMENT_CONSUMPTION_COLUMNS: tuple[str, ...] = _segment_rules.CONSUMPTION_COLUMNS

# scoring per partition of accounts (risk/partitions.py): the pieces the Spark backend
# (dianfei.scale.risk) ships to its tasks and puts back together — the same scores as local
from dianfei.risk.engine import REASONS_FOR as REASONS_FOR  # noqa: E402
from dianfei.risk.engine import truncate as truncate  # noqa: E402
from dianfei.risk.features import History as History  # noqa: E402
from dianfei.risk.partitions import SCORES_SCHEMA as SCORES_SCHEMA  # noqa: E402
from dianfei.risk.partitions import Found as Found  # noqa: E402
from dianfei.risk.partitions import ModelText as ModelText  # noqa: E402
from dianfei.risk.partitions import Part as Part  # noqa: E402
from dianfei.risk.partitions import account_part as account_part  # noqa: E402
from dianfei.risk.partitions import give_reasons as give_reasons  # noqa: E402
from dianfei.risk.partitions import routed as routed  # noqa: E402
from dianfei.risk.partitions import score_part as score_part  # noqa: E402
from dianfei.risk.partitions import split_parts as split_parts  # noqa: E402

# the segments checked against the arrears model (risk/segment_check.py): per segment the
# score's mean and spread, the observed rate of the next bill paid late, the order, and the
# accounts whose rule and model disagree strongly (`dianfei segments check`, the model report)
from dianfei.risk.segment_check import check_segments as check_segments  # noqa: E402
