"""The Spark session: built from configuration, checked before use, one per process.

``[spark]`` in the config file (or ``DIANFEI_SPARK_MASTER``) names the master (``local[2]`` by
default; ``spark://host:7077``, ``yarn`` or ``k8s://…`` on a cluster); ``[spark.conf]`` passes
any Spark property through; ``partitions`` is how many partitions of accounts a job is cut into
(default: twice the cores the master offers, at least 2).

Everything that can stop the engine before it runs — no PySpark, no Java or an old one, a master
that does not answer — is found here and reported as a :class:`SparkUnavailable` with what to do,
before any job reads or writes anything.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dianfei.core.errors import DianfeiError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from dianfei.core.settings import Settings

#: the oldest Java PySpark 4 runs on
MIN_JAVA = 17
#: seconds to wait for a standalone master's port before calling it unreachable
CONNECT_TIMEOUT = 5.0


class SparkUnavailable(DianfeiError):
    """The Spark backend cannot start here; nothing was read or written."""

    code = "spark_unavailable"
    http_status = 503


class SparkJobFailed(DianfeiError):
    """A Spark job failed (a task ran out of retries). Every partition is written whole or not at
    all, so what was committed is complete and a rerun finishes the rest."""

    code = "spark_job_failed"
    http_status = 500


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[2]"
    partitions: int | None = None
    conf: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, env: dict[str, str] | None = None) -> SparkSettings:
        env = dict(os.environ) if env is None else env
        section = settings.raw.get("spark", {})
        if not isinstance(section, dict):
            raise SparkUnavailable("config [spark] must be a table")
        master = env.get("DIANFEI_SPARK_MASTER") or section.get("master") or "local[2]"
        parts = env.get("DIANFEI_SPARK_PARTITIONS") or section.get("partitions")
        try:
            partitions = int(parts) if parts is not None else None
        except (TypeError, ValueError):
            raise SparkUnavailable(f"spark partitions must be a whole number, got {parts!r}") from None
        if partitions is not None and partitions < 1:
            raise SparkUnavailable(f"spark partitions must be at least 1, got {partitions}")
        conf = section.get("conf", {})
        if not isinstance(conf, dict):
            raise SparkUnavailable("config [spark.conf] must be a table of Spark properties")
        return cls(master=str(master), partitions=partitions,
                   conf={str(k): str(v) for k, v in conf.items()})

    def default_partitions(self) -> int:
        if self.partitions is not None:
            return self.partitions
        m = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", self.master)
        cores = (os.cpu_count() or 2) if m is None or m.group(1) == "*" else int(m.group(1))
        return max(2, 2 * cores)


def java_version(java: str) -> int:
    """The major version ``java -version`` reports (8 for "1.8.0_…")."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SparkUnavailable(f"the Spark backend needs Java {MIN_JAVA}+; running {java} "
                               f"-version failed: {exc}") from None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if m is None:
        raise SparkUnavailable(f"the Spark backend needs Java {MIN_JAVA}+; cannot read the "
                               f"version {java} reports: {(out.stderr or out.stdout).strip()!r}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    home = env.get("JAVA_HOME")
    if home:
        java = os.path.join(home, "bin", "java")
        if not os.access(java, os.X_OK):
            raise SparkUnavailable(f"JAVA_HOME={home} has no bin/java: install Java {MIN_JAVA}+ "
                                   "(Debian: apt-get install openjdk-17-jre-headless) or fix "
                                   "JAVA_HOME")
        return java
    found = shutil.which("java", path=env.get("PATH"))
    if found is None:
        raise SparkUnavailable(f"the Spark backend needs Java {MIN_JAVA}+ and none was found "
                               "(no JAVA_HOME, no java on PATH): install one (Debian: apt-get "
                               "install openjdk-17-jre-headless) or use --backend local")
    return found


def check_master(master: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """A standalone master (``spark://host:port[,host:port]``) must answer on its port; Spark
    itself would retry for minutes before giving up."""
    if not master.startswith("spark://"):
        return
    errors = []
    for hostport in master[len("spark://"):].split(","):
        url = urlsplit(f"spark://{hostport}")
        host, port = url.hostname, url.port or 7077
        if not host:
            raise SparkUnavailable(f"spark master {master!r}: no host")
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
    raise SparkUnavailable(f"spark master {master} cannot be reached ({'; '.join(errors)}); "
                           "nothing was read or written")


def check_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(
            "the Spark backend needs PySpark, which is not installed: pip install "
            "'dianfei[spark]' (or use --backend local, the default)") from None


_session: SparkSession | None = None
_session_master: str | None = None


def spark_session(settings: Settings) -> SparkSession:
    """The process's Spark session, started on first use from ``settings``."""
    global _session, _session_master
    cfg = SparkSettings.from_settings(settings)
    if _session is not None:
        if _session_master != cfg.master:
            raise SparkUnavailable(f"a Spark session on {_session_master} is already running in "
                                   f"this process; cannot switch to {cfg.master}")
        return _session
    check_pyspark()
    java = find_java()
    version = java_version(java)
    if version < MIN_JAVA:
        raise SparkUnavailable(f"the Spark backend needs Java {MIN_JAVA}+, {java} is Java "
                               f"{version}: install a newer one or set JAVA_HOME to it")
    check_master(cfg.master)
    # the executors' Python must be this one (with dianfei and its libraries) unless the
    # cluster's configuration names another (spark.pyspark.python)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.master).appName("dianfei")
    defaults: dict[str, Any] = {
        "spark.ui.enabled": "false",
        # Spark's own WARN lines (native Hadoop, loopback address) are not the operator's
        # business on every command; errors still show
        "spark.log.level": "ERROR",
        "spark.driver.extraJavaOptions":
            f"-Dlog4j2.configurationFile=file:{Path(__file__).with_name('log4j2.properties')}",
        "spark.ui.showConsoleProgress": "false",
        # one call per partition of accounts, never merged away: a partition is the unit
        # that is written exactly once
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.sql.shuffle.partitions": str(cfg.default_partitions()),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "2g",
    }
    for key, value in {**defaults, **cfg.conf}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM's own words: say them, do not guess
        raise SparkUnavailable(f"Spark did not start on {cfg.master}: {first_line(exc)}") from exc
    session.sparkContext.setLogLevel("ERROR")
    _session, _session_master = session, cfg.master
    return session


def stop_session() -> None:
    global _session, _session_master
    if _session is not None:
        _session.stop()
    _session, _session_master = None, None


def first_line(exc: BaseException) -> str:
    """The line of a (Java) error that says what went wrong, without the stack trace."""
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "Traceback", "File ", "---")):
            return line[:500]
    return type(exc).__name__


def job_failed(exc: BaseException, what: str) -> SparkJobFailed:
    """A failed job as a message a clerk or operator can act on."""
    text = str(exc)
    cause = first_line(exc)
    m = re.search(r"(?m)^\s*(dianfei\.[\w.]+Error: .*)$", text)
    if m:
        cause = m.group(1)
    elif "Python worker exited unexpectedly" in text:
        cause = "a Python worker died (killed or out of memory)"
    return SparkJobFailed(f"{what} failed on Spark: {cause}. Every partition is written whole or "
                          "not at all: rerun the same command to finish the rest")
