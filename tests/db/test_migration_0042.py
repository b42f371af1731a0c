"""Migration 0042 (station_supply) on both databases: up from 0041 onto a database with data,
down again and up once more, leaving what was there untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

import dianfei.db.engine as db_engine
from tests.conftest import fresh_database_env

pytestmark = pytest.mark.db
MIGRATIONS = Path(db_engine.__file__).with_name("migrations")


def step(engine: object, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:  # type: ignore[attr-defined]
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_0042_adds_station_supply_and_goes_back(tmp_path: Path) -> None:
    with fresh_database_env(tmp_path) as env:
        engine = create_engine(env["DIANFEI_DATABASE_URL"])
        try:
            step(engine, "0041")
            assert "station_supply" not in inspect(engine).get_table_names()
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO regions (region_id, name) VALUES ('R1', '城关镇')"))
            step(engine, "0042")
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO station_supply (station_id, period, kwh, batch_id) "
                                  "VALUES ('S1', '2026-01', 12345678, NULL)"))
                with pytest.raises(Exception, match=r"(?i)unique|primary"), \
                        conn.begin_nested():  # one row a station and month
                    conn.execute(text("INSERT INTO station_supply (station_id, period, kwh) "
                                          "VALUES ('S1', '2026-01', 1)"))
                assert conn.execute(text("SELECT kwh FROM station_supply")).scalar() == 12345678
            step(engine, "0041", down=True)
            assert "station_supply" not in inspect(engine).get_table_names()
            step(engine, "0042")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM station_supply")).scalar() == 0
                assert conn.execute(text("SELECT name FROM regions")).scalar() == "城关镇"
        finally:
            engine.dispose()
