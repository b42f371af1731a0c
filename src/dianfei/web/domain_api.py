"""The REST API over the domain services (issue 12): customers and accounts, reads, bills,
payments, reconciliation, risk and KPIs — each in its own module, registered here so the
application factory names one line (docs/api.md)."""

from __future__ import annotations

from fastapi import FastAPI

from dianfei.core.clock import Clock
from dianfei.db.engine import Database


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.web import (
        bills_api,
        customers_api,
        metering_api,
        reconcile_api,
        reporting_api,
        risk_api,
    )

    for module in (customers_api, metering_api, bills_api, reconcile_api, risk_api,
                   reporting_api):
        module.register(app, db, clock)
