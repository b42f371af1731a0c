"""customers.csv and meters.csv: accounts, service points, tariff assignments, regions."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from dianfei.core.crypto import PiiCipher, pii_context
from dianfei.db.engine import Database
from tests.metering.imports.conftest import CUSTOMERS, METERS, run, write


def rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql)).fetchall()]


def test_customers_create_accounts_service_points_tariffs_and_regions(seeded: Database) -> None:
    assert rows(seeded, "SELECT region_id, name FROM regions ORDER BY region_id") == [
        ("城关镇", "城关镇"), ("新塘乡", "新塘乡")]
    assert rows(seeded, "SELECT account_id, customer_id FROM accounts ORDER BY 1") == [
        ("C001", "C001"), ("C002", "C002"), ("C003", "C003")]
    assert rows(seeded, "SELECT service_point_id, account_id, address FROM service_points "
                        "WHERE account_id = 'C001'") == [("C001", "C001", "城关镇人民路1号,3单元")]
    assert [(a, t, str(e)[:10]) for a, t, e in rows(
        seeded, "SELECT account_id, tariff_id, effective_from FROM tariff_assignments ORDER BY 1")] == [
        ("C001", "cn-zj-residential", "2020-01-01"), ("C002", "cn-zj-residential", "2021-06-15"),
        ("C003", "cn-agricultural-irrigation", "2019-03-01")]
    (enc, low, prot, mode), = rows(seeded, "SELECT phone_enc, low_income, protected, payment_mode "
                                           "FROM customers WHERE customer_id = 'C002'")
    assert enc is None and bool(low) and not bool(prot) and mode == "prepaid"
    (phone,), = rows(seeded, "SELECT phone_enc FROM customers WHERE customer_id = 'C001'")
    assert isinstance(phone, str) and "13800138000" not in phone
    cipher = PiiCipher.from_environment(Path(seeded.settings.data_dir))
    assert cipher.decrypt(phone, pii_context("customers", "phone_enc", "C001")) == "13800138000"
    assert rows(seeded, "SELECT meter_id, service_point_id, account_id, multiplier, digits "
                        "FROM meters ORDER BY 1") == [
        ("M001", "C001", "C001", 1, 6), ("M002", "C002", "C002", 1, 6), ("M003", "C003", "C003", 40, 6)]


def test_master_data_reimport_is_idempotent_and_conflicts_are_rejected(seeded: Database,
                                                                       tmp_path: Path) -> None:
    res = run(seeded, "customers", tmp_path / "customers.csv")
    assert (res.accepted, res.rejected, res.duplicates) == (0, 0, 3)
    res = run(seeded, "meters", tmp_path / "meters.csv")
    assert (res.accepted, res.rejected, res.duplicates) == (0, 0, 3)
    changed = CUSTOMERS.replace("王小明", "王大明").replace("C003,东风农场", "C009,新户") \
        .replace("cn-agricultural-irrigation", "no-such-tariff")
    res = run(seeded, "customers", write(tmp_path, "c2.csv", changed))
    assert (res.accepted, res.rejected, res.duplicates) == (0, 2, 1)
    reasons = (tmp_path / "c2.csv.rejected.csv").read_text(encoding="utf-8")
    assert "conflicts_with_stored" in reasons and "name" in reasons and "unknown_tariff" in reasons
    assert rows(seeded, "SELECT name FROM customers WHERE customer_id = 'C001'") == [("王小明",)]
    meters = METERS + "M004,C404,1,6,2026-01-01\nM005,C001,0,6,2026-01-01\nM006,C001,1,6,2026-13-01\n"
    res = run(seeded, "meters", write(tmp_path, "m2.csv", meters))
    assert (res.accepted, res.rejected, res.duplicates) == (0, 3, 3)
    assert [line.split(",")[-2] for line in
            (tmp_path / "m2.csv.rejected.csv").read_text().splitlines()[1:]] == [
        "unknown_customer", "value_out_of_range", "bad_date"]
    assert rows(seeded, "SELECT count(*) FROM meters") == [(3,)]
