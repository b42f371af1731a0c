"""The KPI figures over REST (``dianfei kpi``; docs/kpi.md): collection rate, overdue arrears,
payment cycle, complaints … of a period as of a day, overall or by region, customer class,
station, collector, channel or risk segment."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import FastAPI, Query

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.web.auth import guard
from dianfei.web.paging import check_day, period_param
from dianfei.web.risk_api import clean_json


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.reporting.kpi import DIMENSIONS, period_kpis

    @app.get("/api/v1/kpis", tags=["reporting"], **guard("kpis:read"))
    def api_kpis(period: Annotated[str, Query(description="YYYY-MM")],
                 as_of: Annotated[date | None, Query(description="default: today")] = None,
                 by: Annotated[str | None, Query(
                     description="region, customer_class, station, collector, channel or "
                                 "segment")] = None,
                 trend: Annotated[int, Query(ge=0, le=24, description="periods of trend")] = 0,
                 ) -> dict[str, Any]:
        """The period's KPIs as of a day; with ``by``, the same figures per group."""
        p = period_param(period)
        d = check_day(as_of, "as_of") or business_date(clock.now())
        if by is not None and by not in DIMENSIONS:
            raise ValidationError(f"one of {', '.join(DIMENSIONS)}", where="by")
        if d < p.first_day:
            raise ValidationError(f"{d} is before period {p} begins", where="as_of")
        return clean_json(period_kpis(db, p, d, by, trend))
