"""Shared fixtures. Database tests run on SQLite, and again on PostgreSQL with
DIANFEI_TEST_DB=postgresql (``make test`` does both): each test gets a fresh database."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings as _hypothesis_settings

from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database

# Hypothesis' per-example deadline (200 ms) is a wall-clock assertion: a loaded CI machine turned
# a correct property red. The properties are checked; their speed is the benchmarks' business.
_hypothesis_settings.register_profile("dianfei", deadline=None)
_hypothesis_settings.load_profile("dianfei")



@pytest.fixture(autouse=True, scope="session")
def _quick_password_hashes() -> Iterator[None]:
    """argon2id with its smallest cost inside the test processes (the tests sign many users in;
    at the production defaults — 64 MiB, 3 passes — the hashing was a large share of the web
    tests). Still argon2id, verified the same way; commands the tests run as subprocesses keep
    the defaults."""
    from argon2 import PasswordHasher

    from dianfei.security import users

    quick = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    real = users._hasher
    users._hasher = lambda: quick  # type: ignore[assignment]
    yield
    users._hasher = real


PG_URL = os.environ.get("DIANFEI_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # browser tests drive the pages, whose services are tested on both databases already:
        # they run once, on the embedded database (a live server and chromium per test)
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            continue
        if {"db", "db_env"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: uses a database (runs on SQLite and PostgreSQL)")


def backend() -> str:
    return os.environ.get("DIANFEI_TEST_DB", "sqlite")


@pytest.fixture
def db_env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment variables naming a fresh database and data dir: empty, or — for a test that
    also asks for ``db`` — already at the newest schema (a copy of a template migrated once per
    test process, instead of running every migration again for each test)."""
    with fresh_database_env(tmp_path, migrated="db" in request.fixturenames) as env:
        yield env


#: the personal-data key of tests/factories.py (PiiCipher(b"k" * 32)): the commands a test runs
#: must open what the factories sealed, as on one installation
FACTORY_KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


#: per test process: the migrated template (PostgreSQL database name or SQLite file)
_TEMPLATE: dict[str, str] = {}


def _admin_url() -> str:
    return PG_URL.replace("postgresql+psycopg", "postgresql")


def _template() -> str:
    """A database at the newest schema, made once per test process; new test databases are
    copies of it (``CREATE DATABASE … TEMPLATE`` / a file copy)."""
    found = _TEMPLATE.get(backend())
    if found:
        return found
    import atexit
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="dianfei-template-"))
    # each test process made one and left it behind in /tmp (a database file on SQLite)
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    if backend() == "postgresql":
        import psycopg

        name = f"dianfei_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(_admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = PG_URL.rsplit("/", 1)[0] + "/" + name

        def drop() -> None:
            with psycopg.connect(_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        atexit.register(drop)
        found = name
    else:
        url = f"sqlite:///{work / 'template.db'}"
        found = str(work / "template.db")
    database = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                            "DIANFEI_DATA_DIR": str(work / "var"),
                                            "DIANFEI_SECRET_KEY": FACTORY_KEY}))
    database.engine.dispose()
    _TEMPLATE[backend()] = found
    return found


@contextmanager
def fresh_database_env(tmp_path: Path, *, migrated: bool = False) -> Iterator[dict[str, str]]:
    """A new database (SQLite file or PostgreSQL database) dropped afterwards: empty, or with
    ``migrated`` a copy of the template at the newest schema."""
    tmp_path = tmp_path / uuid.uuid4().hex[:8]
    tmp_path.mkdir()
    data_dir = tmp_path / "var"
    if backend() == "postgresql":
        import psycopg

        name = f"dianfei_t_{uuid.uuid4().hex[:12]}"
        admin = _admin_url()
        template = f' TEMPLATE "{_template()}"' if migrated else ""
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{template}')
        url = PG_URL.rsplit("/", 1)[0] + "/" + name
        try:
            yield {"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(data_dir),
                   "DIANFEI_SECRET_KEY": FACTORY_KEY}
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        if migrated:
            import shutil

            shutil.copyfile(_template(), tmp_path / "dianfei.db")
        yield {"DIANFEI_DATABASE_URL": f"sqlite:///{tmp_path / 'dianfei.db'}",
               "DIANFEI_DATA_DIR": str(data_dir), "DIANFEI_SECRET_KEY": FACTORY_KEY}


@pytest.fixture
def db(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    for k, v in db_env.items():
        monkeypatch.setenv(k, v)
    database = open_database(load_settings(db_env))
    try:
        yield database
    finally:
        database.close()
