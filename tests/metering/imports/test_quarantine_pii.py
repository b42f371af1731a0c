"""Personal data of rejected import rows (issue 17 item 4): a customers row that is rejected —
a changed phone on re-import, a bad value — keeps no name, address or phone in clear, neither in
``import_quarantine`` nor in ``FILE.rejected.csv``; the sealed row opens for the one who fixes it
(``dianfei quarantine BATCH --reveal``, audited); rows stored in clear before migration 0031 are
sealed by ``dianfei keys reencrypt`` and re-sealed by ``keys rotate``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.crypto import (
    PiiCipher,
    mask_address,
    mask_digit_runs,
    mask_name,
    mask_phone,
)
from dianfei.db.engine import Database
from dianfei.db.pii import QUARANTINE_RAW, cipher_for, key_usage
from tests.conftest import FACTORY_KEY
from tests.metering.imports.conftest import CUSTOMERS, run, write

HEADER = CUSTOMERS.splitlines()[0]
#: C001 again with a new phone (a conflict with the stored customer), a new customer whose phone
#: is not a phone number, and a new customer with a name longer than allowed
CHANGED = "\n".join([
    HEADER,
    'C001,王小明,residential,城关镇,"城关镇人民路1号,3单元",13912345678,'
    "cn-zj-residential,0,0,postpaid,2020-01-01",
    "C009,赵六,residential,城关镇,城关镇解放路9号,1370000000x,cn-zj-residential,0,0,postpaid,"
    "2022-01-01",
    "C010," + "钱" * 201 + ",residential,城关镇,城关镇解放路10号,13600000010,cn-zj-residential,"
    "0,0,postpaid,2022-01-01",
]) + "\n"
#: what must appear in clear nowhere outside the sealed copy
SECRETS = ("13912345678", "1370000000x", "13600000010", "王小明", "赵六", "人民路1号",
           "解放路9号", "钱" * 10)


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def _quarantine(db: Database) -> list[dict[str, object]]:
    with db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT batch_id, line, reason, detail, raw, raw_enc FROM import_quarantine "
            "ORDER BY line")).mappings()]


def test_the_masks_keep_enough_to_recognise_and_nothing_to_use() -> None:
    assert mask_phone("13912345678") == "139****5678"
    assert mask_name("王小明") == "王**" and mask_name("赵") == "赵*"
    assert mask_address("城关镇人民路1号3单元") == "城关镇人民****"
    assert mask_address("人民路1号") == "人民****"
    assert mask_digit_runs("phone '13912345678' differs; opened 2020-01-01, meter 123456") == (
        "phone '139****5678' differs; opened 2020-01-01, meter 123456")


def test_a_changed_phone_on_reimport_leaks_nowhere_and_opens_for_the_fixer(
        seeded: Database, tmp_path: Path) -> None:
    res = run(seeded, "customers", write(tmp_path, "changed.csv", CHANGED))
    assert (res.accepted, res.rejected, res.duplicates) == (0, 3, 0)

    # FILE.rejected.csv: masked, with line, reason and detail to fix the row by
    rejected = (tmp_path / "changed.csv.rejected.csv").read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in rejected, secret
    rows_out = list(csv.DictReader(io.StringIO(rejected)))
    by_line = {r["line"]: r for r in rows_out}
    assert list(rows_out[0]) == [*HEADER.split(","), "line", "reason", "detail"]
    assert {k: by_line["2"][k] for k in ("customer_id", "name", "address", "phone", "reason",
                                         "detail")} == {
        "customer_id": "C001", "name": "王**", "address": "城关镇人民路****",
        "phone": "139****5678", "reason": "conflicts_with_stored",
        "detail": "stored customer differs in phone"}
    assert (by_line["3"]["reason"], by_line["3"]["detail"]) == (
        "bad_phone", "phone is not a phone number: '137****000x'")
    assert by_line["4"]["reason"] == "value_too_long"
    assert by_line["4"]["detail"].startswith("name is longer than 200 characters: '钱*")

    # the quarantine table: masked in clear, the row sealed to its batch and line
    rows = _quarantine(seeded)
    assert [(r["line"], r["reason"]) for r in rows] == [
        (2, "conflicts_with_stored"), (3, "bad_phone"), (4, "value_too_long")]
    for r in rows:
        for secret in SECRETS:
            assert secret not in str(r["detail"]) + str(r["raw"]), (secret, r)
        assert str(r["raw_enc"]).startswith("v2:k0:")
    assert str(rows[0]["raw"]).startswith("C001,王**,residential,城关镇,城关镇人民路****,139****5678,")
    cipher = cipher_for(seeded)
    first = CHANGED.splitlines()[1]
    assert cipher.decrypt(str(rows[0]["raw_enc"]),
                          QUARANTINE_RAW.context(res.batch_id, 2)) == first
    with pytest.raises(Exception, match="moved from another row"):  # bound to its own line
        cipher.decrypt(str(rows[0]["raw_enc"]), QUARANTINE_RAW.context(res.batch_id, 3))

    # the CLI that shows the quarantine: masked by default, in clear with --reveal (audited)
    code, out, err = _cli("quarantine", res.batch_id)
    assert code == 0, err
    assert "139****5678" in out and "13912345678" not in out
    code, out, err = _cli("quarantine", res.batch_id, "--reveal", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["kind"] == "customers" and shown["rejected"] == 3
    assert [r["raw"] for r in shown["rows"]] == CHANGED.splitlines()[1:]
    with seeded.engine.connect() as conn:
        audited = conn.execute(text(
            "SELECT subject FROM audit_records WHERE action = 'pii.revealed'")).scalars().all()
    assert audited == [res.batch_id]
    code, _, err = _cli("quarantine", "no-such-batch")
    assert code == 2 and "no import batch 'no-such-batch'" in err

    # the stored customer is untouched, and a re-import of the masked file stores nothing
    again = run(seeded, "customers", tmp_path / "changed.csv.rejected.csv")
    assert (again.accepted, again.rejected) == (0, 3)
    reasons = {(r["line"], r["reason"]) for r in _quarantine(seeded)
               if r["batch_id"] == again.batch_id}
    assert reasons == {(2, "masked_value"), (3, "masked_value"), (4, "masked_value")}
    with seeded.engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM customers ORDER BY customer_id")).scalars().all()
    assert names == ["王小明", "李四", "东风农场"]


def test_other_imports_keep_their_rows_in_clear(seeded: Database, tmp_path: Path) -> None:
    """Meter reads carry no personal data: their quarantine stays readable without a key."""
    reads = write(tmp_path, "reads.csv", "meter_id,read_at,register,value,source\n"
                  "M404,2026-03-01T00:00:00+08:00,total,10,ami\n")
    res = run(seeded, "reads", reads)
    assert res.rejected == 1
    [row] = _quarantine(seeded)
    assert row["raw_enc"] is None and str(row["raw"]).startswith("M404,")


def test_rows_stored_in_clear_before_are_sealed_by_reencrypt_and_rotate(
        seeded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = run(seeded, "customers", write(tmp_path, "changed.csv", CHANGED))
    legacy = CHANGED.splitlines()[1]
    with seeded.engine.begin() as conn:  # as a version before migration 0031 stored it
        conn.execute(text(
            "UPDATE import_quarantine SET raw = :r, raw_enc = NULL, "
            "detail = 'phone is not a phone number: ''13912345678''' WHERE line = 2"),
            {"r": legacy})
    # the keys as files (rotation writes a new one): the factory key as the legacy k0 file
    for var in ("DIANFEI_SECRET_KEY", "DIANFEI_SECRET_KEYS"):
        monkeypatch.delenv(var, raising=False)
    (seeded.settings.data_dir / "secret.key").write_text(FACTORY_KEY)
    (seeded.settings.data_dir / "secret.key").chmod(0o600)

    code, out, err = _cli("keys", "reencrypt", "--json")
    assert code == 0, err
    assert json.loads(out) == {"reencrypted": 1}
    [row] = [r for r in _quarantine(seeded) if r["line"] == 2]
    assert row["raw"] == "" and row["detail"] == "phone is not a phone number: '139****5678'"
    ring = PiiCipher.from_environment(seeded.settings.data_dir, may_create=False)
    assert ring.decrypt(str(row["raw_enc"]), QUARANTINE_RAW.context(res.batch_id, 2)) == legacy

    code, out, err = _cli("keys", "rotate", "--json")
    assert code == 0, err
    assert set(key_usage(seeded.engine)) == {"k1"}
    assert key_usage(seeded.engine)["k1"]["import_quarantine.raw_enc"] == 3
    code, out, err = _cli("quarantine", res.batch_id, "--reveal", "--json")
    assert code == 0, err
    assert [r["raw"] for r in json.loads(out)["rows"]] == CHANGED.splitlines()[1:]
