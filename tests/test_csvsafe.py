"""Exports and rejected-rows files never carry a live spreadsheet formula (core/csvsafe.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.csvsafe import safe_cell, safe_frame
from dianfei.db.engine import Database
from tests.factories import Person, load_people

HOSTILE = ['=HYPERLINK("http://evil.example","点此")', "+cmd|' /C calc'!A0", "@SUM(1+1)",
           "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def test_text_that_would_run_is_quoted_numbers_are_not() -> None:
    for bad in HOSTILE:
        assert safe_cell(bad) == "'" + bad
    for fine in ("-80.70", "+5", "1e-3", "张三", "", "a=b", None, 12):
        assert safe_cell(fine) == fine
    frame = pl.DataFrame({"name": [*HOSTILE, "-80.70"], "n": list(range(len(HOSTILE) + 1))})
    assert safe_frame(frame)["name"].to_list() == [safe_cell(v) for v in frame["name"].to_list()]


@given(st.text(max_size=12))
def test_the_column_rule_is_the_cell_rule(value: str) -> None:
    assert safe_frame(pl.DataFrame({"v": [value]}))["v"][0] == safe_cell(value)


def test_a_hostile_name_is_quoted_in_the_customers_export(db: Database, tmp_path: Path) -> None:
    load_people(db, [Person("C1", name=HOSTILE[0])])
    out = tmp_path / "customers.csv"
    # --reveal: the name in clear (masked, only its first character would be left to quote)
    res = CliRunner().invoke(app, ["export", "customers", "--reveal", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows[0]["name"] == "'" + HOSTILE[0]


def test_a_hostile_cell_is_quoted_in_the_rejected_rows_file(db: Database, tmp_path: Path) -> None:
    src = tmp_path / "reads.csv"
    src.write_text("meter_id,read_at,register,value,source\n"
                   "=HYPERLINK(\"http://evil\"),2026-01-01T00:00:00+08:00,total,1,ami\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["import", "reads", str(src), "--json"])
    assert res.exit_code in (0, 1, 3), res.output
    rejected = list(csv.DictReader((tmp_path / "reads.csv.rejected.csv").open(encoding="utf-8")))
    assert rejected[0]["meter_id"].startswith("'=HYPERLINK")
