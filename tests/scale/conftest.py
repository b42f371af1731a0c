"""Spark tests share one local session per test process (a JVM takes seconds to start).

``local[2,3]``: two cores, and a failed task is tried up to three times, as on a cluster
(plain ``local[2]`` never retries), so a test can kill a task and watch Spark retry it.
"""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("DIANFEI_SPARK_MASTER", "local[2,3]")


def _spark_ready() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install 'dianfei[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java on this machine"
    return None


@pytest.fixture(scope="session")
def spark_ready() -> None:
    """Spark tests need PySpark and Java; CI installs both (the dev lock and the machine's
    Java 17), so a missing one fails there instead of skipping silently."""
    reason = _spark_ready()
    if reason is not None:
        if os.environ.get("CI") or os.environ.get("DIANFEI_REQUIRE_SPARK"):
            pytest.fail(reason)
        pytest.skip(reason)
