"""/billing: the periods with their bill-run state, starting a bill run, and its progress.

A bill run started here is a run of the calendar's ``bill_run`` job queued through the jobs
service (``queue_manual``), so the worker does it exactly as the scheduled run — one path per
job, with the jobs service's lease, retries and failure worklist. The page never runs the bill
run in the web process. While the run is queued or running its panel asks every 2 s for its
state (htmx); the answer for a finished run stops asking.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.billing import run_status
from dianfei.core.clock import Clock, Period, business_date
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.jobs import service as jobs
from dianfei.jobs.calendar import Entry, load_calendar
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.ops_pages import as_page, field_error, form_of, status_word
from dianfei.web.tables import Column, frame_fetch, listing

#: the worker's job kinds (``dianfei.cli.jobs.KINDS``; the web layer may not import the CLI —
#: tests/web/test_ops_pages.py keeps the two equal), to read the configured calendar
WORKER_KINDS = ("collections_day", "bill_run", "notify_dispatch", "vee_run", "vee_profile",
                "risk_score",
                "reconcile", "monthly_report", "dashboard_refresh", "forecast_store",
                "segment_facts", "approvals_housekeeping")
#: accounts written per commit by a run started here: small enough to show progress
CHUNK = 10_000
_ACTIVE = ("queued", "running")


def bill_run_entry(db: Database) -> Entry:
    """The calendar's bill-run job (its name orders manual runs after the scheduled ones)."""
    path = (db.settings.raw.get("jobs", {}) or {}).get("schedule")
    for e in load_calendar(Path(path) if path else None, WORKER_KINDS):
        if e.kind == "bill_run":
            return e
    raise ValidationError("the job calendar has no bill_run job: add one to start bill runs "
                          "from the console", where="jobs.schedule")


def months_between(first: Period, second: Period) -> int:
    return (second.year * 12 + second.month) - (first.year * 12 + first.month)


def start_bill_run(db: Database, clock: Clock, period: Period, user: str) -> int:
    """Queue a bill run of ``period``; returns the job run's id. Refused (409) while a bill run
    is queued or running, or a failed one holds the job's queue."""
    entry = bill_run_entry(db)
    today = business_date(clock.now())
    if period.first_day > today:
        raise ValidationError(f"the period {period} has not started yet (today is {today})",
                              where="period")
    active = active_runs(db, entry.name)
    if active:
        r = active[0]
        raise ConflictError(f"a bill run is already {r['status']} (job run {r['run_id']}, "
                            f"started by {r['triggered_by']}): wait for it to finish")
    # a failed run holds the job's later runs until a person retries or skips it
    failed = jobs.runs(db, status="failed", job=entry.name, limit=1)
    if failed:
        r = failed[0]
        raise ConflictError(f"job run {r['run_id']} of {entry.name} failed and holds the "
                            f"queue ({r['error']}): retry or skip it first "
                            f"(dianfei jobs retry|skip {r['run_id']})")
    # the job kind bills the period ``period_offset`` months from the day the run is queued for
    offset = months_between(Period(today.year, today.month), period)
    args = {**entry.args, "period_offset": offset, "period": str(period)}
    args.setdefault("chunk_size", CHUNK)
    return jobs.queue_manual(db, dataclasses.replace(entry, args=args), clock=clock, user=user)


def active_runs(db: Database, job: str) -> list[dict[str, Any]]:
    """The job's runs queued or running, oldest first."""
    found = [r for status in _ACTIVE for r in jobs.runs(db, status=status, job=job, limit=10)]
    return sorted(found, key=lambda r: r["run_id"])


def job_state(db: Database, job_id: int) -> dict[str, Any]:
    entry = bill_run_entry(db)
    for r in jobs.runs(db, job=entry.name, limit=200):
        if r["run_id"] == job_id:
            return r
    raise HTTPException(status_code=404, detail=f"no bill-run job run {job_id}")


def _progress(db: Database, job_id: int) -> dict[str, Any]:
    job = job_state(db, job_id)
    result = job.get("result") or {}
    run = None
    if result.get("run_id"):  # finished: the run it reported
        run = run_status.latest(db, str(result["period"]))
    elif job["status"] == "running":
        # runs of the bill-run job go one at a time: the run in progress is this job's
        run = run_status.running(db)
    return {"job": job, "run": run, "polling": job["status"] in _ACTIVE}


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    console.add_nav("nav.billing", "/billing", "billing:run", order=25)

    def page(request: Request, *, status_code: int = 200, errors: dict[str, str] | None = None,
             refusal: str | None = None, period: str | None = None,
             job_id: int | None = None) -> Response:
        request = as_page(request, "/billing")
        t = console.context(request)["t"]
        rows = [{**r, "status_word": status_word(t, r["status"]), "amount": fmt_yuan(r["amount"])}
                for r in run_status.periods(db)]
        columns = [
            Column("period", "col.period"), Column("run_id", "ops.col.run_id"),
            Column("status_word", "ops.col.status"),
            Column("candidates", "ops.col.candidates", num=True),
            Column("done", "ops.col.done", num=True), Column("billed", "ops.col.billed", num=True),
            Column("exceptions", "col.exceptions", num=True,
                   link=lambda r: f"/exceptions/{r['period']}" if r["exceptions"] else None),
            Column("amount", "col.amount", num=True), Column("runs", "ops.col.runs", num=True),
            Column("started_at", "ops.col.started"), Column("finished_at", "ops.col.finished")]
        today = business_date(clock.now())
        default = str(Period(today.year, today.month).prev())
        panel = None
        if job_id is None:  # a run queued by someone else is followed here too
            active = active_runs(db, bill_run_entry(db).name)
            job_id = active[0]["run_id"] if active else None
        if job_id is not None:
            panel = _progress(db, job_id)
        resp = listing(request, console, name="bill-runs", title=t("ops.billing.title"),
                       columns=columns, fetch=frame_fetch(pl.DataFrame(
                           rows, schema_overrides={"finished_at": pl.String})),
                       template="ops/billing.html", errors=errors or {}, refusal=refusal,
                       period=period or default, panel=panel)
        resp.status_code = status_code
        return resp

    @app.get("/billing", response_class=HTMLResponse, include_in_schema=False,
             **guard("billing:run"))
    def billing_page(request: Request, job: int | None = None) -> Response:
        return page(request, job_id=job)

    @app.post("/billing/run", include_in_schema=False, **guard("billing:run"))
    async def billing_run(request: Request) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        text = form.get("period", "")
        try:
            period = Period.parse(text)
            job_id = await run_in_threadpool(start_bill_run, db, clock, period, who.username)
        except ConflictError as exc:
            refusal = exc.message
            return await run_in_threadpool(lambda: page(request, status_code=409,
                                                        refusal=refusal, period=text))
        except ValidationError as exc:
            errors = field_error(exc, "period")
            return await run_in_threadpool(lambda: page(request, status_code=422,
                                                        errors=errors, period=text))
        return RedirectResponse(f"/billing?job={job_id}", status_code=303)

    @app.get("/billing/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("billing:run"))
    def billing_progress(request: Request, job_id: str) -> Response:
        """The progress panel alone (what htmx polls)."""
        if not job_id.isdigit():
            raise HTTPException(status_code=404, detail=f"no bill-run job run {job_id!r}")
        return console.render(request, "ops/_progress.html",
                              panel=_progress(db, int(job_id)))
