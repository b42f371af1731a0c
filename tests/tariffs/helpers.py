"""Helpers for the tariff tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from dianfei.core.clock import Period
from dianfei.tariffs.service import TariffCatalogue, Usage, quote


def q(catalogue: TariffCatalogue, tariff: str, period: str, kwh: str, **kw: Any) -> dict[str, Any]:
    """Quote with Decimal quantities written as strings, like the CLI does."""
    fields = {k: (Decimal(v) if isinstance(v, str) else v) for k, v in kw.items()}
    return quote(catalogue, tariff, Period.parse(period), Usage(kwh=Decimal(kwh), **fields))


def amounts(result: dict[str, Any]) -> dict[str, str]:
    return {line["code"]: line["amount"] for line in result["lines"]}
