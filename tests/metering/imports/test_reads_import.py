"""Register reads from files: every row accepted, rejected with its reason, or a duplicate."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text

from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from tests.metering.imports.conftest import run, write

HEADER = "meter_id,read_at,register,value,source\n"


def stored_reads(db: Database) -> list[tuple[str, str, int, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT meter_id, register, value, source FROM register_reads "
                                 "ORDER BY meter_id, register, value")).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def quarantine(db: Database) -> list[tuple[int, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT line, reason FROM import_quarantine ORDER BY id")).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def rejected_csv(path: Path) -> list[dict[str, str]]:
    with Path(str(path) + ".rejected.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_bad_lines_in_the_middle_are_rejected_and_the_rest_stored(seeded: Database,
                                                                  tmp_path: Path) -> None:
    # given a file with good rows around every kind of bad one
    path = write(tmp_path, "reads.csv", HEADER + "\n".join([
        "M001,2026-03-01T00:00:00+08:00,total,1234.56,ami",   # 2 ok
        "M001,2026-03-01T00:00:00,peak,1,ami",                # 3 no offset
        "M404,2026-03-01T00:00:00+08:00,total,1,ami",         # 4 unknown meter
        "M001,2026-03-01T00:00:00+08:00,total",               # 5 wrong field count
        "M001,2026-03-01T00:00:00+08:00,bogus,1,ami",         # 6 unknown register
        "M001,2026-03-01T00:00:00+08:00,valley,1,robot",      # 7 unknown source
        "M001,2026-03-01T00:00:00+08:00,flat,-5,ami",         # 8 negative
        "M001,2026-03-01T00:00:00+08:00,sharp,1.234,ami",     # 9 three places
        "M001,2026-03-01T00:00:00+08:00,kvarh,12a,manual",    # 10 not a number
        "M003,2026-01-31T23:00:00+08:00,total,1,ami",         # 11 before installation
        "M001,2026-03-01T00:00:00+08:00,valley,1000000,ami",  # 12 more than 6 digits
        "M002,2026-03-01 00:00:00Z,total,88.5,estimated",     # 13 ok (space, Z)
        "",                                                   # 14 blank: not a data row
        "M002,2026-03-01T08:00:00+0800,total,88.50,ami",      # 15 same read as 13: duplicate
        "M002,2026-03-01T08:00:00+08:00,total,88.6,ami",      # 16 conflicts within the file
    ]) + "\n")
    # when it is imported (offsets required: no zone for local times)
    res = run(seeded, "reads", path, timezone=None)
    # then
    assert (res.accepted, res.rejected, res.duplicates) == (2, 11, 1)
    assert stored_reads(seeded) == [("M001", "total", 123456, "ami"),
                                    ("M002", "total", 8850, "estimated")]
    expected = [(3, "timestamp_without_offset"), (4, "unknown_meter"), (5, "wrong_field_count"),
                (6, "unknown_register"), (7, "unknown_source"), (8, "negative_value"),
                (9, "too_many_decimals"), (10, "bad_number"), (11, "before_installation"),
                (12, "exceeds_register_digits"), (16, "conflicts_within_batch")]
    assert sorted(quarantine(seeded)) == expected
    rows = rejected_csv(path)
    assert [(int(r["line"]), r["reason"]) for r in rows] == sorted(expected)
    assert rows[0]["meter_id"] == "M001" and rows[0]["read_at"] == "2026-03-01T00:00:00"


def test_reimport_changes_nothing_and_counts_duplicates(seeded: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "reads.csv", HEADER + "M001,2026-03-01T00:00:00+08:00,total,10,ami\n"
                 "M002,2026-03-01T00:00:00+08:00,total,20,ami\nM404,2026-03-01T00:00:00+08:00,total,1,ami\n")
    first = run(seeded, "reads", path)
    before = stored_reads(seeded)
    again = run(seeded, "reads", path)
    assert (first.accepted, first.rejected, first.duplicates) == (2, 1, 0)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 1, 2)
    assert stored_reads(seeded) == before
    with seeded.engine.connect() as conn:
        batches = conn.execute(text("SELECT status, data_rows, accepted, rejected, duplicates, "
                                    "sha256 FROM import_batches WHERE kind = 'reads' "
                                    "ORDER BY started_at, batch_id")).fetchall()
    assert sorted(tuple(b[:5]) for b in batches) == [("finished", 3, 0, 1, 2),
                                                     ("finished", 3, 2, 1, 0)]
    assert batches[0][5] == batches[1][5] and len(batches[0][5]) == 64


def test_a_different_value_for_a_stored_read_is_rejected_never_overwritten(
        seeded: Database, tmp_path: Path) -> None:
    run(seeded, "reads", write(tmp_path, "a.csv", HEADER + "M001,2026-03-01T00:00:00+08:00,total,10,ami\n"))
    res = run(seeded, "reads", write(tmp_path, "b.csv",
                                     HEADER + "M001,2026-02-28T16:00:00Z,total,11,ami\n"))
    assert (res.accepted, res.rejected, res.duplicates) == (0, 1, 0)
    assert stored_reads(seeded) == [("M001", "total", 1000, "ami")]
    assert rejected_csv(tmp_path / "b.csv")[0]["reason"] == "conflicts_with_stored"


def test_gbk_and_bom_files(seeded: Database, tmp_path: Path) -> None:
    body = HEADER + "M001,2026-03-01T00:00:00+08:00,total,1,ami\n"
    gbk = write(tmp_path, "gbk.csv", "备注," + HEADER.replace("\n", "") + "\n"
                + "一月抄表," + body.splitlines()[1] + "\n", encoding="gbk")
    res = run(seeded, "reads", gbk, encoding="gbk")
    assert (res.accepted, res.rejected, res.duplicates) == (1, 0, 0)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + "M002,2026-03-01T00:00:00+08:00,total,2,ami\n").encode())
    res = run(seeded, "reads", bom)
    assert (res.accepted, res.rejected, res.duplicates) == (1, 0, 0)


def test_a_wrongly_encoded_file_names_line_and_byte_and_stores_nothing(
        seeded: Database, tmp_path: Path) -> None:
    text_ = HEADER + "M001,2026-03-01T00:00:00+08:00,total,1,ami\n" \
        + "M002,2026-03-01T00:00:00+08:00,total,2,人工\n"
    path = write(tmp_path, "gbk.csv", text_, encoding="gbk")
    with pytest.raises(ValidationError, match=r"line 3, byte 40 .*not valid utf-8.*--encoding gbk"):
        run(seeded, "reads", path)
    assert stored_reads(seeded) == []
    with seeded.engine.connect() as conn:
        finished = conn.execute(text("SELECT count(*) FROM import_batches WHERE kind = 'reads' "
                                     "AND status = 'finished'")).scalar()
    assert finished == 0


def test_missing_columns_are_a_clear_error(seeded: Database, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"missing column.*source"):
        run(seeded, "reads", write(tmp_path, "r.csv", "meter_id,read_at,register,value\n"))
