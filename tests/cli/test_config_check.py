"""`dianfei config check` names every wrong key and value, section by section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from tests.cli.test_cli_demo import dianfei


def test_config_check_names_each_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "dianfei.toml"
    cfg.write_text('timezon = "Asia/Shanghai"\n[vee]\nspike_floor_kw = "x"\n'
                   '[jobs]\nschedule = "/nowhere/schedule.toml"\n[web]\nthreads = 0\n')
    env = {"DIANFEI_CONFIG": str(cfg), "DIANFEI_DATA_DIR": str(tmp_path / "var")}
    proc = dianfei(env, "config", "check", "--json", check=False)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    sections = out["sections"]
    assert out["ok"] is False
    assert sections["timezon"].startswith("unknown top-level key")
    assert "spike_floor_kw" in sections["vee"]
    assert "no such calendar file" in sections["jobs"]
    assert "[web] threads must be between 1 and 64, got 0" in sections["web"]
    assert sections["notify"] == "ok" and sections["billing"] == "ok"


def test_the_default_configuration_is_fine(tmp_path: Path) -> None:
    proc = dianfei({"DIANFEI_DATA_DIR": str(tmp_path / "var")}, "config", "check", "--json")
    assert json.loads(proc.stdout)["ok"] is True


@pytest.mark.db
def test_migrate_dry_run_lists_what_would_run_and_changes_nothing(db_env: dict[str, str]) -> None:
    dianfei(db_env, "migrate")
    fresh = json.loads(dianfei(db_env, "migrate", "--dry-run", "--json").stdout)
    assert fresh["migrations"] == [] and fresh["from_revision"] == fresh["revision"]
    engine = create_engine(db_env["DIANFEI_DATABASE_URL"])
    try:
        with engine.begin() as conn:  # as if this code were newer than the schema by two steps
            previous = sorted(pending := [r for r, _ in _all_revisions()])[-3]
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
        plan = json.loads(dianfei(db_env, "migrate", "--dry-run", "--json").stdout)
        assert [m["revision"] for m in plan["migrations"]] == pending[-2:]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == previous
    finally:
        engine.dispose()


def _all_revisions() -> list[tuple[str, str]]:
    from dianfei.db.engine import pending_migrations

    return pending_migrations(None)
