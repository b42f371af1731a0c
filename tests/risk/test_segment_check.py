"""The segments checked against the arrears model (`dianfei segments check`): on a small
billed utility whose payers' habits are known (tests/risk/test_insight_db.py: one never pays,
one always pays 10 days late, one is late once, the rest pay early), the rules rank on_time
below chronic by the model's score and by what happened next; a rules file that is wrong on
purpose is flagged; without a model the points score ranks and the answer says so; the JSON
keeps its documented shape and never holds NaN. Pure parts on hand-made frames."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.risk import segment_check
from tests.risk.test_insight_db import ALWAYS_LATE, NEVER_PAYS, ONCE_LATE, PEOPLE
from tests.risk.test_insight_db import billed as billed  # the fixture

#: the issue day of the 2026-05 bills: the next bill of every account (ONCE_LATE's late one)
D = date(2026, 6, 3)
#: the documented keys (docs/risk-insight.md, "Segments checked against the model")
TOP_KEYS = {"as_of", "scorer", "model_version", "model_cutoff", "scorer_reason", "rules_file",
            "accounts", "not_scored", "next_bill", "deciles", "segments", "order",
            "disagreements"}
SEGMENT_KEYS = {"segment", "label", "accounts", "predicted", "outcomes", "top_decile",
                "bottom_decile", "notes", "verdict"}
WRONG_RULES = """
[[segment]]
name = "chronic"
label = "长期欠费 chronic"
all = ["late_12m == 0"]

[[segment]]
name = "on_time"
label = "按时交费 on time"
"""


def _no_nan(obj: Any) -> None:
    if isinstance(obj, float):
        assert math.isfinite(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _no_nan(v)
    elif isinstance(obj, list):
        for v in obj:
            _no_nan(v)


def _history(db: Database) -> Any:
    from dianfei.risk.features import load_history

    return load_history(db.engine)


def _train(db: Database) -> str:
    from dianfei.risk.model import TrainConfig
    from dianfei.risk.service import train_model

    got = train_model(db, D, clock=FixedClock(datetime(2026, 6, 3, 8, tzinfo=BUSINESS_TZ)),
                      config=TrainConfig(trees=30, min_data_in_leaf=5))
    assert got["registered"], got
    return str(got["version"])


def _seg(out: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in out["segments"] if s["segment"] == name)


def test_the_rules_rank_like_the_model_and_the_outcomes(billed: Database) -> None:
    from dianfei.risk.service import check_segments

    version = _train(billed)
    out = check_segments(billed, D, history=_history(billed))
    _no_nan(out)
    assert set(out) >= TOP_KEYS and "warning" not in out
    assert (out["scorer"], out["model_version"], out["scorer_reason"]) == ("lightgbm", version, None)
    assert out["accounts"] == len(PEOPLE) and out["not_scored"] == 0
    assert [s["segment"] for s in out["segments"]] == list(segment_check.SEGMENTS)
    for s in out["segments"]:
        assert set(s) >= SEGMENT_KEYS
    on_time, chronic = _seg(out, "on_time"), _seg(out, "chronic")
    assert chronic["accounts"] == 2  # the one who never pays and the one always late
    assert on_time["predicted"]["mean"] < chronic["predicted"]["mean"]
    # what happened next: both chronic accounts late again; of the on_time ones only ONCE_LATE
    assert (chronic["outcomes"]["known"], chronic["outcomes"]["late"]) == (2, 2)
    assert on_time["outcomes"]["late"] == 1 and on_time["outcomes"]["rate"] < 0.1
    assert out["order"]["predicted_ordered"] is True and out["order"]["observed_ordered"] is True
    assert on_time["verdict"] == "ok" and chronic["verdict"] == "ok"
    # nobody was late only once before D: an empty segment is null with a reason, never NaN
    occ = _seg(out, "occasionally_late")
    assert occ["accounts"] == 0 and occ["verdict"] == "no_accounts"
    assert occ["predicted"]["mean"] is None and occ["outcomes"]["rate"] is None
    assert occ["notes"] == ["no account is in this segment"]
    assert out["disagreements"]["total"] == 0 and out["disagreements"]["listed"] == []
    assert ONCE_LATE not in {r["account"] for r in out["disagreements"]["listed"]}


def test_a_wrong_rule_is_flagged_with_both_reasons(billed: Database, tmp_path: Path) -> None:
    from dianfei.risk.service import check_segments

    _train(billed)
    rules = tmp_path / "segments.toml"
    rules.write_text(WRONG_RULES, encoding="utf-8")
    out = check_segments(billed, D, history=_history(billed), rules_file=rules)
    _no_nan(out)
    on_time, chronic = _seg(out, "on_time"), _seg(out, "chronic")
    # the payers with nothing late are "chronic", the two bad payers "on_time"
    assert on_time["accounts"] == 2 and chronic["accounts"] == len(PEOPLE) - 2
    assert out["order"]["predicted_ordered"] is False
    assert out["order"]["observed_ordered"] is False
    assert on_time["verdict"] == "check" and chronic["verdict"] == "check"
    assert any("is not below" in n for n in on_time["notes"])
    d = out["disagreements"]
    assert d["by_segment"]["on_time"] == 2 and d["total"] >= 2
    listed = {r["account"]: r for r in d["listed"]}
    for acct in (NEVER_PAYS, ALWAYS_LATE):
        r = listed[acct]
        assert r["segment"] == "on_time" and r["decile"] == "top"
        assert r["rule"] == "no other rule matched" and r["model_direction"] == "raised"
        assert r["model_reasons_en"] and r["model_reasons_zh"]
        assert r["next_bill_late"] is True
    assert any("top decile" in n for n in on_time["notes"])


def test_without_a_model_the_points_score_ranks_and_says_so(billed: Database) -> None:
    from dianfei.risk.service import check_segments

    out = check_segments(billed, D, history=_history(billed))
    _no_nan(out)
    assert out["scorer"] == "rules" and out["model_version"] is None
    assert "no arrears model is trained" in out["scorer_reason"]
    assert "rules-only points score" in out["scorer_reason"]
    assert _seg(out, "on_time")["predicted"]["mean"] < _seg(out, "chronic")["predicted"]["mean"]


def test_a_model_trained_after_the_day_is_used_with_a_warning(billed: Database) -> None:
    from dianfei.risk.service import check_segments

    _train(billed)
    out = check_segments(billed, date(2026, 5, 4), history=_history(billed))
    assert out["scorer"] == "lightgbm" and "not held out" in out["warning"]


def test_cli_json_and_text(billed: Database, tmp_path: Path) -> None:
    from dianfei.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["segments", "check", "--as-of", str(D), "--json"])
    assert res.exit_code == 0, (res.stdout, res.stderr)
    body = json.loads(res.stdout)
    assert set(body) >= TOP_KEYS and body["scorer"] == "rules"
    assert set(body["next_bill"]) == {"window_days", "label", "outcomes_known_through", "known"}
    assert set(body["disagreements"]) == {"total", "by_segment", "listed"}
    text = runner.invoke(app, ["segments", "check", "--as-of", str(D), "--top", "1"])
    assert text.exit_code == 0 and "scored by rules" in text.stdout and "chronic" in text.stdout
    # the listing keeps working beside the subcommand
    listed = runner.invoke(app, ["segments", "--date", str(D), "--summary", "--json"])
    assert listed.exit_code == 0 and sum(json.loads(listed.stdout).values()) == len(PEOPLE)
    for args, message in ((["segments"], "--date is required"),
                          (["segments", "check", "--as-of", "June"], "not a date"),
                          (["segments", "check", "--as-of", str(D), "--window-days", "0"],
                           "--window-days must be at least 1"),
                          (["segments", "--json", "check", "--as-of", str(D)],
                           "go without a subcommand"),
                          (["segments", "check", "--as-of", str(D), "--rules",
                            str(tmp_path / "none.toml")], "cannot read segment rules")):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and message in bad.stderr, (args, bad.stderr)


# -- the pure parts -------------------------------------------------------------------------------


def test_deciles_keep_ties_together() -> None:
    scores = pl.DataFrame({"account_id": [f"A{i:02d}" for i in range(20)],
                           "probability": [0.0] * 15 + [0.1, 0.2, 0.3, 0.8, 0.9]})
    got = dict(segment_check.deciles(scores).select("account_id", "decile").iter_rows())
    # 18 of 20 scored below the two highest: top decile; the fifteen tied at 0 are in no decile
    assert [a for a, d in got.items() if d == "top"] == ["A18", "A19"]
    assert not [a for a, d in got.items() if d == "bottom"]
    distinct = pl.DataFrame({"account_id": [f"B{i:02d}" for i in range(20)],
                             "probability": [i / 20 for i in range(20)]})
    got = dict(segment_check.deciles(distinct).select("account_id", "decile").iter_rows())
    assert [a for a, d in got.items() if d == "bottom"] == ["B00", "B01"]


def test_verdicts_on_hand_made_figures() -> None:
    frame = pl.DataFrame({
        "account_id": ["a", "b", "c", "d"],
        "segment": ["on_time", "on_time", "chronic", "vacant"],
        "probability": [0.9, 0.1, 0.5, 0.0], "decile": ["top", None, None, "bottom"],
        "known": [True, False, True, False], "late": [True, False, False, False]})
    segs = segment_check.summarise(frame, {})
    order = segment_check.verdicts(segs)
    by = {s["segment"]: s for s in segs}
    assert by["on_time"]["predicted"]["mean"] == 0.5 and by["on_time"]["predicted"]["sd"] is not None
    assert by["chronic"]["predicted"]["sd"] is None  # one account: no spread, not NaN
    assert order == {"segments": ["on_time", "occasionally_late", "chronic"],
                     "predicted_ordered": False, "observed_ordered": False}
    assert by["on_time"]["verdict"] == "check" and by["vacant"]["verdict"] == "not_ordered"
    assert by["hardship"]["verdict"] == "no_accounts"
    assert by["on_time"]["disagree"] == {"decile": "top", "accounts": 1, "share": 0.5}
    assert by["chronic"]["outcomes"] == {"known": 1, "late": 0, "rate": 0.0, "predicted_mean": 0.5}
    assert segment_check.disagreements(frame)["account_id"].to_list() == ["a"]
    _no_nan(segs)


def test_nothing_known_is_null_with_a_note() -> None:
    frame = pl.DataFrame(schema={"account_id": pl.String, "segment": pl.String,
                                 "probability": pl.Float64, "decile": pl.String,
                                 "known": pl.Boolean, "late": pl.Boolean})
    segs = segment_check.summarise(frame, {})
    order = segment_check.verdicts(segs)
    assert order["predicted_ordered"] is None and order["observed_ordered"] is None
    assert all(s["verdict"] == "no_accounts" and s["predicted"]["mean"] is None for s in segs)


@pytest.mark.parametrize("bad", [{"window_days": 0}, {"top": -1}])
def test_bad_arguments_are_refused(db: Database, bad: dict[str, int]) -> None:
    from dianfei.core.errors import ValidationError
    from dianfei.risk.service import check_segments

    with pytest.raises(ValidationError):
        check_segments(db, D, history=_history(db), **bad)  # type: ignore[arg-type]


def test_the_model_report_holds_the_same_table(billed: Database, tmp_path: Path) -> None:
    from dianfei.risk.features import load_history
    from dianfei.risk.report import write_report
    from dianfei.risk.service import check_segments

    _train(billed)
    path = write_report(billed, D, tmp_path / "report.html", history=load_history(billed.engine))
    page = path.read_text(encoding="utf-8")
    assert "Segments checked against the model" in page and "长期欠费 chronic" in page
    out = check_segments(billed, D, history=_history(billed))
    chronic = _seg(out, "chronic")
    row = page[page.index("<td>长期欠费 chronic</td>"):].split("</tr>")[0]
    assert f"<td>{chronic['accounts']}</td><td>{chronic['predicted']['mean']:.3f}</td>" in row
    assert "by the mean score: yes" in page
