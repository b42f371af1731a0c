"""CLI: ``risk backtest|train|score|explain|warnings|models|report`` — the arrears-risk model.

Thin shells over ``dianfei.risk.service``. The history is read through the services of the
packages that own it; the broken payment plans come from collections and are passed in here
(risk sits below collections and never reads them itself).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.risk.features import History

risk_app = typer.Typer(help="Arrears risk (欠费风险): backtest, train, score, explain, report.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(risk_app, name="risk")


def _day(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


def _today() -> date:
    from dianfei.cli.context import clock_from_env
    from dianfei.core.clock import business_date

    return business_date(clock_from_env().now())


def history_of(db: Database) -> History:
    from dianfei.collections.service import broken_plan_dates
    from dianfei.risk.features import load_history

    return load_history(db.engine, plans=broken_plan_dates(db))


def _config(trees: int | None, threads: int = 1) -> Any:
    from dianfei.risk.model import TrainConfig

    if trees is not None and trees < 1:
        raise ValidationError(f"--trees must be at least 1, got {trees}")
    if threads < 1:
        raise ValidationError(f"--threads must be at least 1, got {threads}")
    return TrainConfig(trees=trees or TrainConfig.trees, threads=threads)


def _clean(obj: Any) -> Any:
    """JSON has no NaN or infinity: such a number is shown as null (never silently 0)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@risk_app.command("backtest")
@handle_errors
def backtest_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="the issue date D of the bills to predict")],
    window_days: Annotated[int, typer.Option(
        "--window-days", help="predict each account's first bill issued in [D, D+N) (1: on D)")] = 1,
    trees: Annotated[int | None, typer.Option("--trees", help="boosting rounds (default 200)")] = None,
    threads: Annotated[int, typer.Option("--threads", help="LightGBM threads (1: best on a "
                                         "shared machine)")] = 1,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train only on what was known before D, predict which accounts do not pay the bill issued
    on D in full by its due date, and score that against what happened."""
    from dianfei.cli.context import database
    from dianfei.risk.service import backtest

    d = _day(as_of, "--as-of")
    assert d is not None
    out = _clean(backtest(history_of(database()), d, config=_config(trees, threads),
                          window_days=window_days))
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{out['n']} bills, {out['positives']} not paid by the due date; scorer "
                   f"{out['scorer']}: AUC {out['auc']}, PR-AUC {out['pr_auc']}, "
                   f"top-decile lift {out['top_decile_lift']}")
        if out.get("note"):
            typer.echo(out["note"])


@risk_app.command("train")
@handle_errors
def train_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="learn from what was known before "
                                              "this day (default: today)")] = None,
    trees: Annotated[int | None, typer.Option("--trees")] = None,
    threads: Annotated[int, typer.Option("--threads", help="LightGBM threads")] = 1,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train the arrears model and register it (DATA_DIR/models/arrears/<version>). Schedule it
    monthly, after the bill run's due date has passed (cron: ``dianfei risk train``)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.risk.service import train_model

    d = _day(as_of, "--as-of") or _today()
    db = database()
    out = _clean(train_model(db, d, clock=clock_from_env(), config=_config(trees, threads),
                             history=history_of(db)))
    if json_out:
        print_json(out)
    elif out["registered"]:
        typer.echo(f"model {out['version']} trained on {out['window'][0]} … {out['window'][1]}: "
                   f"held-out AUC {out['metrics']['late']['auc']}")
    else:
        typer.echo(f"no model trained; the points score stays in charge: {out['reason']}")


@risk_app.command("score")
@handle_errors
def score_cmd(
    as_of: Annotated[str | None, typer.Option("--as-of", help="default: today")] = None,
    top: Annotated[int, typer.Option("--top", help="how many of the riskiest to list")] = 20,
    out_file: Annotated[Path | None, typer.Option("--out", help="every score to CSV")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    backend: Annotated[str, typer.Option(
        "--backend", help="local (this process, the default) or spark (per partition of "
        "accounts on the master of [spark] / DIANFEI_SPARK_MASTER; the same scores)")] = "local",
) -> None:
    """Score every account as of D (the latest trained model, else the points score) and write
    the day's early-warning list. Schedule it daily before ``collect run``."""
    import polars as pl

    from dianfei.cli.context import database
    from dianfei.risk.service import daily_scores, early_warnings

    if backend not in ("local", "spark"):
        raise ValidationError(f"--backend must be local or spark, got {backend!r}")
    d = _day(as_of, "--as-of") or _today()
    db = database()
    spark = None
    if backend == "spark":
        from dianfei.scale.risk import spark_scorer

        # Spark that cannot start (no Java, no PySpark, no master) is said before the history
        # is read and before anything is written
        spark = spark_scorer(db.settings)
    scores = daily_scores(db, d, history=history_of(db), refresh=True, backend=spark)
    warned = early_warnings(db, d)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        scores.write_csv(out_file)
    ranked = scores.sort(["probability", "account_id"], descending=[True, False]).head(top)
    scorers = scores["scorer"].unique().to_list()
    out = _clean({
        "as_of": str(d), "scorer": scorers[0] if len(scorers) == 1 else scorers,
        "model_version": scores["model_version"].drop_nulls().first() if scores.height else None,
        "accounts": scores.height,
        "bands": {b: int((scores["band"] == b).sum()) for b in ("low", "medium", "high")},
        "warnings": warned.height,
        "top": [{"account": r["account_id"], "probability": round(r["probability"], 4),
                 "band": r["band"], "reasons_zh": r["reasons_zh"], "reasons_en": r["reasons_en"]}
                for r in ranked.with_columns(pl.col("probability").fill_null(0.0)).to_dicts()]})
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{out['accounts']} accounts scored by {out['scorer']} as of {d}: {out['bands']}, "
                   f"{out['warnings']} early warnings")
        for r in out["top"]:
            typer.echo(f"  {r['account']}  {r['probability']:.2f}  {r['band']}  {r['reasons_en']}")


@risk_app.command("explain")
@handle_errors
def explain_cmd(
    account: Annotated[str, typer.Argument(help="the account id")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="default: today")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Why an account scores what it does: the probability, band, which scorer, and each
    feature's contribution, in zh-CN and en."""
    from dianfei.cli.context import database
    from dianfei.risk.service import explain

    d = _day(as_of, "--as-of") or _today()
    db = database()
    out = _clean(explain(db, account, d, history=history_of(db)))
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{account} as of {d}: {out['probability']} ({out['band']}) by {out['scorer']}")
        typer.echo(f"  {out['reasons_zh']}")
        typer.echo(f"  {out['reasons_en']}")


@risk_app.command("warnings")
@handle_errors
def warnings_cmd(
    day: Annotated[str | None, typer.Option("--date", help="default: today")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The day's early-warning list (written by ``risk score``)."""
    from dianfei.cli.context import database
    from dianfei.risk.service import early_warnings

    d = _day(day, "--date") or _today()
    rows = [{"account": r["account_id"], "kind": r["kind"], "probability": round(r["probability"], 4),
             "previous": None if r["previous"] is None else round(r["previous"], 4),
             "band": r["band"], "scorer": r["scorer"], "reasons_zh": r["reasons_zh"],
             "reasons_en": r["reasons_en"]} for r in early_warnings(database(), d).to_dicts()]
    if json_out:
        print_json(_clean(rows))
    else:
        for r in rows:
            typer.echo(f"{r['account']}  {r['kind']}  {r['previous']} → {r['probability']}  "
                       f"{r['reasons_en']}")


@risk_app.command("models")
@handle_errors
def models_cmd(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The model registry, newest first."""
    import json

    from dianfei.cli.context import database
    from dianfei.risk.service import models

    rows = [{"version": r["version"], "cutoff": str(r["cutoff"]),
             "window_from": str(r["window_from"]), "n_train": r["n_train"], "n_valid": r["n_valid"],
             "auc": r["auc"], "metrics": json.loads(r["metrics"]), "path": r["path"]}
            for r in models(database())]
    if json_out:
        print_json(_clean(rows))
    else:
        for r in rows:
            typer.echo(f"{r['version']}  trained before {r['cutoff']}  held-out AUC {r['auc']}")


@risk_app.command("report")
@handle_errors
def report_cmd(
    out_file: Annotated[Path | None, typer.Option("--out", help="default DATA_DIR/reports/"
                                                  "<version>.html")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="the population whose drift to "
                                              "show (default: today)")] = None,
) -> None:
    """The model report (HTML, charts inline): ROC, calibration, lift, feature importance,
    drift, and fairness — error rates and collections' actions by region, class and low-income
    flag."""
    from dianfei.cli.context import database
    from dianfei.collections.service import actions_by_account
    from dianfei.risk.report import write_report

    d = _day(as_of, "--as-of") or _today()
    db = database()
    path = write_report(db, d, out_file, history=history_of(db),
                        actions=actions_by_account(db, date(d.year - 1, d.month, 1)))
    typer.echo(str(path))
