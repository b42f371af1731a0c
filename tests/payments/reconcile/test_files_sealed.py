"""Received statement, bank result and agent files (issue 17 item 4): a bank's result file names
account holders and bank account numbers, so ``statement_files`` keeps the bytes sealed
(``body_enc``, bound to kind, channel and digest) and nothing of them in clear; files stored in
clear before migration 0031 are sealed by ``dianfei keys reencrypt``."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.db.pii import cipher_for, key_usage, open_body, reencrypt
from dianfei.payments.reconcile_service import receive_file
from tests.factories import Person, load_people
from tests.payments.statements.builders import Line, alipay_csv

ACCOUNT = "6222021234567890123"
HOLDER = "王小明"
BODY = f"H|ICBC|20240305\nD|000001|C1|{ACCOUNT}|{HOLDER}|3000|0000\nT|1|3000\n".encode("gbk")
CLOCK = FixedClock(datetime(2024, 3, 6, 2, 0, tzinfo=UTC))


def _rows(db: Database) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT id, kind, channel, sha256, size, body, body_enc FROM statement_files "
            "ORDER BY id")).mappings()]


def test_a_received_file_is_stored_sealed_and_opens_to_its_bytes(db: Database) -> None:
    cipher = cipher_for(db)
    with db.session() as s:
        receive_file(s, kind="bank_result", channel="bank", name="icbc.txt", body=BODY,
                     clock=CLOCK, cipher=cipher, layout="icbc")
    [row] = _rows(db)
    assert bytes(row["body"]) == b""  # type: ignore[arg-type]
    token = str(row["body_enc"])
    assert token.startswith("v2:k0:")
    stored = json.dumps({k: str(v) for k, v in row.items()}, ensure_ascii=False)
    assert ACCOUNT not in stored and HOLDER not in stored
    assert (row["sha256"], row["size"]) == (hashlib.sha256(BODY).hexdigest(), len(BODY))
    assert open_body(cipher, token, "bank_result", "bank", str(row["sha256"])) == BODY
    with pytest.raises(Exception, match="moved from another row"):  # bound to its own file
        open_body(cipher, token, "agent", "bank", str(row["sha256"]))


def test_a_reconciled_statement_is_stored_sealed(db: Database, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIANFEI_NOW", "2024-03-06T10:00:00+08:00")
    load_people(db, [Person("C1")])
    f = tmp_path / "ali.csv"
    f.write_bytes(alipay_csv([Line("A1", 8000, datetime(2024, 3, 5, 10, 0), "DFNOSUCH")]))
    res = CliRunner().invoke(app, ["reconcile", "--channel", "alipay", "--date",
                                   date(2024, 3, 5).isoformat(), "--statement", str(f), "--json"])
    assert res.exit_code == 0, res.stderr
    [row] = _rows(db)
    assert bytes(row["body"]) == b""  # type: ignore[arg-type]
    assert open_body(cipher_for(db), str(row["body_enc"]), "statement", "alipay",
                     str(row["sha256"])) == f.read_bytes()


def test_files_stored_in_clear_before_are_sealed_by_reencrypt(db: Database) -> None:
    cipher = cipher_for(db)
    digest = hashlib.sha256(BODY).hexdigest()
    with db.engine.begin() as conn:  # as a version before migration 0031 stored it
        conn.execute(text(
            "INSERT INTO statement_files (kind, channel, layout, name, sha256, size, received_at, "
            "body, body_enc, status) VALUES ('bank_result', 'bank', 'icbc', 'old.txt', :s, :n, "
            ":t, :b, NULL, 'processed')"),
            {"s": digest, "n": len(BODY), "t": CLOCK.now().replace(tzinfo=None), "b": BODY})
    assert reencrypt(db.engine, cipher) == 1
    [row] = _rows(db)
    assert bytes(row["body"]) == b""  # type: ignore[arg-type]
    assert open_body(cipher, str(row["body_enc"]), "bank_result", "bank", digest) == BODY
    assert key_usage(db.engine)["k0"]["statement_files.body_enc"] == 1
    assert reencrypt(db.engine, cipher) == 0  # done once, nothing left
