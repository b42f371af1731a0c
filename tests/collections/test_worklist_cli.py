"""`dianfei worklist …`: the contract of --json (collector, account, rank, overdue_amount,
reason; rank 1, 2, … within each collector; an account on at most one list) and the
subcommands, all over the same service functions as the REST API."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.db.engine import Database
from tests.collections.worklist_fixtures import DAY, PEOPLE, at, load


def _cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["worklist", *args])
    return res.exit_code, res.stdout, res.stderr


def test_worklist_json_contract_and_subcommands(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    load(db)
    monkeypatch.setenv("DIANFEI_NOW", at(DAY, 18).isoformat())
    code, out, err = _cli("--date", DAY.isoformat(), "--json")  # builds the day: it had none
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["account"] for r in rows) == sorted(PEOPLE)
    assert len({r["account"] for r in rows}) == len(rows)
    for r in rows:
        assert {"collector", "account", "account_id", "rank", "overdue_amount", "reason"} <= set(r)
    k1 = [r["rank"] for r in rows if r["collector"] == "K1"]
    assert k1 == [1, 2]
    code, out, _ = _cli("--date", DAY.isoformat(), "--collector", "K2", "--json")
    assert {r["collector"] for r in json.loads(out)} == {"K2"}
    code, out, err = _cli("reassign", "--date", DAY.isoformat(), "--account", "C01", "--to", "K2",
                          "--reason", "K1 on leave", "--json")
    assert code == 0, err
    assert json.loads(out)["moved"] == 1
    code, _, err = _cli("reassign", "--date", DAY.isoformat(), "--account", "C01", "--to", "K9",
                        "--reason", "x")
    assert code == 2 and "collector 'K9' does not exist" in err
    code, out, err = _cli("roster", "K4", "--capacity", "1", "--json")
    assert code == 0 and json.loads(out)[0]["capacity"] == 1, err
    code, out, err = _cli("balance", "--date", DAY.isoformat(), "--json")
    assert code == 0 and json.loads(out)["moved"] == 1, err
    code, out, err = _cli("supervisor", "--date", DAY.isoformat(), "--json")
    assert code == 0, err
    assert sum(c["list_size"] for c in json.loads(out)["collectors"]) == len(PEOPLE)
    code, out, err = _cli("timeline", "C01", "--json")
    assert code == 0, err
    assert [i["kind"] for i in json.loads(out)][-1] == "risk"
    code, _, err = _cli("--json")
    assert code == 2 and "--date is required" in err
