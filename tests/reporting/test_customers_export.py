"""`dianfei export customers` (issue 17, personal data): masked by default, in clear only with
--reveal, which goes on the audit chain first; the columns stay those of docs/interfaces.md."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import text
from tests.factories import Person, load_people
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.db.engine import Database
from dianfei.reporting.exports import CUSTOMER_COLUMNS

# what tests/factories.py stores for every person
CLEAR_PHONE = "13800138000"
CLEAR_ADDRESS = "测试路1号"


def _revealed(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text(
            "SELECT subject, actor FROM audit_records WHERE action = 'pii.revealed' ORDER BY seq"))]


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_masked_by_default_in_the_documented_columns(db: Database, tmp_path: Path) -> None:
    load_people(db, [Person("C1", name="王小明"), Person("C2", name="李四")])
    out = tmp_path / "customers.csv"
    res = CliRunner().invoke(app, ["export", "customers", "--out", str(out)])
    assert res.exit_code == 0, res.output
    columns, rows = _rows(out)
    assert tuple(columns) == CUSTOMER_COLUMNS
    assert [(r["customer_id"], r["name"], r["address"], r["phone"]) for r in rows] == [
        ("C1", "王**", "测试****", "138****8000"), ("C2", "李*", "测试****", "138****8000")]
    raw = out.read_text(encoding="utf-8")
    for clear in ("王小明", "李四", CLEAR_ADDRESS, CLEAR_PHONE):
        assert clear not in raw
    assert _revealed(db) == []  # nothing was opened, nothing recorded


def test_reveal_writes_clear_values_and_is_audited(db: Database, tmp_path: Path) -> None:
    load_people(db, [Person("C1", name="王小明")])
    out = tmp_path / "customers.csv"
    res = CliRunner().invoke(app, ["export", "customers", "--reveal", "--out", str(out)])
    assert res.exit_code == 0, res.output
    columns, rows = _rows(out)
    assert tuple(columns) == CUSTOMER_COLUMNS
    assert (rows[0]["name"], rows[0]["address"], rows[0]["phone"]) == ("王小明", CLEAR_ADDRESS,
                                                                       CLEAR_PHONE)
    revealed = _revealed(db)
    assert [s for s, _ in revealed] == ["customers"]
    assert revealed[0][1].startswith("cli:")  # who ran it
    with db.engine.connect() as conn:
        detail = conn.execute(text("SELECT body FROM audit_records "
                                   "WHERE action = 'pii.revealed'")).scalar_one()
    assert '"rows":1' in detail.replace(" ", "")
    assert CLEAR_PHONE not in detail and "王小明" not in detail


def test_reveal_on_an_export_without_personal_data_is_refused(db: Database, tmp_path: Path) -> None:
    load_people(db, [Person("C1")])
    out = tmp_path / "ledger.csv"
    res = CliRunner().invoke(app, ["export", "ledger", "--reveal", "--out", str(out)])
    assert res.exit_code != 0
    assert "--reveal applies to the customers export" in res.output
    assert not out.exists()
    assert _revealed(db) == []


def test_a_hostile_masked_name_is_still_quoted(db: Database, tmp_path: Path) -> None:
    """Masking keeps the first character: a name starting with = stays a quoted cell."""
    load_people(db, [Person("C1", name='=HYPERLINK("http://evil")')])
    out = tmp_path / "customers.csv"
    res = CliRunner().invoke(app, ["export", "customers", "--out", str(out)])
    assert res.exit_code == 0, res.output
    _, rows = _rows(out)
    assert rows[0]["name"].startswith("'=") and "HYPERLINK" not in rows[0]["name"]
