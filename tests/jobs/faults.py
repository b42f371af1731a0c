"""What the SIGKILL tests share (tests/jobs/test_kill_*.py): a real ``dianfei worker`` (or
command) as a subprocess, killed at a named fault point (``DIANFEI_FAULT_KILL_AT``,
dianfei/core/faults.py); a copy of a prepared database, for the uninterrupted run to compare
with; and the end-of-test checks every crash must pass (audit chain, ledger invariants)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.db.engine import Database
from tests.conftest import _admin_url, backend


def worker(env: Mapping[str, str], now: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """One pass of ``dianfei worker --once --json`` at ``now``."""
    return subprocess.run([sys.executable, "-m", "dianfei", "worker", "--once", "--json"],
                          env={**os.environ, **env, "DIANFEI_NOW": now, **extra},
                          capture_output=True, text=True, timeout=180)


def command(env: Mapping[str, str], now: str, *args: str,
            **extra: str) -> subprocess.CompletedProcess[str]:
    """``dianfei ARGS`` as a subprocess at ``now``."""
    return subprocess.run([sys.executable, "-m", "dianfei", *args],
                          env={**os.environ, **env, "DIANFEI_NOW": now, **extra},
                          capture_output=True, text=True, timeout=180)


def killed(proc: subprocess.CompletedProcess[str]) -> None:
    """The process died of SIGKILL (not of an error of its own)."""
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)


def calendar(tmp_path: Path, schedule: str, extra_config: str = "") -> str:
    """A config file whose calendar is ``schedule`` (plus ``extra_config``); its path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "schedule.toml").write_text(schedule, encoding="utf-8")
    config = tmp_path / "dianfei.toml"
    config.write_text(f'[jobs]\nschedule = "{tmp_path / "schedule.toml"}"\n{extra_config}',
                      encoding="utf-8")
    return str(config)


@contextmanager
def copy_of(db: Database, env: Mapping[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """A copy of ``db`` as it is now (database and data directory), dropped afterwards: the
    same starting point for the uninterrupted run."""
    db.engine.dispose()  # PostgreSQL copies a template only while no one is connected
    where = tmp_path / f"copy-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    data = Path(env["DIANFEI_DATA_DIR"])
    if data.exists():
        shutil.copytree(data, where / "var")
    out = {**env, "DIANFEI_DATA_DIR": str(where / "var")}
    if backend() == "postgresql":
        import psycopg

        source = env["DIANFEI_DATABASE_URL"].rsplit("/", 1)[1]
        name = f"dianfei_c_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        out["DIANFEI_DATABASE_URL"] = env["DIANFEI_DATABASE_URL"].rsplit("/", 1)[0] + "/" + name
        try:
            yield out
        finally:
            with psycopg.connect(_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        source_path = env["DIANFEI_DATABASE_URL"].removeprefix("sqlite:///")
        target = where / "dianfei.db"
        with sqlite3.connect(source_path) as src, sqlite3.connect(target) as dst:
            src.backup(dst)  # the WAL's pages included
        out["DIANFEI_DATABASE_URL"] = f"sqlite:///{target}"
        yield out


def rows(db: Database, queries: Mapping[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        return {k: [tuple(r) for r in conn.execute(text(q))] for k, q in queries.items()}


def intact(env: Mapping[str, str]) -> None:
    """``dianfei audit verify`` and ``dianfei ledger check`` pass on the database of ``env``."""
    runner = CliRunner()
    for args in (["audit", "verify"], ["ledger", "check"]):
        res = runner.invoke(app, args, env=dict(env))
        assert res.exit_code == 0, (args, res.output)
