"""``dianfei import`` killed (SIGKILL) in the middle of a file: the rows of a file, its quarantine
and the batch's finish are one transaction, so the crash leaves only the batch record, still
``running`` (a batch that died stays visible as such), and nothing of its rows. Importing the
same file again ends with exactly the rows, rejections and ``FILE.rejected.csv`` of an
uninterrupted import — nothing twice, nothing lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database
from tests.factories import Person, load_people
from tests.jobs.faults import command, copy_of, intact, killed, rows

NOW = "2026-04-01T09:00:00+08:00"
METERS = 20
#: hourly reads of 20 meters for 55 days: ~1.3 MB of CSV, two chunks of the 1 MB the command
#: reads at a time, so the crash after the first chunk is in the middle of the file
HOURS = 55 * 24

STATE = {
    "reads": "SELECT meter_id, read_at, register, value, source FROM register_reads "
             "ORDER BY meter_id, read_at, register",
    "customers": "SELECT customer_id, name, customer_class, region_id, address, low_income, "
                 "protected, payment_mode, opened_on FROM customers ORDER BY customer_id",
    "accounts": "SELECT account_id, customer_id, opened_on FROM accounts ORDER BY account_id",
    "service_points": "SELECT service_point_id, account_id, address FROM service_points "
                      "ORDER BY service_point_id",
    "tariffs": "SELECT account_id, tariff_id, effective_from FROM tariff_assignments "
               "ORDER BY account_id",
    "quarantine": "SELECT line, reason, detail, raw FROM import_quarantine ORDER BY line",
    "batches": "SELECT kind, origin, status, data_rows, accepted, rejected, duplicates, sha256 "
               "FROM import_batches WHERE status <> 'running' ORDER BY kind, started_at",
}


def _reads_file(path: Path) -> Path:
    start = datetime(2026, 2, 1, tzinfo=UTC)
    lines = ["meter_id,read_at,register,value,source"]
    for m in range(1, METERS + 1):
        for h in range(HOURS):
            at = (start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"MC{m:02d},{at},total,{1000 + m * 10 + h * 0.25:.2f},ami")
    lines.append("MC01,2026-03-05T00:00:00Z,total,not-a-number,ami")  # rejected, with its reason
    lines.append("M404,2026-03-05T00:00:00Z,total,12.00,ami")  # an unknown meter
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _customers_file(path: Path) -> Path:
    lines = ["customer_id,name,customer_class,region,address,phone,tariff_id,low_income,"
             "protected,payment_mode,opened_on"]
    lines += [f"N{i:03d},新户{i},residential,城关镇,城关镇人民路{i}号,1380013{i:04d},"
              f"cn-zj-residential,0,0,postpaid,2021-01-01" for i in range(1, 41)]
    lines.append("N999,坏户,residential,城关镇,某路,13800000000,no-such-tariff,0,0,postpaid,2021-01-01")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _state(db: Database) -> dict[str, list[tuple[object, ...]]]:
    return rows(db, STATE)


@pytest.mark.parametrize("kind", ["reads", "customers"])
def test_an_import_killed_mid_file_then_run_again_equals_one_import(
        kind: str, db: Database, db_env: dict[str, str], tmp_path: Path) -> None:
    load_people(db, [Person(f"C{m:02d}") for m in range(1, METERS + 1)])  # meters MC01…
    before = _state(db)
    with copy_of(db, db_env, tmp_path) as clean_env:
        files = tmp_path / "in"
        files.mkdir()
        path = (_reads_file if kind == "reads" else _customers_file)(files / f"{kind}.csv")
        if kind == "reads":
            assert path.stat().st_size > 1 << 20  # more than one chunk
        args = ("import", kind, str(path), "--chunk-mb", "1", "--max-rejected", "2", "--json")

        killed(command(db_env, NOW, *args, DIANFEI_FAULT_KILL_AT="import.chunk_fed"))
        # nothing of the file is visible: the batch says it is running, nothing else changed
        assert _state(db) == before
        assert rows(db, {"b": "SELECT kind, status, accepted FROM import_batches"})["b"] == [
            (kind, "running", 0)]
        assert not (files / f"{kind}.csv.rejected.csv").exists()

        again = command(db_env, NOW, *args)
        assert again.returncode == 0, again.stderr
        resumed = _state(db)
        rejected = (files / f"{kind}.csv.rejected.csv").read_text(encoding="utf-8")

        clean = command(clean_env, NOW, *args)
        assert clean.returncode == 0, clean.stderr
        assert json.loads(clean.stdout)["accepted"] == json.loads(again.stdout)["accepted"]
        other = open_database(load_settings(clean_env))
        try:
            assert _state(other) == resumed
        finally:
            other.engine.dispose()
        assert (files / f"{kind}.csv.rejected.csv").read_text(encoding="utf-8") == rejected
    expected = METERS * HOURS if kind == "reads" else 40
    [batch] = resumed["batches"]
    assert batch[2:7] == ("finished", expected + 1 + (kind == "reads"), expected,
                          1 + (kind == "reads"), 0)
    assert len(resumed["quarantine"]) == 1 + (kind == "reads")
    # the interrupted batch stays on record as running, with nothing of it stored
    assert rows(db, {"b": "SELECT count(*) FROM import_batches WHERE status = 'running' "
                          "AND accepted = 0"})["b"] == [(1,)]
    intact(db_env)
