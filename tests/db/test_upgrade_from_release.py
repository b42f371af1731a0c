"""Upgrades: a database filled by the previous release (tests/db/fixtures/release-0026.*: the
demo of the release that landed at revision 0026, 60 customers × 4 months, dumped from SQLite
and PostgreSQL) is refused by every command until `dianfei migrate` runs; after it, nothing that
was stored has changed — the exports equal the ones the release itself wrote — the audit chain
and the ledger verify, and the utility goes on working (a bill run, a day of collections, the
console's API)."""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dianfei.db.engine import head_revisions
from tests.cli.test_cli_demo import dianfei
from tests.conftest import backend, fresh_database_env

FIXTURES = Path(__file__).with_name("fixtures")
RELEASE = "0026"
pytestmark = pytest.mark.db


def load_release(env: dict[str, str]) -> None:
    url = env["DIANFEI_DATABASE_URL"]
    dump = gzip.decompress((FIXTURES / f"release-{RELEASE}.{backend()}.sql.gz").read_bytes())
    if backend() == "postgresql":
        # pg_dump's plain format (COPY … FROM stdin) is psql's to read
        plain = url.replace("postgresql+psycopg", "postgresql")
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", plain], input=dump,
                       check=True, capture_output=True)
    else:
        import sqlite3

        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.executescript(dump.decode("utf-8"))
        conn.close()


def expected_exports() -> dict[str, str]:
    with tarfile.open(FIXTURES / f"release-{RELEASE}.{backend()}.exports.tar.gz") as tar:
        return {m.name.removesuffix(".csv"): tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
                for m in tar.getmembers()}


@pytest.fixture
def release_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with fresh_database_env(tmp_path) as env:
        load_release(env)
        yield env


def _phone_masked(csv_text: str) -> str:
    import csv
    import io

    from dianfei.core.crypto import mask_phone

    rows = list(csv.reader(io.StringIO(csv_text)))
    at = rows[0].index("phone")
    for r in rows[1:]:
        r[at] = mask_phone(r[at]) or ""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def stored_revision(env: dict[str, str]) -> str:
    engine = create_engine(env["DIANFEI_DATABASE_URL"])
    try:
        with engine.connect() as c:
            return str(c.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def test_the_previous_release_is_migrated_only_on_purpose_and_loses_nothing(
        release_env: dict[str, str], tmp_path: Path) -> None:
    env = release_env
    assert stored_revision(env) == RELEASE
    if head_revisions() != {RELEASE}:
        # this code is newer: every command refuses until the migration is run on purpose
        refused = dianfei(env, "ledger", "check", check=False)
        assert refused.returncode != 0 and "run `dianfei migrate`" in refused.stderr
        assert "Traceback" not in refused.stderr and stored_revision(env) == RELEASE
        plan = json.loads(dianfei(env, "migrate", "--dry-run", "--json").stdout)
        assert plan["from_revision"] == RELEASE and plan["migrations"]
        assert stored_revision(env) == RELEASE  # a dry run changes nothing
    done = json.loads(dianfei(env, "migrate", "--json").stdout)
    assert done["revision"] in head_revisions() and not done["missing_guards"]

    # nothing stored was changed: the exports are the ones the release wrote
    for kind, before in expected_exports().items():
        out = tmp_path / f"{kind}.csv"
        args = ["export", kind, "--out", str(out)]
        if kind in ("bills", "payments"):
            args += ["--as-of", "2025-06-02"]
        if kind == "customers":  # the stored values, not the masks the export now writes
            args.append("--reveal")
        dianfei(env, *args)
        got = out.read_text(encoding="utf-8")
        if kind == "customers":  # the release wrote the phone masked, name and address in clear
            got = _phone_masked(got)
        assert got == before, kind
    assert dianfei(env, "audit", "verify").returncode == 0
    assert dianfei(env, "ledger", "check").returncode == 0

    # and the utility goes on: the next month's bill run, a day of collections, the KPIs
    run = dianfei(env, "bill", "run", "--period", "2025-05", "--json")
    assert json.loads(run.stdout)["period"] == "2025-05"
    dianfei(env, "collect", "run", "--date", "2025-06-03", "--no-meter-control")
    kpi = json.loads(dianfei(env, "kpi", "--period", "2025-04", "--json").stdout)
    assert kpi
    assert dianfei(env, "audit", "verify").returncode == 0


def test_a_database_from_a_newer_dianfei_is_refused(release_env: dict[str, str]) -> None:
    env = release_env
    dianfei(env, "migrate")
    engine = create_engine(env["DIANFEI_DATABASE_URL"])
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    refused = dianfei(env, "ledger", "check", check=False)
    assert refused.returncode != 0 and "newer dianfei" in refused.stderr
    assert stored_revision(env) == "9999"
