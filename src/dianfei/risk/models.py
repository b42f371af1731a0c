"""Tables of risk: the model registry and the daily early-warning list (风险预警).

The trained boosters themselves live as files under ``DIANFEI_DATA_DIR/models/arrears/<version>``
(LightGBM text models and a JSON of calibration, vocabulary and metrics); the table says which
exist, what they were trained on and how well they did on held-out months.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class RiskModel(Base):
    """One trained (or attempted) arrears-risk model."""

    __tablename__ = "risk_models"
    #: e.g. "arrears-20260701-0001"
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: nothing dated on or after this day was seen in training
    cutoff: Mapped[date] = mapped_column(Date)
    window_from: Mapped[date | None] = mapped_column(Date)
    n_train: Mapped[int] = mapped_column(Integer)
    n_valid: Mapped[int] = mapped_column(Integer)
    #: JSON list of the feature names
    features: Mapped[str] = mapped_column(Text)
    #: JSON of the held-out metrics per target
    metrics: Mapped[str] = mapped_column(Text)
    #: held-out AUC of the due-date target (null when undefined)
    auc: Mapped[float | None] = mapped_column(Float)
    #: directory of the model files, relative to the data dir
    path: Mapped[str] = mapped_column(Text)


class RiskWarning(Base):
    """An account on a day's early-warning list: its risk crossed the threshold or jumped."""

    __tablename__ = "risk_warnings"
    __table_args__ = (Index("uq_risk_warnings_day_account", "day", "account_id", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    account_id: Mapped[str] = mapped_column(String(32))
    #: crossed (rose past the threshold) or jumped (rose by at least the jump)
    kind: Mapped[str] = mapped_column(String(10))
    probability: Mapped[float] = mapped_column(Float)
    previous: Mapped[float | None] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(8))
    scorer: Mapped[str] = mapped_column(String(12))
    model_version: Mapped[str | None] = mapped_column(String(40))
    reasons_zh: Mapped[str] = mapped_column(Text)
    reasons_en: Mapped[str] = mapped_column(Text)
