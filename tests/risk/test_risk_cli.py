"""`dianfei risk …` on a utility billed by the real bill run with the customers' payments posted
by the money core (a small demo), and the model driving collections' risk band."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database

KEYS = {"n", "positives", "auc", "pr_auc", "top_decile_lift"}


def _cli(*args: str) -> object:
    res = CliRunner().invoke(app, ["risk", *args])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout) if "--json" in args else res.stdout.strip()


#: the issue date of the 2025-03 bills
EARLY = date(2025, 4, 3)


@pytest.fixture
def billed(db: Database) -> tuple[Database, pl.DataFrame]:
    """Three months billed and paid, the features as of EARLY read from the database, then two
    more months (the demo resumes): later bills, payments of old bills, credit applied …"""
    from dianfei.demo import run_demo
    from dianfei.risk.features import features, load_history

    run_demo(db, customers=300, months=3, seed=3, collections=False)
    early = features(load_history(db.engine), EARLY)
    run_demo(db, customers=300, months=5, seed=3, collections=False)
    return db, early


def test_risk_commands_and_the_model_driving_collections(
        billed: tuple[Database, pl.DataFrame]) -> None:
    """Honesty through the real bill run and money core first: what happened after D (two more
    months of bills and payments, late payments of the bills due before D) changes no feature
    as of D. Then every command, and the model driving collections."""
    from dianfei.risk.features import features, load_history

    db, early = billed
    later = load_history(db.engine)
    assert later.bills["issued_on"].max() > EARLY and later.clearings["paid_on"].max() > EARLY
    assert features(later, EARLY).equals(early)

    # bills of 2025-01 … 05 were issued on the 3rd of the next month, due 15 days later
    out = _cli("backtest", "--as-of", "2025-05-03", "--trees", "20", "--json")
    assert isinstance(out, dict) and set(out) >= KEYS
    assert out["scorer"] == "lightgbm" and out["n"] > 250 and out["auc"] > 0.7

    # no model yet: the points score, and it says so
    out = _cli("score", "--as-of", "2025-06-05", "--json")
    assert isinstance(out, dict) and out["scorer"] == "rules" and out["accounts"] >= 300

    out = _cli("train", "--as-of", "2025-06-03", "--trees", "20", "--json")
    assert isinstance(out, dict) and out["registered"] and out["window"][1] == "2025-06-02"
    version = out["version"]
    assert (Path(out["path"]) / "booster_late.txt").exists()
    listed = _cli("models", "--json")
    assert isinstance(listed, list) and [m["version"] for m in listed] == [version]

    first = _cli("score", "--as-of", "2025-06-05", "--json")
    assert isinstance(first, dict) and first["scorer"] == "lightgbm"
    assert first["model_version"] == version
    later = _cli("score", "--as-of", "2025-06-25", "--json")
    assert isinstance(later, dict) and later["scorer"] == "lightgbm"
    warned = _cli("warnings", "--date", "2025-06-25", "--json")
    assert isinstance(warned, list) and len(warned) == later["warnings"]
    for w in warned:  # crossed the threshold or jumped since 06-05, with reasons
        assert w["kind"] in ("crossed", "jumped") and w["probability"] >= w["previous"]
        assert w["reasons_en"] and w["reasons_zh"]

    top = later["top"][0]["account"]
    why = _cli("explain", top, "--as-of", "2025-06-25", "--json")
    assert isinstance(why, dict) and why["scorer"] == "lightgbm" and why["contributions"]
    assert why["never_used"] == ["low_income", "protected"]

    path = Path(str(_cli("report", "--as-of", "2025-06-25")))
    page = path.read_text(encoding="utf-8")
    assert page.count("<svg") >= 4 and "Fairness" in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")

    # collections' risk band now comes from the model, the points score for what it did not score
    from dianfei.collections.service import run_day
    from dianfei.collections.suspension import FieldCrew
    from dianfei.risk.service import ModelScorer, scorer_for

    day = date(2025, 6, 26)
    scorer = scorer_for(db, day)
    assert isinstance(scorer, ModelScorer)
    feats = pl.DataFrame({"account_id": ["C00000001", "C00000002", "NOBODY"], "late_count": [0, 0, 3],
                          "avg_days_late": [0.0, 0.0, 20.0], "arrears": [0, 0, 60_000],
                          "broken_plans": [0, 0, 0]})
    bands = {r["account_id"]: r for r in scorer.score(feats).to_dicts()}
    stored = pl.read_parquet(Path(db.settings.data_dir) / "risk" / "scores" / f"{day}.parquet")
    for acct in ("C00000001", "C00000002"):
        assert bands[acct]["scorer"] == "lightgbm"
        assert bands[acct]["band"] == stored.filter(pl.col("account_id") == acct)["band"][0]
    assert bands["NOBODY"]["scorer"] == "rules" and bands["NOBODY"]["band"] == "high"
    report = run_day(db, day, clock=FixedClock(datetime.combine(day, time(9), tzinfo=BUSINESS_TZ)),
                     switch=FieldCrew())
    assert report.overdue_accounts > 0
    # the report's fairness section now counts what collections did, by group
    page = Path(str(_cli("report", "--as-of", "2025-06-26"))).read_text(encoding="utf-8")
    assert "dunning_steps_per_100" in page and "visits_per_100" in page


def test_backtest_on_an_empty_database_is_a_clear_error(db: Database) -> None:
    res = CliRunner().invoke(app, ["risk", "backtest", "--as-of", "2025-05-03", "--json"])
    assert res.exit_code == 2 and "no bill of a positive amount was issued on 2025-05-03" in res.stderr
    res = CliRunner().invoke(app, ["risk", "report"])
    assert res.exit_code == 2 and "no trained model yet" in res.stderr
