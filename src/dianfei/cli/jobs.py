"""CLI: ``dianfei worker`` and ``dianfei jobs list|run|retry|skip|schedule``.

The job kinds are assembled here, at the entry point, because they need what the commands need:
the meter switch, the notice senders, the statement files. Each kind does exactly what its
command does (``collect run``, ``bill run``, ``notify dispatch``, ``vee run``, ``risk score``,
``reconcile``, ``report monthly``, ``report dashboard``, ``forecast --store``, the approvals'
expiry) through the same service functions —
one path per job.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dianfei.cli.common import handle_errors, print_json
from dianfei.cli.context import clock_from_env, database
from dianfei.core.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.jobs.calendar import Entry
    from dianfei.jobs.service import JobKind, RunContext

jobs_app = typer.Typer(help="Scheduled jobs (作业): the calendar, runs, failures.",
                       no_args_is_help=True)

#: where statements arrive for the daily reconciliation job: DATA_DIR/statements/<channel>/
STATEMENT_SUFFIXES = (".csv", ".txt", ".zip", ".xlsx")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
    app.add_typer(jobs_app, name="jobs")


# -- the kinds ---------------------------------------------------------------------------------


def _collections_day(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.collections.service import run_day
    from dianfei.collections.suspension import FieldCrew
    from dianfei.metering.control import RemoteSwitch, checked_remote_switch

    # unusable meter control fails the run (retried, then on the worklist), never a default
    switch: RemoteSwitch = (FieldCrew() if ctx.args.get("no_meter_control")
                            else checked_remote_switch(db, clock=ctx.clock))
    return run_day(db, ctx.business_day, clock=ctx.clock, switch=switch).to_json()


def _period(ctx: RunContext) -> Any:
    from dianfei.core.clock import Period

    offset = int(ctx.args.get("period_offset", -1))
    p = Period(ctx.business_day.year, ctx.business_day.month)
    for _ in range(abs(offset)):
        p = p.prev() if offset < 0 else p.next()
    return p


def _on_spark(ctx: RunContext) -> bool:
    """The calendar entry's ``args.backend``: "local" (the default) or "spark" — a province runs
    its nightly VEE, risk scores and monthly bill run on Spark (docs/scaling.md)."""
    backend = ctx.args.get("backend", "local")
    if backend not in ("local", "spark"):
        raise ValidationError(f"job {ctx.job}: args.backend must be local or spark, "
                              f"got {backend!r}")
    return bool(backend == "spark")


def _bill_run(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.billing.service import run_bill_run

    period = _period(ctx)
    chunk = int(ctx.args.get("chunk_size", 100_000))  # accounts rated and written per commit
    spark = None
    if _on_spark(ctx):
        from dianfei.scale.billing import spark_backend

        spark = spark_backend(db.settings)
    result = run_bill_run(db, period, ctx.clock, chunk_size=chunk, backend=spark)
    from dianfei.jobs.service import queue_follow_up

    # what shows the new bills is computed now, not at the next day: the dashboard's figures
    # and the forecast every bill page shows
    entries = calendar(db)
    queued = {kind: queue_follow_up(db, entries, kind, clock=ctx.clock, after=ctx)
              for kind in ("dashboard_refresh", "forecast_store", "segment_facts")}
    return {"period": str(period), **_plain(result), "follow_ups_queued": queued}


def _notify_dispatch(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.notify.service import dispatch

    return _plain(dispatch(db, clock=ctx.clock))


def _vee_run(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    """``vee run --pending``: the days of the batches that arrived, not the whole store."""
    if _on_spark(ctx):
        from dianfei.scale import vee as spark_vee

        return spark_vee.run_pending(db, ctx.clock)
    from dianfei.metering.vee.service import run_pending

    return run_pending(db, ctx.clock)


def _vee_profile(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.metering.vee.service import build_profiles

    return build_profiles(db, ctx.clock, as_of=ctx.business_day)


def _risk_score(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.cli.risk import history_of
    from dianfei.risk.service import daily_scores, early_warnings

    spark = None
    if _on_spark(ctx):
        from dianfei.scale.risk import spark_scorer

        spark = spark_scorer(db.settings)
    scores = daily_scores(db, ctx.business_day, history=history_of(db), refresh=True,
                          backend=spark)
    return {"as_of": str(ctx.business_day), "accounts": scores.height,
            "early_warnings": early_warnings(db, ctx.business_day).height}


def statement_file(db: Database, channel: str, day: date) -> Path:
    """The statement of ``channel`` for ``day`` in DATA_DIR/statements/<channel>/, named by the
    day (``2026-12-04.csv`` …). Missing: the channel has not delivered it yet — the job fails
    and is retried with a backoff, then lands on the worklist."""
    folder = db.settings.data_dir / "statements" / channel
    found = [folder / f"{day.isoformat()}{s}" for s in STATEMENT_SUFFIXES
             if (folder / f"{day.isoformat()}{s}").is_file()]
    if not found:
        raise NotFoundError(f"no {channel} statement for {day} yet in {folder} (expected "
                            f"{day.isoformat()}{'|'.join(STATEMENT_SUFFIXES)})")
    if len(found) > 1:
        raise ValidationError(f"two {channel} statements for {day}: {', '.join(map(str, found))}")
    return found[0]


def _reconcile(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.cli.reconcile import layout_dir_of
    from dianfei.payments import reconcile_service as rs

    channel = str(ctx.args.get("channel") or "")
    if not channel:
        raise ValidationError(f"job {ctx.job}: args.channel is required for a reconcile job")
    # the statement of a day arrives the next morning
    day = ctx.business_day - timedelta(days=int(ctx.args.get("days_back", 1)))
    path = statement_file(db, channel, day)
    outcome = rs.reconcile_file(db, channel=channel, day=day, body=path.read_bytes(),
                                name=path.name, where=str(path), clock=ctx.clock,
                                bank=ctx.args.get("bank"), layout_dir=layout_dir_of(db),
                                auto_post=True)
    out = rs.outcome_json(outcome, day)
    return {"channel": channel, "day": str(day), "totals": out.get("totals")}


def _monthly_report(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.reporting.kpi import parse_as_of
    from dianfei.reporting.report import monthly, write

    period = _period(ctx)
    fmt = str(ctx.args.get("format", "pdf"))
    folder = db.settings.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (f"monthly-{period}.{fmt}" if fmt != "csv" else f"monthly-{period}")
    font = (db.settings.raw.get("notify", {}).get("letters", {}) or {}).get("font")
    files = write(monthly(db, period, parse_as_of(None, period, ctx.business_day)), fmt, out, font)
    return {"period": str(period), "files": [str(f) for f in files]}


def _dashboard_refresh(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.reporting.dashboard import refresh

    return refresh(db, clock=ctx.clock)


def _forecast_store(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.billing.service import latest_billed_period
    from dianfei.core.clock import Period
    from dianfei.risk.service import store_forecasts

    # the bill pages of the latest billed period show the period after it
    latest = latest_billed_period(db.engine)
    if latest is None:
        return {"period": None, "stored": 0, "note": "nothing billed yet"}
    return store_forecasts(db, Period.parse(latest).next(), clock=ctx.clock)


def _segment_facts(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.risk.service import segment_consumption_facts

    # the whole-book part of the risk segments, made once the bills are in: the collections
    # morning then only reads it (a no-op read when nothing was billed since)
    facts = segment_consumption_facts(db, ctx.business_day)
    return {"business_day": ctx.business_day.isoformat(), "accounts": facts.height}


def _approvals_housekeeping(db: Database, ctx: RunContext) -> Mapping[str, Any]:
    from dianfei.approvals.service import housekeeping

    # expiry used to happen only when someone listed or decided requests: a request nobody
    # looked at stayed pending (and its subject blocked for a new one) past its expiry
    return housekeeping(db, ctx.clock)


def _plain(obj: Any) -> dict[str, Any]:
    """A service's report as JSON-able counts (its to_json when it has one)."""
    for name in ("to_json", "as_dict"):
        if hasattr(obj, name):
            out = getattr(obj, name)()
            return dict(out) if isinstance(out, Mapping) else {"result": out}
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in dataclasses.asdict(obj).items()
                if isinstance(v, (int, str, bool, date, type(None)))}
    return {"result": str(obj)}


KINDS: dict[str, JobKind] = {
    "collections_day": _collections_day, "bill_run": _bill_run,
    "notify_dispatch": _notify_dispatch, "vee_run": _vee_run, "vee_profile": _vee_profile,
    "risk_score": _risk_score,
    "reconcile": _reconcile, "monthly_report": _monthly_report,
    "dashboard_refresh": _dashboard_refresh, "forecast_store": _forecast_store,
    "segment_facts": _segment_facts,
    "approvals_housekeeping": _approvals_housekeeping,
}


def calendar(db: Database) -> list[Entry]:
    """The configured calendar ([jobs] schedule = FILE, else the built-in one)."""
    from dianfei.jobs.calendar import load_calendar

    path = (db.settings.raw.get("jobs", {}) or {}).get("schedule")
    return load_calendar(Path(path) if path else None, KINDS)


def _entry(db: Database, name: str) -> Entry:
    for e in calendar(db):
        if e.name == name:
            return e
    raise NotFoundError(f"no job {name!r} in the calendar (see `dianfei jobs schedule`)")


# -- commands ----------------------------------------------------------------------------------


@handle_errors
def worker_cmd(
    once: Annotated[bool, typer.Option("--once", help="one pass: queue what is due, run what "
                                       "can run, exit")] = False,
    poll: Annotated[float, typer.Option(help="seconds between passes")] = 30.0,
    max_runs: Annotated[int | None, typer.Option(help="stop a pass after N runs")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the calendar's jobs: queue what is due, claim and run it, retry failures with a
    backoff. Several workers may run at once (on PostgreSQL; SQLite allows one writer)."""
    from dianfei.core.logs import configure_logging
    from dianfei.jobs.service import work, worker_id

    configure_logging()
    db = database()
    entries = calendar(db)
    me = worker_id()
    while True:
        _record_configuration(db)
        report = work(db, entries, KINDS, clock=clock_from_env(), worker=me, max_runs=max_runs)
        if json_out:
            print_json(report.to_json())
        else:
            for r in report.ran:
                typer.echo(f"{r['job']} {r['scheduled_for']}: {r['status']}"
                           + (f" — {r['error']}" if r["error"] else ""))
        if once:
            failed = [r for r in report.ran if r["status"] != "done"]
            if failed:
                raise typer.Exit(1)
            return
        time.sleep(poll)


def _record_configuration(db: Database) -> None:
    """Before each pass: a changed configuration file goes on the audit chain before any job
    acts on it (audit/config.py), and the rule files are read again (core/rules.py)."""
    from dianfei.audit.service import record_current_configuration
    from dianfei.core.settings import load_settings

    change = record_current_configuration(db.engine, load_settings())
    if change is not None:
        from dianfei.core.rules import reload_rules

        reload_rules()  # this pass runs on the rules just recorded, not on what was read before
        logging.getLogger("dianfei.audit").info(
            "configuration recorded on the audit chain: %d added, %d changed, %d removed; "
            "rule files read again", len(change.added), len(change.changed), len(change.removed))


def start_worker_thread(poll: float = 30.0) -> threading.Thread:
    """The worker inside ``dianfei serve`` on the embedded database: one pass every ``poll``
    seconds in a daemon thread. A pass that fails is logged with its reason and tried again at
    the next pass (the runs themselves record their own failures)."""
    from dianfei.jobs.service import work, worker_id

    db = database()
    entries = calendar(db)  # a wrong calendar stops the server from starting, naming the field
    me = worker_id()
    log = logging.getLogger("dianfei.jobs")

    def loop() -> None:
        while True:
            try:
                _record_configuration(db)
                report = work(db, entries, KINDS, clock=clock_from_env(), worker=me)
                for r in report.ran:
                    log.log(logging.INFO if r["status"] == "done" else logging.ERROR,
                            "job %s for %s: %s%s", r["job"], r["scheduled_for"], r["status"],
                            f" ({r['error']})" if r["error"] else "")
            except Exception:
                log.exception("job worker pass failed; trying again in %.0f s", poll)
            time.sleep(poll)

    thread = threading.Thread(target=loop, name="dianfei-jobs", daemon=True)
    thread.start()
    sys.stderr.write(f"jobs: the calendar runs inside this server ({len(entries)} jobs; "
                     "`dianfei jobs list` shows the runs)\n")
    return thread


@jobs_app.command("schedule")
@handle_errors
def jobs_schedule(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The calendar: each job, its kind, when it runs, its attempts."""
    db = database()
    rows: list[dict[str, Any]] = [
        {"name": e.name, "kind": e.kind, "every": e.every, "at": e.at.strftime("%H:%M"),
         "day_of_month": e.day_of_month, "max_attempts": e.max_attempts, "args": e.args,
         "enabled": e.enabled} for e in calendar(db)]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        when = f"day {r['day_of_month']} of each month" if r["every"] == "month" else \
            f"every {r['every'].replace('_', ' ')}"
        typer.echo(f"{r['name']:<22} {r['kind']:<16} {when} at {r['at']}")


@jobs_app.command("list")
@handle_errors
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running, done, failed, skipped")]
    = None,
    job: Annotated[str | None, typer.Option(help="one job's runs")] = None,
    limit: Annotated[int, typer.Option(help="newest N")] = 50,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The job history, newest first; ``--status failed`` is the worklist."""
    from dianfei.jobs.service import runs

    if status and status not in ("queued", "running", "done", "failed", "skipped"):
        raise ValidationError(f"--status must be queued, running, done, failed or skipped, "
                              f"got {status!r}")
    rows = runs(database(), status=status, job=job, limit=limit)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['run_id']:>6} {r['job']:<22} {r['scheduled_for']} {r['status']:<8} "
                   f"try {r['attempts']}/{r['max_attempts']}"
                   + (f" — {r['error']}" if r["error"] else ""))


@jobs_app.command("run")
@handle_errors
def jobs_run(
    name: Annotated[str, typer.Argument(help="the job's name in the calendar")],
    for_day: Annotated[str | None, typer.Option("--for", help="the business day it is for "
                                                "(default: now)")] = None,
    user: Annotated[str, typer.Option(help="who asks for it (recorded)")] = "operator",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Queue a run of a job now and do it in this process (after the job's earlier runs)."""
    from dianfei.jobs.service import claim, queue_manual, run_claimed, worker_id

    db, clock = database(), clock_from_env()
    entry = _entry(db, name)
    day = None
    if for_day:
        try:
            day = date.fromisoformat(for_day)
        except ValueError:
            raise ValidationError(f"--for: not a date YYYY-MM-DD: {for_day!r}") from None
    run_id = queue_manual(db, entry, clock=clock, user=user, for_day=day)
    me = worker_id()
    out: dict[str, Any] = {"run_id": run_id, "status": "queued"}
    while (run := claim(db, clock=clock, worker=me)) is not None:
        got = run_claimed(db, run, KINDS, clock=clock, worker=me)
        if got["run_id"] == run_id:
            out = got
            break
    if json_out:
        print_json(out)
    else:
        typer.echo(f"{name} run {run_id}: {out['status']}"
                   + (f" — {out.get('error')}" if out.get("error") else "")
                   + ("" if out["status"] != "queued" else " (waits for earlier runs of the job)"))
    if out["status"] != "done":
        raise typer.Exit(1)


@jobs_app.command("retry")
@handle_errors
def jobs_retry(
    run_id: Annotated[int, typer.Argument(help="a failed run")],
    user: Annotated[str, typer.Option(help="who retries it (recorded)")] = "operator",
) -> None:
    """Queue a failed run again with fresh attempts (the worker picks it up)."""
    from dianfei.jobs.service import retry

    retry(database(), run_id, clock=clock_from_env(), user=user)
    typer.echo(f"run {run_id} queued again")


@jobs_app.command("skip")
@handle_errors
def jobs_skip(
    run_id: Annotated[int, typer.Argument(help="a failed or queued run")],
    reason: Annotated[str, typer.Option(help="why it is given up (recorded)")],
    user: Annotated[str, typer.Option(help="who skips it (recorded)")] = "operator",
) -> None:
    """Give up a run on purpose so that its job's later runs may go on."""
    from dianfei.jobs.service import skip

    skip(database(), run_id, clock=clock_from_env(), user=user, reason=reason)
    typer.echo(f"run {run_id} skipped")
