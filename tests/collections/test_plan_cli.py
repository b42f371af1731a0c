"""``dianfei plan propose|suggest|approve|cancel|list|show|report`` — thin shells over the same
service functions, JSON with yuan strings, refusals as one line on stderr (exit 2)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.db.engine import Database
from tests.collections.test_collections_e2e import setup


def plan(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["plan", *args])
    return res.exit_code, res.stdout, res.stderr


def test_plan_commands(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(db, {"A": {}, "B": {"amount": 300_000}})
    monkeypatch.setenv("DIANFEI_NOW", "2026-01-20T10:00:00+08:00")
    code, out, _ = plan("suggest", "--account", "A", "--json")
    sug = json.loads(out)
    assert code == 0 and (sug["policy"], sug["total"], sug["down_payment"]) == (
        "residential.standard", "200.00", "40.00")
    assert [i["amount"] for i in sug["instalments"]] == ["53.34", "53.33", "53.33"]
    assert not [k for k in sug if k.endswith("_fen")]
    code, out, _ = plan("propose", "--account", "A", "--kind", "pay_plan", "--requested-by", "li",
                        "--suggested", "--json")
    a = json.loads(out)
    assert code == 0 and (a["status"], len(a["instalments"])) == ("active", 4)
    # outside policy: refused naming the rule, nothing stored
    code, _, err = plan("propose", "--account", "B", "--kind", "pay_plan", "--requested-by", "li",
                        "--down-payment", "600", "--instalment", "2026-02-20:1200",
                        "--instalment", "2026-09-20:1200")
    assert code == 2 and err.strip() == (
        "error: plan refused by policy residential.standard: max_span_days — the last "
        "instalment falls due 2026-09-20, after 2026-07-29 (190 days)")
    code, out, _ = plan("propose", "--account", "B", "--kind", "instalment", "--requested-by", "li",
                        "--down-payment", "600", "--instalments", "4", "--json")
    b = json.loads(out)
    assert code == 0 and b["status"] == "proposed"
    assert [i["period"] for i in b["instalments"]] == [None, "2025-12", "2026-01", "2026-02",
                                                        "2026-03"]
    code, _, err = plan("approve", str(b["plan_id"]), "--by", "li")
    assert code == 2 and "other than the requester" in err
    code, out, _ = plan("approve", str(b["plan_id"]), "--by", "wang", "--json")
    assert code == 0 and json.loads(out)["status"] == "active"
    code, out, _ = plan("list", "--status", "active", "--json")
    assert [p["account_id"] for p in json.loads(out)] == ["B", "A"]
    code, out, _ = plan("cancel", str(a["plan_id"]), "--by", "wang", "--reason", "wrong terms",
                        "--json")
    assert json.loads(out)["status"] == "cancelled"
    code, out, _ = plan("report", "--from", "2026-01-01", "--to", "2026-01-31", "--by", "segment",
                        "--json")
    rep = json.loads(out)
    assert code == 0 and rep["rows"] == [{"segment": "standard", "in_force": 2, "kept": 1,
                                          "broken": 0, "completed": 0, "recovered": "0.00",
                                          "kept_rate": "50.0"}]
    code, _, err = plan("report", "--from", "2026-01-31", "--to", "2026-01-01")
    assert code == 2 and "--to 2026-01-01 is before --from 2026-01-31" in err
    code, _, err = plan("show", "999")
    assert code == 2 and "payment plan 999 does not exist" in err
    assert date.fromisoformat(a["agreed_at"][:10]) == date(2026, 1, 20)
