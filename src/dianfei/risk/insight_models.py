"""Tables of risk intelligence (风险洞察): inspection outcomes (稽查结果) that teach the theft
model, and strategy experiments (策略实验) with their random assignments.

Named ``insight_models`` so the arrears model's own tables can live in ``risk/models.py``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

#: what an on-site inspection found: theft (窃电), a meter fault (计量故障), nothing
OUTCOMES = ("theft", "meter_fault", "no_finding")


class InspectionOutcome(Base):
    """One on-site inspection (用电检查) of an account and what it found. The supervised theft
    model learns from these; one row per account and day (recording it again is refused)."""

    __tablename__ = "inspection_outcomes"
    __table_args__ = (Index("uq_inspection_outcomes_account_day", "account_id", "inspected_on",
                            unique=True),)
    inspection_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32))
    #: the business date of the visit; the model sees only consumption of months before it
    inspected_on: Mapped[date] = mapped_column(Date)
    #: theft | meter_fault | no_finding
    outcome: Mapped[str] = mapped_column(String(16))
    inspector: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Experiment(Base):
    """A champion/challenger experiment: arms (e.g. a ladder or treatment each) and a holdout,
    assigned at random with a recorded seed so the assignment can be re-derived and audited."""

    __tablename__ = "experiments"
    experiment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    #: JSON list of {"arm": name, "share": fraction}; the holdout is one of them
    arms: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    started_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExperimentAssignment(Base):
    """Which arm an account is in. Written once when the experiment is created; never moved."""

    __tablename__ = "experiment_assignments"
    experiment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    arm: Mapped[str] = mapped_column(String(32))


class BillForecast(Base):
    """The stored next-bill forecast (下期电费预测) of an account, written for every account by
    the ``forecast_store`` job after a bill run (``dianfei forecast --store``): what the bill
    document and the portal show, read by key instead of re-rating the whole history per view.
    An account the forecaster could not rate has no row (its bill shows no forecast)."""

    __tablename__ = "bill_forecasts"
    #: the period forecast (the bill after the one it is shown on)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: 0.01 kWh
    kwh: Mapped[int] = mapped_column(BigInteger)
    #: fen
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_low: Mapped[int | None] = mapped_column(BigInteger)
    amount_high: Mapped[int | None] = mapped_column(BigInteger)
    #: season | no_season (fewer than 12 months of class history)
    method: Mapped[str] = mapped_column(String(16))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
