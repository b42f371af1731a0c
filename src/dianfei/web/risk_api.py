"""Arrears risk over REST: one account's score with its reasons and feature contributions, the
ranked list of the day's scores, and the early warnings (``dianfei risk``; docs/risk.md)."""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.web.auth import guard
from dianfei.web.paging import Page, check_day, page

BANDS = ("low", "medium", "high")


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.collections.service import broken_plan_dates
    from dianfei.customers.service import customer_of_account
    from dianfei.risk import service as risk
    from dianfei.risk.features import load_history

    def day_or_today(day: date | None, name: str) -> date:
        today = business_date(clock.now())
        d = check_day(day, name) or today
        if d > today:
            raise ValidationError(f"{d} is in the future: nothing is known of it yet", where=name)
        return d

    @app.get("/api/v1/risk/accounts/{account_id}", tags=["risk"], **guard("risk:read"))
    def api_risk_account(account_id: str,
                         as_of: Annotated[date | None, Query()] = None) -> dict[str, Any]:
        """The account's arrears risk as of a day (default today): probability, band, which
        scorer, the reasons (zh-CN and en) and each feature's contribution."""
        d = day_or_today(as_of, "as_of")
        with db.engine.connect() as conn:
            customer_of_account(conn, account_id)  # 404 for an account that does not exist
        history = load_history(db.engine, plans=broken_plan_dates(db))
        return clean_json(risk.explain(db, account_id, d, history=history))

    @app.get("/api/v1/risk/scores", tags=["risk"], **guard("risk:read"))
    def api_risk_scores(p: Annotated[Page, Depends(page)],
                        day: Annotated[date | None, Query(alias="date")] = None,
                        band: Annotated[str | None, Query(
                            description="low, medium or high")] = None) -> dict[str, Any]:
        """Every account's score of the day (default today), riskiest first: the day's scores
        are computed once and kept (``risk score`` does the same), then read."""
        if band is not None and band not in BANDS:
            raise ValidationError(f"one of {', '.join(BANDS)}", where="band")
        d = day_or_today(day, "date")
        scores = risk.daily_scores(db, d, plans=lambda: broken_plan_dates(db))
        rows = [{"account_id": r["account_id"], "probability": _round(r["probability"]),
                 "band": r["band"], "scorer": r["scorer"], "model_version": r["model_version"],
                 "reasons_zh": r["reasons_zh"], "reasons_en": r["reasons_en"]}
                for r in scores.iter_rows(named=True) if band is None or r["band"] == band]
        rows.sort(key=lambda r: (-(r["probability"] or 0.0), r["account_id"]))
        return clean_json(p.of(rows) | {"date": d.isoformat()})

    @app.get("/api/v1/risk/warnings", tags=["risk"], **guard("risk:read"))
    def api_risk_warnings(p: Annotated[Page, Depends(page)],
                          day: Annotated[date | None, Query(alias="date")] = None
                          ) -> dict[str, Any]:
        """The day's early warnings (risk crossed the warning line or jumped), highest risk
        first; empty until the day is scored."""
        d = day_or_today(day, "date")
        rows = [{"account_id": r["account_id"], "kind": r["kind"],
                 "probability": _round(r["probability"]), "previous": _round(r["previous"]),
                 "band": r["band"], "scorer": r["scorer"], "reasons_zh": r["reasons_zh"],
                 "reasons_en": r["reasons_en"]} for r in risk.early_warnings(db, d).to_dicts()]
        return clean_json(p.of(rows) | {"date": d.isoformat()})


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def clean(obj: Any) -> Any:
    """JSON has no NaN or infinity: such a number is shown as null (never silently 0)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def clean_json(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: clean(v) for k, v in obj.items()}
