from __future__ import annotations

import pytest

from dianfei.sim import Utility, build_utility

from ._util import START


@pytest.fixture(scope="session")
def county() -> Utility:
    """The 20,000-customer county most sim tests look at."""
    return build_utility(20_000, seed=11, start=START)

