"""`dianfei kpi`, `audit funds` and `report monthly` as an operator runs them: JSON out, and bad
input as one line on stderr with exit code 2 (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.db.engine import Database


@pytest.fixture
def run(billed: Database, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIANFEI_NOW", "2026-03-01T09:00:00+08:00")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_kpi_json_has_the_contract_keys(run) -> None:  # type: ignore[no-untyped-def]
    res = run("kpi", "--period", "2026-01", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    for key in ("billed", "collected", "collection_rate", "overdue_amount", "overdue_rate",
                "avg_payment_days", "median_payment_days", "aging", "complaint_rate"):
        assert key in got
    assert got["as_of"] == "2026-03-01"  # today by the clock
    assert got["collected"] == "0.00" and got["collection_rate"] == 0.0
    assert got["avg_payment_days"] is None  # nothing paid in full: no figure, not zero


@pytest.mark.parametrize(("args", "message"), [
    (("kpi", "--period", "2025-06", "--json"), "no bills for period 2025-06"),
    (("kpi", "--period", "2026-01", "--as-of", "2025-12-31"), "before period 2026-01 begins"),
    (("kpi", "--period", "2026-01", "--by", "tariff"), "--by must be one of"),
    (("kpi", "--period", "2026-13"), "period month must be 01..12"),
    (("audit", "funds", "--period", "26-01"), "period must be YYYY-MM"),
    (("report", "monthly", "--period", "2026-01", "--format", "doc", "--out", "x"),
     "--format must be one of"),
])
def test_bad_input_is_one_line_and_exit_2(run, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_audit_and_report(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = run("audit", "funds", "--period", "2026-02", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["ties"] and got["bills"] == 6 and got["collected"] == "0.00"
    out = tmp_path / "r.xlsx"
    res = run("report", "monthly", "--period", "2026-01", "--format", "xlsx", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
