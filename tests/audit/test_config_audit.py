"""Configuration changes on the audit chain: the first snapshot, nothing when nothing changed,
each added/changed/removed file named with its diff, secrets never copied, the chain intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from dianfei.audit.service import config_history, record_configuration, verify
from dianfei.db.engine import Database
from tests.cli.test_cli_demo import dianfei

pytestmark = pytest.mark.db

TARIFF = """id = "my-residential"
name = "居民生活用电"
price = "0.538"
"""


def test_configuration_changes_are_recorded_once_each(db: Database, tmp_path: Path) -> None:
    tariffs = tmp_path / "tariffs"
    tariffs.mkdir()
    (tariffs / "res.toml").write_text(TARIFF, encoding="utf-8")
    settings = tmp_path / "dianfei.toml"
    settings.write_text('[billing]\ntariff_dir = "x"\n[notify.smtp]\npassword = "hunter2"\n')
    raw = {"billing": {"tariff_dir": str(tariffs)}, "notify": {"smtp": {"password": "hunter2"}}}
    key = tmp_path / "alipay.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nSECRETMATERIAL\n-----END PUBLIC KEY-----\n")

    first = record_configuration(db.engine, str(settings), raw, [key])
    assert first is not None and str((tariffs / "res.toml").resolve()) in first.added
    assert any(n.startswith("dianfei:collections/ladders/") for n in first.added)
    assert record_configuration(db.engine, str(settings), raw, [key]) is None  # unchanged

    (tariffs / "res.toml").write_text(TARIFF.replace("0.538", "0.568"), encoding="utf-8")
    (tariffs / "new.toml").write_text('id = "new"\n', encoding="utf-8")
    key.write_text("-----BEGIN PUBLIC KEY-----\nROTATEDSECRET\n-----END PUBLIC KEY-----\n")
    change = record_configuration(db.engine, str(settings), raw, [key])
    assert change is not None
    assert change.changed == sorted([str((tariffs / "res.toml").resolve()), str(key.resolve())])
    assert change.added == [str((tariffs / "new.toml").resolve())] and not change.removed

    (tariffs / "new.toml").unlink()
    gone = record_configuration(db.engine, str(settings), raw, [key])
    assert gone is not None and gone.removed == [str((tariffs / "new.toml").resolve())]

    latest, price_change = config_history(db.engine)[:2]
    assert latest["removed"] and '-id = "new"' in latest["diff"]
    assert '-price = "0.538"' in price_change["diff"] and '+price = "0.568"' in price_change["diff"]
    with db.engine.connect() as c:
        bodies = "".join(c.execute(text("SELECT body FROM audit_records")).scalars())
    # secrets: neither the password nor the key's content ever reach the chain
    assert "hunter2" not in bodies and "SECRETMATERIAL" not in bodies
    assert "ROTATEDSECRET" not in bodies
    assert verify(db.engine).intact


def test_config_record_and_history_commands(db_env: dict[str, str], tmp_path: Path) -> None:
    tariffs = tmp_path / "t"
    tariffs.mkdir()
    (tariffs / "a.toml").write_text(TARIFF, encoding="utf-8")
    env = {**db_env, "DIANFEI_TARIFF_DIR": str(tariffs)}
    out = json.loads(dianfei(env, "config", "record", "--json").stdout)
    assert out["recorded"] and len(out["added"]) > 40
    assert json.loads(dianfei(env, "config", "record", "--json").stdout) == {"recorded": False}
    (tariffs / "a.toml").write_text(TARIFF + 'note = "夏季"\n', encoding="utf-8")
    # the worker records before it runs anything
    dianfei(env, "worker", "--once", "--max-runs", "0")
    history = json.loads(dianfei(env, "config", "history", "--json").stdout)
    assert len(history) == 2 and history[0]["changed"] == [str((tariffs / "a.toml").resolve())]
    assert '+note = "夏季"' in history[0]["diff"] and history[0]["actor"].startswith("cli:")
    assert "#2" in dianfei(env, "config", "history").stdout
    assert dianfei(env, "audit", "verify").returncode == 0
