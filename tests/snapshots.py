"""Expensive starting points (a demo, a filled installation) built once per test process and
copied into each test's own database: a SQLite file copy or ``CREATE DATABASE … TEMPLATE`` on
PostgreSQL, and a copy of the data directory. Each test still gets its own database to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _admin_url, backend

#: per test process, backend and name: what was built (a SQLite file or a PostgreSQL template
#: database, and its data directory)
_BUILT: dict[tuple[str, str], tuple[str, Path]] = {}


def _snapshot(env: dict[str, str], where: Path) -> tuple[str, Path]:
    """Keep the demo just built in ``env`` for the process: its database and data directory."""
    import shutil
    import sqlite3

    data = where / "var"
    shutil.copytree(env["DIANFEI_DATA_DIR"], data)
    if backend() == "postgresql":
        import atexit
        import uuid

        import psycopg

        source = env["DIANFEI_DATABASE_URL"].rsplit("/", 1)[1]
        name = f"dianfei_demo_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')

        def drop() -> None:
            with psycopg.connect(_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        atexit.register(drop)
        return name, data
    target = where / "demo.db"
    with sqlite3.connect(env["DIANFEI_DATABASE_URL"].removeprefix("sqlite:///")) as src, \
            sqlite3.connect(target) as dst:
        src.backup(dst)
    return str(target), data


def _restore(snapshot: tuple[str, Path], env: dict[str, str]) -> None:
    """Make the (still unopened) database of ``env`` a copy of the snapshot."""
    import shutil

    source, data = snapshot
    shutil.rmtree(env["DIANFEI_DATA_DIR"], ignore_errors=True)
    shutil.copytree(data, env["DIANFEI_DATA_DIR"])
    if backend() == "postgresql":
        import psycopg

        name = env["DIANFEI_DATABASE_URL"].rsplit("/", 1)[1]
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    else:
        shutil.copyfile(source, env["DIANFEI_DATABASE_URL"].removeprefix("sqlite:///"))


def built_once(name: str, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
               build: Callable[[dict[str, str]], Any]) -> None:
    """Make the (fresh, unopened) database of ``env`` hold what ``build(env)`` makes: built in the
    first test of the process that asks for ``name``, copied for the others."""
    key = (backend(), name)
    if key not in _BUILT:
        build(env)
        _BUILT[key] = _snapshot(env, tmp_path_factory.mktemp(name))
    else:
        _restore(_BUILT[key], env)
