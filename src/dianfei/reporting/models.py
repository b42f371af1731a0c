"""Stored dashboard figures (看板数据): the console dashboard's KPIs of a period, computed by the
``dashboard_refresh`` job for every customer and for each region, customer class and collector,
so a view reads one small row instead of a year of bills and clearings.

One row per (period, filter): a refresh replaces the period's rows in one transaction. The
figures are derived data — recomputable at any time from the ledger, bills and tickets — so they
carry no audit record; what they were computed from is named in the row (``as_of``, when).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class DashboardFigures(Base):
    __tablename__ = "dashboard_figures"
    #: YYYY-MM
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    #: "" for every customer, else "region=R", "customer_class=C" or "collector=K"
    filter_key: Mapped[str] = mapped_column(String(96), primary_key=True)
    #: the business day the figures are as of
    as_of: Mapped[date] = mapped_column(Date)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the dashboard as JSON: {"period", "as_of", "latest", "trend"}
    payload: Mapped[str] = mapped_column(Text)
