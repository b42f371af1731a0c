"""CLI: ``dianfei vee …`` — validation, estimation and editing of meter data (数据校核与估算),
time-of-use totals and the read success rate (采集成功率)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.errors import ValidationError

vee_app = typer.Typer(help="Validation, estimation and editing of meter data (数据校核与估算).",
                      no_args_is_help=True)

FromOpt = Annotated[str | None, typer.Option("--from", help="first business day YYYY-MM-DD")]
ToOpt = Annotated[str | None, typer.Option("--to", help="last business day YYYY-MM-DD")]
JsonOpt = Annotated[bool, typer.Option("--json")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="local (this process, the default) or spark (one task per meter group; "
    "the master from [spark] or DIANFEI_SPARK_MASTER)")]
BACKENDS = ("local", "spark")


def register(app: typer.Typer) -> None:
    app.add_typer(vee_app, name="vee")


def _day(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{what} must be a date YYYY-MM-DD, got {text!r}") from None


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValidationError(f"--backend must be local or spark, got {name!r}")
    return name


def _kwh(wh: int | None) -> str | None:
    if wh is None:
        return None
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"


def _instant(value: datetime) -> str:
    from dianfei.core.clock import BUSINESS_TZ

    return value.astimezone(BUSINESS_TZ).isoformat()


@vee_app.command("run")
@handle_errors
def run(day_from: FromOpt = None, day_to: ToOpt = None, json_out: JsonOpt = False,
        pending: Annotated[bool, typer.Option(
            "--pending", help="only the days of the import batches no run has examined yet "
            "(the nightly job)")] = False,
        backend: BackendOpt = "local") -> None:
    """Validate and estimate the stored meter data; idempotent (a re-run adds nothing)."""
    # the local backend never imports PySpark (a command's start-up, and installs without it)
    if _backend(backend) == "spark":
        from dianfei.scale.vee import run_pending, run_vee
    else:
        from dianfei.metering.vee.service import run_pending, run_vee

    if pending:
        if day_from or day_to:
            raise ValidationError("--pending examines the days that arrived: no --from/--to")
        done = run_pending(database(), clock_from_env())
        if json_out:
            print_json(done)
        else:
            typer.echo(f"{done['batches']} new import batches over {len(done['spans'])} spans of "
                       f"days: {done['findings_added']} new findings, "
                       f"{done['estimates_added']} new estimates")
            for span in done["spans"]:
                typer.echo(f"  {span['from']} … {span['to']}: {span['run_id']}")
        return
    res = run_vee(database(), clock_from_env(), day_from=_day(day_from, "--from"),
                  day_to=_day(day_to, "--to"))
    out: dict[str, Any] = {"run_id": res.run_id, **res.counts, "findings": res.findings,
                           "findings_added": res.findings_added, "estimates": res.estimates,
                           "estimates_added": res.estimates_added}
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{res.run_id}: {res.findings} findings ({res.findings_added} new), "
                   f"{res.estimates} estimates ({res.estimates_added} new); "
                   f"{res.counts['missing_intervals']} missing intervals in "
                   f"{res.counts['gap_events']} gaps")


@vee_app.command("profile")
@handle_errors
def profile(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="the profiles are made of the months before this day (default: today)")]
    = None,
    months: Annotated[int, typer.Option("--months", help="how many months of history (1..60)")]
    = 12,
    json_out: JsonOpt = False,
) -> None:
    """Keep each meter's usual highs and usual days (spike and usage statistics) over its last
    months, so that a run over a day or a week judges by the meter's year."""
    from dianfei.core.clock import business_date
    from dianfei.metering.vee.service import build_profiles

    clock = clock_from_env()
    day = _day(as_of, "--as-of") or business_date(clock.now())
    out = build_profiles(database(), clock, as_of=day, months=months)
    if json_out:
        print_json(out)
    else:
        typer.echo(f"profiles of {out['meters']} meters ({out['rows']} rows) from "
                   f"{out['data_from']} to {out['data_to']}")


@vee_app.command("report")
@handle_errors
def report(day_from: FromOpt = None, day_to: ToOpt = None, json_out: JsonOpt = False) -> None:
    """The VEE figures (interfaces.md): intervals, missing_intervals, gap_events, duplicates, …"""
    from dianfei.core.settings import load_settings
    from dianfei.metering.vee.service import report as vee_report
    from dianfei.metering.vee.service import stored_report

    days = {"day_from": _day(day_from, "--from"), "day_to": _day(day_to, "--to")}
    # the newest run's answer without SQLAlchemy's start-up when it stands (SQLite)
    out = stored_report(load_settings(), **days) or vee_report(database(), **days)
    if json_out:
        print_json(out)
    else:
        for key, value in out.items():
            typer.echo(f"{key:24} {value}")


@vee_app.command("findings")
@handle_errors
def findings(
    rule: Annotated[str | None, typer.Option(help="only this rule (gap, spike, zero_run, …)")] = None,
    meter: Annotated[str | None, typer.Option(help="only this meter")] = None,
    day_from: FromOpt = None, day_to: ToOpt = None, json_out: JsonOpt = False,
) -> None:
    """Every finding: {"rule", "meter_id", "ts", "value", "detail"} (value in kWh)."""
    from dianfei.core.settings import load_settings
    from dianfei.metering.vee.service import finding_rows, stored_finding_rows

    d0, d1 = _day(day_from, "--from"), _day(day_to, "--to")
    # as in `vee report`
    found = stored_finding_rows(load_settings(), rule=rule, meter_id=meter, day_from=d0,
                                day_to=d1)
    if found is None:
        found = finding_rows(database(), rule=rule, meter_id=meter, day_from=d0, day_to=d1)
    rows = [{"rule": r["rule"], "meter_id": r["meter_id"], "ts": _instant(r["ts"]),
             "value": _kwh(r["value_wh"]), "detail": r["detail"],
             **({"ref": r["ref"]} if r["ref"] else {})}
            for r in found]
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['rule']:22} {r['meter_id']:14} {r['ts']}  {r['detail']}")


@vee_app.command("edit")
@handle_errors
def edit(
    meter: Annotated[str, typer.Option(help="meter id")],
    ts: Annotated[str, typer.Option(help="interval start, ISO 8601 with offset")],
    kwh: Annotated[str, typer.Option(help="the corrected value, kWh (at most 3 places)")],
    reason: Annotated[str, typer.Option(help="why (required; kept in the audit record)")],
    user: Annotated[str | None, typer.Option(help="who (default: $USER)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Manually edit one interval: stored apart (the metered value is kept), with an audit row."""
    import getpass

    from dianfei.metering.vee.service import edit_interval

    try:
        instant = datetime.fromisoformat(ts)
    except ValueError:
        raise ValidationError(f"--ts is not an ISO 8601 instant: {ts!r}") from None
    if instant.tzinfo is None:
        raise ValidationError(f"--ts needs a UTC offset, e.g. 2026-03-01T08:00:00+08:00, got {ts!r}")
    db = database()
    who = user or getpass.getuser()
    with db.session() as s:
        rec = edit_interval(db, s, clock_from_env(), meter_id=meter, ts=instant, kwh=kwh,
                            reason=reason, user=who)
    out = {"edit_id": rec["edit_id"], "meter_id": rec["meter_id"], "ts": _instant(rec["ts"]),
           "old": _kwh(rec["old_wh"]), "old_source": rec["old_source"], "new": _kwh(rec["new_wh"]),
           "reason": rec["reason"], "user": rec["edited_by"], "at": _instant(rec["edited_at"])}
    print_json(out) if json_out else typer.echo(
        f"edit {rec['edit_id']}: {meter} {out['ts']} {out['old']} ({out['old_source']}) → {out['new']}")


@vee_app.command("review")
@handle_errors
def review(
    meter: Annotated[str, typer.Option(help="meter id")],
    at: Annotated[str, typer.Option("--at", help="the held read's instant, ISO 8601 with offset")],
    decision: Annotated[str, typer.Option(help="release (the meter did register it) | reject")],
    reason: Annotated[str, typer.Option(help="why (required; kept in the audit record)")],
    user: Annotated[str | None, typer.Option(help="who (default: $USER)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Release or reject a register read held as implausible (vee findings --rule
    implausible_read): a released read counts from now on, for a prepaid balance too."""
    import getpass

    from dianfei.metering.vee.service import review_held_read

    try:
        instant = datetime.fromisoformat(at)
    except ValueError:
        raise ValidationError(f"--at is not an ISO 8601 instant: {at!r}") from None
    if instant.tzinfo is None:
        raise ValidationError(f"--at needs a UTC offset, e.g. 2026-03-02T00:00:00+08:00, got {at!r}")
    out = review_held_read(database(), clock_from_env(), meter_id=meter, read_at=instant,
                           decision=decision, by=user or getpass.getuser(), reason=reason)
    out = {**out, "read_at": _instant(out["read_at"])}
    print_json(out) if json_out else typer.echo(
        f"{meter} {out['read_at']}: {out['decision']} by {out['decided_by']}"
        + ("" if out["recorded"] else " (already recorded)"))


@vee_app.command("edits")
@handle_errors
def edits(meter: Annotated[str | None, typer.Option(help="only this meter")] = None,
          json_out: JsonOpt = False) -> None:
    """The audit record of manual edits, oldest first."""
    from dianfei.metering.vee.service import edits as vee_edits

    rows = [{"edit_id": r["edit_id"], "meter_id": r["meter_id"], "ts": _instant(r["ts"]),
             "old": _kwh(r["old_wh"]), "old_source": r["old_source"], "new": _kwh(r["new_wh"]),
             "reason": r["reason"], "user": r["edited_by"], "at": _instant(r["edited_at"])}
            for r in vee_edits(database(), meter_id=meter).iter_rows(named=True)]
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['edit_id']:>6} {r['meter_id']:14} {r['ts']} {r['old']} → {r['new']} "
                       f"by {r['user']}: {r['reason']}")


@vee_app.command("tou")
@handle_errors
def tou(day_from: Annotated[str, typer.Option("--from", help="first business day")],
        day_to: Annotated[str, typer.Option("--to", help="last business day")],
        meter: Annotated[str | None, typer.Option(help="only this meter")] = None,
        json_out: JsonOpt = False, backend: BackendOpt = "local") -> None:
    """Daily sharp/peak/flat/valley kWh per meter (metered + estimated + edited)."""
    if _backend(backend) == "spark":
        from dianfei.scale.vee import daily_tou
    else:
        from dianfei.metering.vee.service import daily_tou  # type: ignore[assignment]

    lo, hi = _day(day_from, "--from"), _day(day_to, "--to")
    assert lo is not None and hi is not None
    frame = daily_tou(database(), lo, hi)
    rows = [{"meter_id": r["meter_id"], "day": r["day"].isoformat(),
             **{k: _kwh(r[f"{k}_wh"]) for k in ("total", "sharp", "peak", "flat", "valley")},
             "estimated_kwh": _kwh(r["estimated_wh"]), "edited_kwh": _kwh(r["edited_wh"]),
             "intervals": r["intervals"], "estimated_intervals": r["estimated_intervals"],
             "estimated": r["estimated"]}
            for r in frame.iter_rows(named=True) if meter is None or r["meter_id"] == meter]
    if json_out:
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['meter_id']:14} {r['day']} total {r['total']} sharp {r['sharp']} "
                       f"peak {r['peak']} flat {r['flat']} valley {r['valley']}"
                       + (f" (estimated {r['estimated_kwh']})" if r["estimated"] else ""))


@vee_app.command("read-rate")
@handle_errors
def read_rate(
    day: Annotated[str, typer.Option("--date", help="business day YYYY-MM-DD")],
    by: Annotated[str | None, typer.Option(help="region or station")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="list the meters that failed")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Read success rate (采集成功率) of a day, overall or by region/station; or the failures."""
    from dianfei.metering.vee import readrate
    from dianfei.metering.vee.service import read_outcomes

    d = _day(day, "--date")
    assert d is not None
    if by not in (None, "region", "station"):
        raise ValidationError(f"--by must be region or station, got {by!r}")
    outcome = read_outcomes(database(), d)
    if failed:
        import polars as pl

        rows: list[dict[str, Any]] = [
            {"date": d.isoformat(), "meter_id": r["meter_id"], "region": r["region_id"],
             "station": r["station_id"], "reason": r["reason"], "detail": r["detail"]}
            for r in outcome.filter(~pl.col("succeeded")).iter_rows(named=True)]
    else:
        key = {"region": "region_id", "station": "station_id"}.get(by or "")
        rows = [{"date": d.isoformat(), **({by: r[key]} if by and key else {}),
                 "meters": r["meters"], "succeeded": r["succeeded"], "failed": r["failed"],
                 "rate": r["rate"]}
                for r in readrate.rates(outcome, by).iter_rows(named=True)]
    if json_out:
        print_json(rows if (failed or by) else rows[0])
    else:
        for r in rows:
            typer.echo("  ".join(f"{k}={v}" for k, v in r.items()))
