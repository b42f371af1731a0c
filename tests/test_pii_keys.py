"""Personal data keys (core/crypto.py, db/pii.py): key ids, a keyring, contexts that bind a
value to its row, no silent key creation over encrypted data, rotation and re-encryption."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.crypto import PiiCipher, load_keyring, pii_context
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.db.metadata import Base
from dianfei.db.pii import CUSTOMER_PHONE, PII_COLUMNS, encrypted_rows_exist, key_usage
from tests.factories import Person, load_people

K = b"k" * 32


def _legacy_v1(key: bytes, plain: str) -> str:
    """A token as dianfei wrote them before key ids (v1: no key id, no context)."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return "v1:" + base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, plain.encode(), None)).decode()


def test_a_value_opens_only_on_its_own_row_and_column() -> None:
    c = PiiCipher(K)
    token = c.encrypt("13800138000", pii_context("customers", "phone_enc", "C1"))
    assert token is not None and token.startswith("v2:k0:")
    assert c.decrypt(token, pii_context("customers", "phone_enc", "C1")) == "13800138000"
    for elsewhere in (pii_context("customers", "phone_enc", "C2"),
                      pii_context("customers", "id_number_enc", "C1"), ""):
        with pytest.raises(ValidationError, match="moved from another row"):
            c.decrypt(token, elsewhere)
    assert c.decrypt(_legacy_v1(K, "13900000000"), "anything") == "13900000000"


def test_a_keyring_opens_every_key_and_seals_with_the_active_one() -> None:
    ring = PiiCipher({"k1": b"a" * 32, "k2": b"b" * 32}, active="k2")
    old = PiiCipher({"k1": b"a" * 32}).encrypt("x", "ctx")
    assert old is not None and ring.decrypt(old, "ctx") == "x"
    assert PiiCipher.key_id_of(ring.encrypt("y") or "") == "k2"
    with pytest.raises(ValidationError, match="key k9, which this keyring lacks"):
        ring.decrypt("v2:k9:AAAA")
    env = {"DIANFEI_SECRET_KEYS": f"k1:{base64.urlsafe_b64encode(b'a' * 32).decode()},"
                                  f"k2:{base64.urlsafe_b64encode(b'b' * 32).decode()}"}
    keys, active = load_keyring(Path("/nonexistent"), env)
    assert (sorted(keys), active) == (["k1", "k2"], "k2")
    with pytest.raises(ValidationError, match="32 bytes"):
        load_keyring(Path("/nonexistent"),
                     {"DIANFEI_SECRET_KEY": base64.urlsafe_b64encode(b"short").decode()})


def test_no_key_is_created_silently_over_encrypted_data(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DIANFEI_SECRET_KEY", "DIANFEI_SECRET_KEYS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValidationError, match="no key is configured here"):
        PiiCipher.from_environment(tmp_path / "b", may_create=lambda: False)
    assert not (tmp_path / "b" / "keys").exists()
    first = PiiCipher.from_environment(tmp_path / "a", may_create=True)
    assert first.active == "k1" and (tmp_path / "a" / "keys" / "k1.key").stat().st_mode & 0o777 == 0o600
    # the legacy single file is still read, as key k0
    (tmp_path / "c").mkdir()
    legacy = tmp_path / "c" / "secret.key"
    legacy.write_bytes(base64.urlsafe_b64encode(K))
    # a key file others may read is refused, naming the fix
    legacy.chmod(0o644)
    with pytest.raises(ValidationError, match=r"readable by its owner only .*chmod 600"):
        PiiCipher.from_environment(tmp_path / "c", may_create=False)
    legacy.chmod(0o600)
    assert PiiCipher.from_environment(tmp_path / "c", may_create=False).key_ids == ("k0",)


def test_every_encrypted_column_is_registered() -> None:
    columns = {(t.name, c.name) for t in Base.metadata.tables.values() for c in t.columns
               if c.name.endswith("_enc")}
    assert columns == {(c.table, c.column) for c in PII_COLUMNS}


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_rotation_reencrypts_everything_and_a_second_host_without_keys_refuses(
        db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("DIANFEI_SECRET_KEY", "DIANFEI_SECRET_KEYS"):
        monkeypatch.delenv(var, raising=False)
    load_people(db, [Person("C1"), Person("C2")])  # sealed with K as key k0
    (db.settings.data_dir / "secret.key").write_bytes(base64.urlsafe_b64encode(K))
    (db.settings.data_dir / "secret.key").chmod(0o600)
    with db.engine.begin() as conn:  # one value as an older version wrote it
        conn.execute(text("UPDATE customers SET phone_enc = :t WHERE customer_id = 'C2'"),
                     {"t": _legacy_v1(K, "13700000000")})
    code, out, err = _cli("keys", "rotate", "--batch", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["key_id"] == "k1" and json.loads(out)["reencrypted"] >= 2
    assert set(key_usage(db.engine)) == {"k1"}
    ring = PiiCipher.from_environment(db.settings.data_dir, may_create=False)
    with db.engine.connect() as conn:
        phone = conn.execute(text("SELECT phone_enc FROM customers WHERE customer_id = 'C2'")).scalar_one()
    assert ring.decrypt(phone, CUSTOMER_PHONE.context("C2")) == "13700000000"
    code, out, _ = _cli("keys", "list", "--json")
    assert [(r["key_id"], r["active"]) for r in json.loads(out)] == [("k0", False), ("k1", True)]
    # a second host: same database, its own empty data directory
    assert encrypted_rows_exist(db.engine)
    monkeypatch.setenv("DIANFEI_DATA_DIR", str(tmp_path / "other-host"))
    code, out, err = _cli("export", "customers", "--out", str(tmp_path / "c.csv"))
    assert code != 0 and "no key is configured here" in err
    assert not (tmp_path / "other-host" / "keys").exists()
