"""Shared helpers for the tariff tests."""

from __future__ import annotations

import pytest

from dianfei.tariffs.service import TariffCatalogue, load_catalogue


@pytest.fixture(scope="session")
def catalogue() -> TariffCatalogue:
    return load_catalogue()
