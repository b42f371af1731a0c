"""CLI of risk intelligence: ``theft scan|record|inspections``, ``forecast``, ``segments``
(and ``segments check``), ``experiment create|report``.

Thin shells over ``dianfei.risk.service`` (docs/risk-insight.md). Heavy libraries (Polars,
scikit-learn) are imported inside the commands so ``dianfei --help`` stays fast.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from dianfei.core.clock import Period

theft_app = typer.Typer(help="Theft and anomaly warnings (窃电/计量异常预警) and inspections.",
                        no_args_is_help=True)
experiment_app = typer.Typer(help="Strategy experiments (策略实验, champion/challenger).",
                             no_args_is_help=True)
# ``dianfei segments --date D`` lists the segments (as it always did); ``dianfei segments check``
# checks the rules against the arrears model
segments_app = typer.Typer(invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(theft_app, name="theft")
    app.command("forecast")(forecast_cmd)
    app.add_typer(segments_app, name="segments")
    app.add_typer(experiment_app, name="experiment")


def _period(text: str, flag: str) -> Period:
    from dianfei.core.clock import Period

    try:
        return Period.parse(text.strip())
    except (ValueError, ValidationError):
        raise ValidationError(f"{flag}: not a period YYYY-MM: {text!r}") from None


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{flag}: not a date YYYY-MM-DD: {text!r}") from None


def _kwh(centi: Any) -> str | None:
    return None if centi is None else str((Decimal(int(centi)) / 100).quantize(Decimal("0.01")))


def _yuan(fen: Any) -> str | None:
    from dianfei.core.money import fmt_yuan

    return None if fen is None else fmt_yuan(int(fen))


def _round(x: Any, places: int) -> float | None:
    return None if x is None else round(float(x), places)


@theft_app.command("scan")
@handle_errors
def theft_scan_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="the last billed month YYYY-MM")],
    top: Annotated[int, typer.Option("--top", help="how many accounts to list", min=1)] = 50,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The inspection worklist: accounts most likely to be stealing power or to have a faulty
    meter, with the signals that fired, scored on the bills up to --as-of."""
    from dianfei.cli.context import database
    from dianfei.risk.service import theft_scan

    rows = theft_scan(database(), _period(as_of, "--as-of"), top=top).to_dicts()
    out = [{"rank": r["rank"], "account": r["account_id"], "customer_class": r["customer_class"],
            "score": _round(r["score"], 1), "iforest": _round(r["iforest"], 3),
            "supervised": _round(r["supervised"], 3), "reasons": r["reasons"],
            "drop": _round(r["drop"], 3), "months_low": r["months_low"],
            "zero_run": r["zero_run"], "flat_line": r["flat_line"],
            "usual_kwh": _kwh(r["level_before"]), "reasons_zh": r["reasons_zh"],
            "valley_share_before": _round(r["valley_share_before"], 3),
            "valley_share_now": _round(r["valley_share_now"], 3),
            "night_drop": _round(r["night_drop"], 3), "night_months": r["night_months"],
            "station": r["station_id"], "station_rise": _round(r["station_rise"], 4),
            "station_corr": _round(r["station_corr"], 3),
            "station_share": _round(r["station_share"], 4)} for r in rows]
    if json_out:
        print_json(out)
        return
    for r in out:
        typer.echo(f"{r['rank']:>4}  {r['account']}  {r['score']:>5}  {r['reasons'] or '-'}")


@theft_app.command("stations")
@handle_errors
def theft_stations_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="the last billed month YYYY-MM")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Line loss (台区线损) of every supply station with stored supply (dianfei import
    stations): its level before, now, the rise and the energy lost a month beyond its level,
    largest rise first."""
    from dianfei.cli.context import database
    from dianfei.risk.service import station_losses

    frame = station_losses(database(), _period(as_of, "--as-of"))
    rows = frame.sort("rise", descending=True, nulls_last=True).to_dicts()
    out = [{"station": r["station_id"], "loss_before": _round(r["loss_before"], 4),
            "loss_now": _round(r["loss_now"], 4), "rise": _round(r["rise"], 4),
            "rise_z": _round(r["rise_z"], 2),
            "extra_lost_kwh": _kwh(round(r["extra_lost_kwh"]))
            if r["extra_lost_kwh"] is not None else None,
            "supply_kwh": _kwh(round(r["supply_now"])) if r["supply_now"] is not None else None,
            "months_before": r["months_before"], "months_now": r["months_now"]} for r in rows]
    if json_out:
        print_json(out)
        return
    for r in out:
        typer.echo(f"{r['station']}  loss {r['loss_before']} → {r['loss_now']}  "
                   f"rise {r['rise']} ({r['rise_z']}σ)  extra lost {r['extra_lost_kwh']} kWh/month")


@theft_app.command("record")
@handle_errors
def theft_record_cmd(
    account: Annotated[str, typer.Argument(help="the inspected account")],
    on: Annotated[str, typer.Option("--on", help="the inspection date YYYY-MM-DD")],
    outcome: Annotated[str, typer.Option("--outcome", help="theft, meter_fault or no_finding")],
    inspector: Annotated[str | None, typer.Option("--inspector")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record what an on-site inspection found (the supervised model learns from these)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.risk.service import record_inspection

    db = database()
    with db.session() as s:
        new_id = record_inspection(s, account_id=account, inspected_on=_day(on, "--on"),
                                   outcome=outcome, clock=clock_from_env(), inspector=inspector,
                                   note=note)
    if json_out:
        print_json({"inspection_id": new_id, "account": account, "outcome": outcome})
    else:
        typer.echo(f"inspection {new_id} of {account}: {outcome}")


@theft_app.command("inspections")
@handle_errors
def theft_inspections_cmd(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every recorded inspection outcome, oldest first."""
    from dianfei.cli.context import database
    from dianfei.risk.service import inspections

    rows = [{"account": r["account_id"], "inspected_on": r["inspected_on"].isoformat(),
             "outcome": r["outcome"], "inspector": r["inspector"], "note": r["note"]}
            for r in inspections(database()).to_dicts()]
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['inspected_on']}  {r['account']}  {r['outcome']}")


@handle_errors
def forecast_cmd(
    period: Annotated[str, typer.Option("--period", help="the bill month to forecast YYYY-MM")],
    account: Annotated[list[str] | None, typer.Option(
        "--account", help="only these accounts (repeatable)")] = None,
    notify: Annotated[bool, typer.Option(
        "--notify", help="queue the advance notice for forecasts that are unusually high")] = False,
    channel: Annotated[str, typer.Option("--channel", help="notice channel")] = "sms",
    store: Annotated[bool, typer.Option(
        "--store", help="store every account's forecast for the bill pages (what the "
        "forecast_store job does after a bill run); prints the counts")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Next-bill forecast (下期电费预测): each account's expected energy and bill for --period
    with an 80 % interval, rated by the tariff engine (tiers included)."""
    from dianfei.cli.context import clock_from_env, database
    from dianfei.risk.service import forecast_next_bill, queue_forecast_notices, store_forecasts

    db = database()
    p = _period(period, "--period")
    if store:
        if account or notify:
            raise ValidationError("--store stores every account's forecast: without --account "
                                  "and --notify")
        print_json(store_forecasts(db, p, clock=clock_from_env()))
        return
    rows = forecast_next_bill(db, p, accounts=account).to_dicts()
    out = [{"account": r["account_id"], "period": r["period"], "kwh": _kwh(r["kwh"]),
            "kwh_low": _kwh(r["kwh_low"]), "kwh_high": _kwh(r["kwh_high"]),
            "amount": _yuan(r["amount"]), "amount_low": _yuan(r["amount_low"]),
            "amount_high": _yuan(r["amount_high"]), "usual_amount": _yuan(r["usual_amount"]),
            "high": r["high"], "basis": r["basis"], "reason": r["reason"]} for r in rows]
    queued = queue_forecast_notices(db, p, clock=clock_from_env(), channel=channel) if notify \
        else None
    if json_out:
        print_json(out if queued is None else {"forecasts": out, "notices": queued})
        return
    for r in out:
        flag = "  HIGH" if r["high"] else ""
        typer.echo(f"{r['account']}  {r['kwh']} kWh  {r['amount'] or '-'} yuan "
                   f"({r['amount_low'] or '-'}–{r['amount_high'] or '-'}){flag}")
    if queued is not None:
        typer.echo(f"{queued} advance notices queued")


@segments_app.callback()
@handle_errors
def segments_cmd(
    ctx: typer.Context,
    day: Annotated[str | None, typer.Option("--date", help="the business day YYYY-MM-DD")] = None,
    account: Annotated[list[str] | None, typer.Option(
        "--account", help="only these accounts (repeatable)")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="counts per segment only")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Customer segments (客户分类): on_time, occasionally_late, chronic, hardship, strategic,
    vacant, suspected_theft — by the rules of risk/segments.toml, with the rule that matched.
    `segments check` checks the rules against the arrears model."""
    import polars as pl

    from dianfei.cli.context import database
    from dianfei.risk.service import segments

    if ctx.invoked_subcommand is not None:
        if day is not None or account or summary or json_out:
            raise ValidationError(f"--date, --account, --summary and --json of `segments` go "
                                  f"without a subcommand; give them after "
                                  f"`{ctx.invoked_subcommand}`")
        return
    if day is None:
        raise ValidationError("--date is required (the business day YYYY-MM-DD), or a "
                              "subcommand: `segments check --as-of D`")
    frame = segments(database(), _day(day, "--date"))
    if account:
        frame = frame.filter(pl.col("account_id").is_in(account))
    if summary:
        counts = {r["segment"]: r["len"] for r in
                  frame.group_by("segment").len().sort("segment").to_dicts()}
        if json_out:
            print_json(counts)
        else:
            for k, v in counts.items():
                typer.echo(f"{k:<18} {v}")
        return
    out = [{"account": r["account_id"], "segment": r["segment"], "label": r["label"],
            "why": r["why"], "late_12m": r["late_12m"], "overdue_amount": _yuan(r["overdue_amount"]),
            "theft_score": _round(r["theft_score"], 1), "usual_kwh": _kwh(r["usual_kwh"])}
           for r in frame.sort("account_id").to_dicts()]
    if json_out:
        print_json(out)
        return
    for r in out:
        typer.echo(f"{r['account']}  {r['segment']:<18} {r['why']}")


@segments_app.command("check")
@handle_errors
def segments_check_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="the day D of the segments and scores "
                                       "YYYY-MM-DD (the next bill after it is the outcome)")],
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="a segment rules file to check instead of the packaged segments.toml "
        "(try an edited copy before installing it)")] = None,
    window_days: Annotated[int, typer.Option(
        "--window-days", help="days from D in which each account's next bill is looked for")] = 31,
    top: Annotated[int, typer.Option("--top", help="how many disagreeing accounts to list "
                                     "(all are counted)", min=0)] = 50,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the segment rules against the arrears model (客户分类校验): per segment the
    model's mean score and spread, the observed rate of the next bill not paid in full by its
    due date, whether on_time < occasionally_late < chronic, and the accounts whose rule and
    model disagree strongly, with both reasons."""
    from dianfei.cli.context import database
    from dianfei.cli.risk import history_of
    from dianfei.risk.service import check_segments

    db = database()
    out = check_segments(db, _day(as_of, "--as-of"), history=history_of(db), rules_file=rules,
                         window_days=window_days, top=top)
    if json_out:
        print_json(out)
        return
    _print_check(out)


def _print_check(out: dict[str, Any]) -> None:
    scorer = out["scorer"] + (f" {out['model_version']}" if out["model_version"] else "")
    typer.echo(f"segments as of {out['as_of']}, scored by {scorer}"
               + (f" — {out['scorer_reason']}" if out["scorer_reason"] else ""))
    if out.get("warning"):
        typer.echo(f"warning: {out['warning']}")
    typer.echo(f"{'segment':<18} {'accounts':>8} {'mean':>7} {'sd':>7} {'known':>6} "
               f"{'late':>7} {'top10%':>7} {'bot10%':>7}  verdict")
    for s in out["segments"]:
        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.3f}"
        typer.echo(f"{s['segment']:<18} {s['accounts']:>8} {f(s['predicted']['mean']):>7} "
                   f"{f(s['predicted']['sd']):>7} {s['outcomes']['known']:>6} "
                   f"{f(s['outcomes']['rate']):>7} {s['top_decile']:>7} {s['bottom_decile']:>7}"
                   f"  {s['verdict']}")
        for note in s["notes"]:
            typer.echo(f"{'':<20}{note}")
    d = out["disagreements"]
    typer.echo(f"rule and model disagree strongly on {d['total']} accounts (on_time in the "
               f"model's top decile {d['by_segment']['on_time']}, chronic in its bottom decile "
               f"{d['by_segment']['chronic']})")
    for r in d["listed"]:
        typer.echo(f"  {r['account']}  {r['segment']}  score {r['score']} ({r['decile']} decile)"
                   f"  rule: {r['rule']}  model: {r['model_reasons_en'] or '-'}")


@experiment_app.command("create")
@handle_errors
def experiment_create_cmd(
    experiment_id: Annotated[str, typer.Argument(help="a new experiment id, e.g. dunning-2026")],
    arms: Annotated[str, typer.Option(
        "--arms", help="arm:share,… adding up to 1, e.g. holdout:0.1,uniform:0.45,risk_driven:0.45")],
    start: Annotated[str, typer.Option("--start", help="first day YYYY-MM-DD")],
    seed: Annotated[int, typer.Option("--seed", help="random seed of the assignment")] = 1,
    description: Annotated[str, typer.Option("--description")] = "",
    customer_class: Annotated[list[str] | None, typer.Option(
        "--customer-class", help="only accounts of these classes (repeatable)")] = None,
    payment_mode: Annotated[str | None, typer.Option(
        "--payment-mode", help="only postpaid or prepaid accounts")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Assign the open accounts at random to the arms (with a holdout) and keep the assignment."""
    import polars as pl

    from dianfei.cli.context import clock_from_env, database
    from dianfei.risk.experiments import parse_arms
    from dianfei.risk.service import account_facts, create_experiment

    db = database()
    day = _day(start, "--start")
    facts = account_facts(db.engine, day)
    if customer_class:
        facts = facts.filter(pl.col("customer_class").is_in(customer_class))
    if payment_mode:
        facts = facts.filter(pl.col("payment_mode") == payment_mode)
    with db.session() as s:
        assigned = create_experiment(
            s, experiment_id=experiment_id, description=description, arms=parse_arms(arms),
            seed=seed, started_on=day, clock=clock_from_env(),
            accounts=facts["account_id"].to_list())
    counts = {r["arm"]: r["len"] for r in assigned.group_by("arm").len().sort("arm").to_dicts()}
    if json_out:
        print_json({"experiment_id": experiment_id, "accounts": assigned.height, "arms": counts})
    else:
        typer.echo(f"experiment {experiment_id}: {assigned.height} accounts "
                   + ", ".join(f"{k} {v}" for k, v in counts.items()))


@experiment_app.command("arms")
@handle_errors
def experiment_arms_cmd(
    experiment_id: Annotated[str, typer.Argument()],
    account: Annotated[list[str] | None, typer.Option("--account")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Which arm each account is in."""
    import polars as pl

    from dianfei.cli.context import database
    from dianfei.risk.service import experiment, experiment_arms

    db = database()
    experiment(db, experiment_id)  # a clear error for an unknown id
    frame = experiment_arms(db.engine, experiment_id)
    if account:
        frame = frame.filter(pl.col("account_id").is_in(account))
    rows = [{"account": r["account_id"], "arm": r["arm"]} for r in frame.to_dicts()]
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['account']}  {r['arm']}")


@experiment_app.command("report")
@handle_errors
def experiment_report_cmd(
    experiment_id: Annotated[str, typer.Argument()],
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """KPIs per arm with 95 % confidence intervals, and each challenger minus the champion."""
    from dianfei.cli.context import database
    from dianfei.risk.service import experiment_report

    report = experiment_report(database(), experiment_id, _day(as_of, "--as-of"))
    _print_report(report, json_out)


@experiment_app.command("simulate")
@handle_errors
def experiment_simulate_cmd(
    customers: Annotated[int, typer.Option("--customers", min=100)] = 4000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    months: Annotated[int, typer.Option("--months", min=1, max=12)] = 6,
    arms: Annotated[str, typer.Option("--arms")] = "holdout:0.1,uniform:0.45,risk_driven:0.45",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The built-in experiment on the synthetic county: uniform vs risk-driven dunning (no
    database; see docs/risk-insight.md for what the sim can and cannot show)."""
    from dianfei import insight_demo

    _print_report(insight_demo.run(customers, seed, months, arms), json_out)


def _print_report(report: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(report)
        return
    for arm, k in report["arms"].items():
        typer.echo(f"{arm:<12} accounts {k['accounts']:>7}  "
                   + "  ".join(f"{name} {k[name]['value']} [{k[name]['low']}, {k[name]['high']}]"
                               for name in ("collection_rate", "overdue_rate", "avg_payment_days",
                                            "contact_cost_per_account")))
    for arm, d in report["differences"].items():
        typer.echo(f"{arm} − {report['champion']}: "
                   + "  ".join(f"{name} {v['value']} [{v['low']}, {v['high']}]"
                               for name, v in d.items()))
