"""A refused input stores nothing: `dianfei reconcile`, `bank import` and `agent import` with an
unknown channel, an unreadable file or a statement of another day exit 2 with the reason and
leave no `statement_files` row (nor anything else); a good statement is stored once, processed."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ
from dianfei.db.engine import Database
from dianfei.payments.layouts import load_layout
from dianfei.payments.statements.bankfile import render
from tests.factories import Person, load_people, scalar
from tests.payments.statements.builders import Line, alipay_csv

DAY = date(2024, 3, 5)
AT = datetime(2024, 3, 5, 10, 0)


@pytest.fixture
def people(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("DIANFEI_NOW", "2024-03-06T10:00:00+08:00")
    load_people(db, [Person("C1"), Person("C2")])
    return db


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def _stored(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        from sqlalchemy import text

        return [(str(r[0]), str(r[1])) for r in conn.execute(
            text("SELECT channel, status FROM statement_files ORDER BY id")).all()]


def _nothing_written(db: Database) -> None:
    assert _stored(db) == []
    for table in ("payments", "reconciliation_reports", "reconciliation_discrepancies"):
        assert scalar(db.engine, f"SELECT count(*) FROM {table}") == 0, table


def test_unknown_channel_is_refused_and_stores_nothing(people: Database, tmp_path: Path) -> None:
    f = tmp_path / "paypal.csv"
    f.write_bytes(alipay_csv([Line("A1", 8000, AT, "DFNOSUCH")]))
    code, out, err = _cli("reconcile", "--channel", "paypal", "--date", "2024-03-05",
                          "--statement", str(f), "--json")
    assert code == 2 and out == ""
    assert "channel must be one of" in err and "'paypal'" in err
    _nothing_written(people)


@pytest.mark.parametrize("body", [b"\x00\x01garbage\xff\xfe not a statement\n" * 3, b""])
def test_an_unreadable_statement_is_refused_and_stores_nothing(people: Database, tmp_path: Path,
                                                                body: bytes) -> None:
    f = tmp_path / "ali.csv"
    f.write_bytes(body)
    code, out, err = _cli("reconcile", "--channel", "alipay", "--date", "2024-03-05",
                          "--statement", str(f), "--json")
    assert code == 2 and out == "" and err.startswith("error: ") and str(f) in err
    _nothing_written(people)


def test_a_statement_of_another_day_is_refused_and_stores_nothing(people: Database,
                                                                   tmp_path: Path) -> None:
    f = tmp_path / "ali.csv"
    f.write_bytes(alipay_csv([Line("A1", 8000, AT, "DFNOSUCH")]))
    code, out, err = _cli("reconcile", "--channel", "alipay", "--date", "2024-03-04",
                          "--statement", str(f), "--json")
    assert code == 2 and out == "" and "not for 2024-03-04" in err
    _nothing_written(people)


def test_a_good_statement_is_stored_once_and_processed(people: Database, tmp_path: Path) -> None:
    f = tmp_path / "ali.csv"
    f.write_bytes(alipay_csv([Line("A1", 8000, AT, "DFNOSUCH")]))
    for _ in range(2):
        code, out, err = _cli("reconcile", "--channel", "alipay", "--date", "2024-03-05",
                              "--statement", str(f), "--json")
        assert code == 0, err
        assert [x["transaction_id"] for x in json.loads(out)["missing_in_ledger"]] == ["A1"]
    assert _stored(people) == [("alipay", "processed")]
    assert scalar(people.engine, "SELECT count(*) FROM reconciliation_reports") == 1


def test_a_refused_agent_file_stores_nothing(people: Database, tmp_path: Path) -> None:
    layout = load_layout("post_agent")
    at = datetime(2024, 3, 5, 14, 30, tzinfo=BUSINESS_TZ)
    body = render(layout, "agent", header={"agent_code": "YZ0001", "date": DAY},
                  details=[{"serial": "000001", "account_id": "C1", "amount": 3000, "paid_at": at}],
                  trailer={"count": 1, "total": 9999})  # the trailer disagrees with the lines
    f = tmp_path / "yz.txt"
    f.write_bytes(body)
    code, out, err = _cli("agent", "import", str(f), "--json")
    assert code == 2 and out == "" and err.startswith("error: ")
    _nothing_written(people)
