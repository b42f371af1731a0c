"""Entry points of VEE (validation, estimation and editing of meter data, 数据校核与估算).

* :func:`run_vee` validates the stored intervals and register reads, stores the findings and
  estimates the gaps (idempotent: a second run over the same data adds nothing), and keeps its
  figures and findings with a fingerprint of what they depend on (``results.py``);
* :func:`report` and :func:`findings` give the figures and findings of the data as it is now:
  the newest run's when nothing changed since, else computed again;
* :func:`edit_interval` records a manual edit with its reason (append-only audit record);
* :func:`effective_intervals`, :func:`daily_tou` and :func:`estimated_consumption` give what
  billing and reporting use: metered values, then estimates for what is missing, edits above
  both, each row saying where it came from;
* :func:`read_outcomes` and :func:`read_rate` give the read success rate (采集成功率).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dianfei.core.clock import Clock, start_of_day
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import parse_decimal
from dianfei.metering.vee import names, results
from dianfei.metering.vee.config import VeeConfig

# Polars and the pipeline are imported by the functions that compute: `vee report` and
# `vee findings` answer from the newest run's stored results when nothing changed since
# (results.py), and then load neither (a few tenths of a second of start-up per command)
if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from dianfei.core.settings import Settings
    from dianfei.db.engine import Database
    from dianfei.metering.vee import pipeline, tou

#: where an effective interval value came from, strongest first
SOURCES = ("edited", "metered", "estimated")


def config(db: Database) -> VeeConfig:
    """The ``[vee]`` settings of the configured deployment (defaults where unset)."""
    return VeeConfig.from_raw(db.settings.raw)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    counts: dict[str, int]
    findings: int
    findings_added: int
    estimates: int
    estimates_added: int


#: above this many meters VEE runs one meter group of the store at a time (bounded memory; the
#: groups hold disjoint meters, so figures add up and findings concatenate)
GROUPWISE_METERS = 200_000


@dataclass(frozen=True)
class VeePass:
    """What a VEE pass reads from the database before it computes (read once, by the driver):
    a :data:`Runner` adds the intervals of the store and runs ``pipeline.run`` over them — over
    everything at once, group by group, or one Spark task per meter group."""

    cfg: VeeConfig
    tz: str
    day_from: date | None
    day_to: date | None
    #: meter_id, digits, meter_class
    meters: pl.DataFrame
    duplicates: pl.DataFrame
    reads: pl.DataFrame | None
    with_findings: bool
    with_estimates: bool
    #: the rows around a window (``pipeline.run``'s ``context``); None for the whole history
    context: pipeline.Context | None

    @property
    def windowed(self) -> bool:
        """A window of days judges spikes and usage by the meters' kept profiles where they
        count more than the window (profiles.py); the whole history needs none."""
        return self.day_from is not None or self.day_to is not None


@dataclass(frozen=True)
class Computed:
    """What a pass computed: the figures (except ``estimated``), findings and estimates."""

    counts: dict[str, int]
    findings: pl.DataFrame
    estimates: pl.DataFrame


#: computes a pass: local (:func:`run_local`) or on Spark (``dianfei.scale.vee``)
Runner = Callable[["Database", VeePass], Computed]


def combine(parts: Sequence[Computed]) -> Computed:
    """The passes of disjoint sets of meters as one: figures add up (every figure counts rows
    or events of one meter), findings and estimates concatenate in the pipeline's order."""
    import polars as pl

    counts: dict[str, int] = {}
    for part in parts:
        for key, value in part.counts.items():
            counts[key] = counts.get(key, 0) + value
    return Computed(
        counts=counts,
        findings=pl.concat([p.findings for p in parts]).sort("rule", "meter_id", "ts", "ref"),
        estimates=pl.concat([p.estimates for p in parts]).sort("meter_id", "ts"))


def run_local(db: Database, p: VeePass) -> Computed:
    """The pass in this process: one ``pipeline.run`` over every meter, or one per meter group
    of the store above :data:`GROUPWISE_METERS` meters."""
    import polars as pl

    from dianfei.metering import intervals as store
    from dianfei.metering.vee import pipeline, profiles, repository

    reads, dups, meter_frame = p.reads, p.duplicates, p.meters
    if meter_frame.height <= GROUPWISE_METERS:
        res = pipeline.run(
            repository.intervals(db, p.day_from, p.day_to), p.cfg, p.tz, duplicates=dups.lazy(),
            reads=reads.lazy() if reads is not None else None, meters=meter_frame.lazy(),
            with_findings=p.with_findings, with_estimates=p.with_estimates,
            profile=profiles.kept(db).lazy() if p.windowed else None, context=p.context)
        return Computed(res.counts, res.findings, res.estimates)
    ids = meter_frame["meter_id"]
    grouped = meter_frame.with_columns(store.group_column(ids).alias("g"))
    parts: list[Computed] = []
    for _, members in grouped.group_by("g", maintain_order=True):
        mine = members["meter_id"]
        res = pipeline.run(
            repository.intervals(db, p.day_from, p.day_to, meter_ids=mine.to_list()), p.cfg,
            p.tz, duplicates=dups.filter(pl.col("meter_id").is_in(mine.implode())).lazy(),
            reads=(reads.filter(pl.col("meter_id").is_in(mine.implode())).lazy()
                   if reads is not None else None),
            meters=members.select("meter_id", "digits", "meter_class").lazy(),
            with_findings=p.with_findings, with_estimates=p.with_estimates,
            profile=profiles.kept(db, mine.to_list()).lazy() if p.windowed else None,
            context=p.context)
        parts.append(Computed(res.counts, res.findings, res.estimates))
    return combine(parts)


def vee_pass(db: Database, day_from: date | None, day_to: date | None, *,
             with_findings: bool, with_estimates: bool) -> VeePass:
    """Read what a pass needs from the database (not the intervals: the runner reads those)."""
    from dianfei.metering.vee import repository

    windowed = day_from is not None or day_to is not None
    return VeePass(
        cfg=config(db), tz=repository.tz_name(db), day_from=day_from, day_to=day_to,
        meters=repository.meters(db).select("meter_id", "digits", "meter_class"),
        duplicates=repository.duplicates(db, day_from, day_to),
        reads=repository.register_reads(db, day_from, day_to) if with_findings else None,
        with_findings=with_findings, with_estimates=with_estimates,
        # findings and estimates of a window see the gaps and zero runs that cross its edges
        context=(repository.context(db, day_from, day_to)
                 if windowed and (with_findings or with_estimates) else None))


def _result(db: Database, day_from: date | None, day_to: date | None, *,
            with_findings: bool, with_estimates: bool, runner: Runner | None = None) -> Computed:
    p = vee_pass(db, day_from, day_to, with_findings=with_findings,
                 with_estimates=with_estimates)
    return (runner or run_local)(db, p)


def run_vee(db: Database, clock: Clock, *, day_from: date | None = None,
            day_to: date | None = None, examined: Sequence[str] = (),
            runner: Runner | None = None) -> RunOutcome:
    """Validate and estimate the stored data (all of it, or the business days given).

    A job: it commits its one transaction. Findings are unique on (rule, meter, ts, ref) and
    estimates on (meter, ts), so running again over the same data inserts nothing; a finding or
    estimate keeps the id of the run that first made it.

    The run's figures and findings are kept, in the same transaction, as the newest results
    (``results.py``) with the fingerprint of the data and settings it read — taken *before*
    reading them, so data that arrives meanwhile makes the next ``report``/``findings``
    recompute rather than trust them.

    The import batches ``examined`` (and, for a run over the whole store, every batch catalogued
    when it starts) are recorded as examined in the same transaction: :func:`run_pending`
    leaves them alone.

    ``runner`` computes the pass (default: :func:`run_local`, in this process); whatever
    computes it, the results are written here, after it, in one transaction.
    """
    import polars as pl

    from dianfei.metering.vee import repository

    started = clock.now()
    run_id = f"V{started.astimezone(UTC):%Y%m%d%H%M%S}{uuid.uuid4().hex[:8]}"
    run_scope = results.scope(day_from, day_to)
    cfg = config(db)
    with db.engine.connect() as conn:
        data_state = results.data_state(db.settings, conn)
        if day_from is None and day_to is None:  # read before the data: all of it is examined
            examined = sorted({*examined, *repository.pending(conn)[0]})
    res = _result(db, day_from, day_to, with_findings=True, with_estimates=True, runner=runner)
    found = res.findings.with_columns(pl.lit(run_id).alias("run_id"))
    estimates = res.estimates.with_columns(pl.lit(run_id).alias("run_id"))
    with db.engine.begin() as conn:
        results.replace_kept(conn)
        # the run's findings go to vee_findings (new ones) and, all of them as computed, to the
        # kept results: one staging of the rows for both
        f_added = repository.insert_new(conn, "vee_findings", found, ("rule", "meter_id", "ts", "ref"),
                                        copy_to=results.KEPT_FINDINGS)
        e_added = repository.insert_new(conn, "vee_estimates", estimates, ("meter_id", "ts"))
        repository.insert_run(conn, {
            "run_id": run_id, "started_at": started, "finished_at": clock.now(),
            "settings": json.dumps(cfg.as_dict(), sort_keys=True),
            "findings_added": f_added, "estimates_added": e_added, "scope": run_scope})
        # the estimates as they are with this run's (read on its connection, before counting)
        estimates_state = results.estimates_state(conn)
        counts = dict(res.counts)
        counts["estimated"] = _estimated_count(db, day_from, day_to, conn=conn)
        figures = _ordered(counts)
        results.keep(conn, run_id, results.fingerprint(data_state, estimates_state), figures)
        repository.mark_examined(conn, examined, run_id, started)
    return RunOutcome(run_id, figures, found.height, f_added, estimates.height, e_added)


def spans(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive runs of ``days`` (sorted, distinct) as (first, last)."""
    out: list[tuple[date, date]] = []
    for day in days:
        if out and (day - out[-1][1]).days == 1:
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def run_pending(db: Database, clock: Clock, *, runner: Runner | None = None) -> dict[str, Any]:
    """Validate and estimate what has arrived since the last runs: the days of every import
    batch no run has examined, span of consecutive days by span, each with its meters' readings
    just before and after as context (``pipeline.run``) and their kept profiles — the nightly
    job. Its cost follows what arrived, not the history: a night's reads after a year cost what
    they cost after a week. The batches are recorded as examined by the last span's run, so a
    failure leaves them all for the retry (a run adds nothing twice)."""
    from dianfei.metering.vee import repository

    with db.engine.connect() as conn:
        batches, days = repository.pending(conn)
    runs = spans(days)
    outcomes = [run_vee(db, clock, day_from=a, day_to=b,
                        examined=batches if i == len(runs) - 1 else (), runner=runner)
                for i, (a, b) in enumerate(runs)]
    return {"batches": len(batches),
            "spans": [{"from": str(a), "to": str(b), "run_id": o.run_id,
                       "findings_added": o.findings_added, "estimates_added": o.estimates_added}
                      for (a, b), o in zip(runs, outcomes, strict=True)],
            "findings_added": sum(o.findings_added for o in outcomes),
            "estimates_added": sum(o.estimates_added for o in outcomes)}


def _ordered(counts: dict[str, int]) -> dict[str, int]:
    return {k: int(counts.get(k, 0)) for k in names.REPORT_KEYS}


def _estimated_count(db: Database, day_from: date | None, day_to: date | None, *,
                     conn: Connection | None = None) -> int:
    """Stored estimates for slots that still have no metered value (on ``conn``: with its
    uncommitted estimates)."""
    from dianfei.metering.vee import repository

    est = repository.estimates(db, day_from, day_to, conn=conn).select("meter_id", "ts")
    if est.height == 0:
        return 0
    metered = (repository.intervals(db, day_from, day_to, meter_ids=est["meter_id"].unique().to_list())
               .select("meter_id", "ts").collect())
    return est.join(metered, on=["meter_id", "ts"], how="anti").height


def report(db: Database, *, day_from: date | None = None, day_to: date | None = None) -> dict[str, int]:
    """The VEE figures of interfaces.md for the data as stored now (``vee report --json``).

    ``estimated`` counts stored estimates whose slot is still missing; every other figure is
    computed from metered data only, so estimates never change it. The newest run's figures
    when it examined the same days and nothing changed since (``results.py``).
    """
    stored = results.stored_figures(db, day_from, day_to)
    if stored is not None:
        return stored
    res = _result(db, day_from, day_to, with_findings=False, with_estimates=False)
    counts = dict(res.counts)
    counts["estimated"] = _estimated_count(db, day_from, day_to)
    return _ordered(counts)


def stored_report(settings: Settings, *, day_from: date | None = None,
                  day_to: date | None = None) -> dict[str, int] | None:
    """:func:`report` from the newest run on SQLite without opening the database through
    SQLAlchemy (a command's start-up), or None: then call :func:`report`."""
    return results.sqlite_figures(settings, day_from, day_to)


def stored_finding_rows(settings: Settings, *, rule: str | None = None,
                        meter_id: str | None = None, day_from: date | None = None,
                        day_to: date | None = None) -> list[dict[str, Any]] | None:
    """:func:`finding_rows` from the newest run the same way as :func:`stored_report`, or
    None: then call :func:`finding_rows`."""
    _check_rule(rule)
    return results.sqlite_findings(settings, rule=rule, meter_id=meter_id, day_from=day_from,
                                   day_to=day_to)


def _check_rule(rule: str | None) -> None:
    if rule is not None and rule not in names.RULES:
        raise ValidationError(f"unknown rule {rule!r} (known: {', '.join(names.RULES)})")


def finding_rows(db: Database, *, rule: str | None = None, meter_id: str | None = None,
                 day_from: date | None = None, day_to: date | None = None) -> list[dict[str, Any]]:
    """:func:`findings` as rows (dicts of rule, meter_id, ts, ref, value_wh, detail), for
    callers that print them: from the newest run without loading Polars when nothing changed."""
    _check_rule(rule)
    stored = results.stored_findings(db, rule=rule, meter_id=meter_id, day_from=day_from,
                                     day_to=day_to)
    if stored is not None:
        return stored
    return list(_computed_findings(db, rule, meter_id, day_from, day_to).iter_rows(named=True))


def findings(db: Database, *, rule: str | None = None, meter_id: str | None = None,
             day_from: date | None = None, day_to: date | None = None) -> pl.DataFrame:
    """Every finding of the data as stored now: rule, meter_id, ts, ref, value_wh, detail —
    the newest run's when it examined the same days and nothing changed since."""
    import polars as pl

    from dianfei.metering.vee import rules

    _check_rule(rule)
    stored = results.stored_findings(db, rule=rule, meter_id=meter_id, day_from=day_from,
                                     day_to=day_to)
    if stored is not None:
        return pl.DataFrame(stored, schema=rules.FINDING_SCHEMA)
    return _computed_findings(db, rule, meter_id, day_from, day_to)


def _computed_findings(db: Database, rule: str | None, meter_id: str | None,
                       day_from: date | None, day_to: date | None) -> pl.DataFrame:
    import polars as pl

    from dianfei.metering.vee import plausibility, repository

    found = _result(db, day_from, day_to, with_findings=True, with_estimates=False).findings
    # held reads are judged when they arrive (plausibility.py), not recomputed: add the stored
    held = plausibility.held_findings(db)
    lo, hi = repository.instants(db, day_from, day_to)
    if lo is not None:
        held = held.filter(pl.col("ts") >= lo)
    if hi is not None:
        held = held.filter(pl.col("ts") < hi)
    found = pl.concat([found, held.select(found.columns)]).sort("rule", "meter_id", "ts", "ref")
    if rule is not None:
        found = found.filter(pl.col("rule") == rule)
    if meter_id is not None:
        found = found.filter(pl.col("meter_id") == meter_id)
    return found


def review_held_read(db: Database, clock: Clock, *, meter_id: str, read_at: datetime,
                     decision: str, by: str, reason: str) -> dict[str, Any]:
    """A person releases (the meter did register it) or rejects a read held as implausible;
    see :func:`dianfei.metering.vee.plausibility.review_held`."""
    from dianfei.metering.vee import plausibility

    return plausibility.review_held(db, clock, meter_id=meter_id, read_at=read_at,
                                    decision=decision, by=by, reason=reason)


def build_profiles(db: Database, clock: Clock, *, as_of: date, months: int = 12
                   ) -> dict[str, Any]:
    """Keep each meter's spike and usage statistics over the ``months`` before ``as_of``
    (:mod:`dianfei.metering.vee.profiles`), meter group by meter group of the store."""
    import polars as pl

    from dianfei.metering import intervals as store
    from dianfei.metering.vee import profiles, repository, rules

    cfg = config(db)
    tz = repository.tz_name(db)
    data_from, data_to = profiles.window(as_of, months)
    built_at = clock.now()
    meters = repository.meters(db).select("meter_id")
    grouped = meters.with_columns(store.group_column(meters["meter_id"]).alias("g"))
    rows = kept_meters = 0
    for _, members in grouped.group_by("g", maintain_order=True):
        ids = members["meter_id"].to_list()
        prepared = rules.prepare(repository.intervals(db, data_from, data_to, meter_ids=ids)
                                 .select("meter_id", "ts", "minutes", "wh"), tz)
        found = (profiles.compute(prepared, cfg, tz) if prepared.height
                 else pl.DataFrame(schema=rules.PROFILE_SCHEMA))
        with db.engine.begin() as conn:
            profiles.replace(conn, ids, found, data_from=data_from, data_to=data_to,
                             built_at=built_at)
        rows += found.height
        kept_meters += found["meter_id"].n_unique()
    return {"as_of": as_of.isoformat(), "data_from": data_from.isoformat(),
            "data_to": data_to.isoformat(), "meters": kept_meters, "rows": rows}


def held_reads(db: Database, offset: int, limit: int, *, awaiting_only: bool = False,
               meter_id: str | None = None, read_at: datetime | None = None
               ) -> tuple[list[dict[str, Any]], int]:
    """One page of the reads held as implausible, awaiting a decision first; see
    :func:`dianfei.metering.vee.plausibility.held_reads`."""
    from dianfei.metering.vee import plausibility

    return plausibility.held_reads(db, offset, limit, awaiting_only=awaiting_only,
                                   meter_id=meter_id, read_at=read_at)


def stored_estimates(db: Database, *, day_from: date | None = None, day_to: date | None = None,
                     meter_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Stored estimates with their method, inputs and run (the trace of every estimate)."""
    from dianfei.metering.vee import repository

    return repository.estimates(db, day_from, day_to, meter_ids)


# --------------------------------------------------------------------------- manual edits


def _wh(kwh: Decimal | str) -> int:
    value = parse_decimal(kwh, "kwh", places=3)
    return int(value * 1000)


def edit_interval(db: Database, session: Session, clock: Clock, *, meter_id: str, ts: datetime,
                  kwh: Decimal | str, reason: str, user: str) -> dict[str, Any]:
    """Record a manual edit (人工修正) of one interval in the caller's transaction.

    The reason is required; the metered value (if any) stays in the store untouched; the edit
    row keeps the value in use before (``old_wh``, ``old_source``) and the new one, who and when.
    """
    import polars as pl

    from dianfei.metering.vee import repository

    if not reason or not reason.strip():
        raise ValidationError("an edit needs a reason (--reason)")
    if not user or not user.strip():
        raise ValidationError("an edit needs the user who makes it (--user)")
    if ts.tzinfo is None:
        raise ValidationError(f"--ts needs a UTC offset, got {ts.isoformat()}")
    ts = ts.astimezone(UTC)
    new_wh = _wh(kwh)
    tz = ZoneInfo(repository.tz_name(db))
    day = ts.astimezone(tz).date()
    metered_all = repository.intervals(db, meter_ids=[meter_id]).select("ts", "minutes", "wh")
    step_frame = metered_all.select(pl.col("minutes").min()).collect()
    step = step_frame.item() if step_frame.height else None
    if step is None:
        raise NotFoundError(f"meter {meter_id} has no intervals to edit")
    if int(ts.timestamp()) % (int(step) * 60) or ts.microsecond:
        raise ValidationError(f"{ts.isoformat()} is not on meter {meter_id}'s {step}-minute grid")
    old_wh: int | None = None
    old_source = "missing"
    prior = repository.edits(db, day, day, [meter_id]).filter(pl.col("ts") == ts)
    if prior.height:
        old_wh, old_source = int(prior["new_wh"][-1]), "edited"
    else:
        metered = metered_all.filter(pl.col("ts") == ts).collect()
        if metered.height:
            old_wh, old_source = int(metered["wh"][0]), "metered"
        else:
            est = repository.estimates(db, day, day, [meter_id]).filter(pl.col("ts") == ts)
            if est.height:
                old_wh, old_source = int(est["wh"][0]), "estimated"
    row = {"meter_id": meter_id, "ts": ts, "minutes": int(step), "old_wh": old_wh,
           "old_source": old_source, "new_wh": new_wh, "reason": reason.strip(),
           "edited_by": user.strip(), "edited_at": clock.now()}
    edit_id = repository.insert_edit(session.connection(), row)
    return {"edit_id": edit_id, **row}


def edits(db: Database, *, meter_id: str | None = None) -> pl.DataFrame:
    """The audit record of manual edits, oldest first."""
    from dianfei.metering.vee import repository

    return repository.edits(db, meter_ids=[meter_id] if meter_id else None)


# --------------------------------------------------------------------------- usage for billing


def effective_intervals(db: Database, day_from: date | None = None, day_to: date | None = None,
                        meter_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """One value per (meter, ts): the newest edit, else the metered value, else the estimate.

    Columns meter_id, ts, minutes, wh, source (edited, metered or estimated).
    """
    from dianfei.metering.vee import repository

    return effective_frame(repository.intervals(db, day_from, day_to, meter_ids),
                           repository.estimates(db, day_from, day_to, meter_ids),
                           repository.edits(db, day_from, day_to, meter_ids))


def effective_frame(metered: pl.LazyFrame, estimates: pl.DataFrame,
                    edits: pl.DataFrame) -> pl.DataFrame:
    """:func:`effective_intervals` of the given rows: the store's (``metered``), the stored
    estimates and the edits of the same meters and days (a Spark task's: one meter group)."""
    import polars as pl

    cols = ["meter_id", "ts", "minutes", "wh", "source"]
    metered_df = (metered.select("meter_id", "ts", "minutes", "wh",
                                 pl.lit("metered").alias("source"))
                  .collect())
    est = estimates.select("meter_id", "ts", "minutes", "wh", pl.lit("estimated").alias("source"))
    ed = (edits.group_by("meter_id", "ts").agg(pl.all().sort_by("edit_id").last())
          .select("meter_id", "ts", "minutes", pl.col("new_wh").alias("wh"),
                  pl.lit("edited").alias("source")))
    # strongest first (SOURCES): the store holds a (meter, ts) once and edits are one per
    # (meter, ts) already, so anti-joins of the few edits and estimates against the many metered
    # rows give one value per (meter, ts) without de-duplicating millions of rows
    keys = ["meter_id", "ts"]
    ed, metered_df, est = (f.select(cols).cast({"minutes": pl.Int16, "wh": pl.Int64})
                           for f in (ed, metered_df, est))
    if ed.height:
        metered_df = metered_df.join(ed.select(keys), on=keys, how="anti")
    if est.height:
        est = (est.unique(keys, keep="first", maintain_order=True)
               .join(pl.concat([ed.select(keys), metered_df.select(keys)]), on=keys, how="anti"))
    return pl.concat([ed, metered_df, est]).sort(keys)


def daily_tou(db: Database, day_from: date, day_to: date) -> pl.DataFrame:
    """Daily sharp/peak/flat/valley Wh per meter and business day (metered + estimated +
    edited), with the estimated part and an ``estimated`` flag: see tou.DAILY_TOU_SCHEMA."""
    from dianfei.metering.vee import repository, tou

    eff = effective_intervals(db, day_from, day_to)
    return tou.daily_tou_frame(eff, cal=tou_calendar(db), tz=repository.tz_name(db))


def tou_calendar(db: Database) -> tou.TouCalendar:
    """The TOU calendar of the deployment (``[vee] tou_calendar``)."""
    from dianfei.metering.vee import tou

    return tou.calendar(config(db).tou_calendar, db.settings.billing.tariff_dir)


def estimated_consumption(db: Database, day_from: date, day_to: date) -> pl.DataFrame:
    """Which meters' consumption over the days rests on estimates (估算电量), for billing to
    flag a bill "estimated": meter_id, total_wh, estimated_wh, estimated_intervals, edited_wh —
    only meters with at least one estimated or edited interval."""
    import polars as pl

    daily = daily_tou(db, day_from, day_to)
    return (daily.group_by("meter_id")
            .agg(pl.col("total_wh").sum(), pl.col("estimated_wh").sum(), pl.col("edited_wh").sum(),
                 pl.col("estimated_intervals").sum())
            .filter((pl.col("estimated_intervals") > 0) | (pl.col("edited_wh") != 0))
            .sort("meter_id"))


# --------------------------------------------------------------------------- read success rate


def read_outcomes(db: Database, day: date) -> pl.DataFrame:
    """Per AMI meter of ``day``: succeeded, reason, detail (see readrate)."""
    import polars as pl

    from dianfei.metering.vee import readrate, repository, rules

    cfg = config(db)
    tz = repository.tz_name(db)
    zone = ZoneInfo(tz)
    meters = repository.meters(db).filter(
        (pl.col("installed_on").is_null() | (pl.col("installed_on") <= day))
        & (pl.col("removed_on").is_null() | (pl.col("removed_on") > day)))
    recent = (repository.intervals(db, day - timedelta(days=cfg.read_lookback_days), day)
              .select("meter_id").unique().collect())
    lo = start_of_day(day - timedelta(days=cfg.read_lookback_days), zone)
    end = start_of_day(day + timedelta(days=1), zone)
    reads = repository.register_reads(db, day - timedelta(days=cfg.read_lookback_days), day)
    ami_reads = reads.filter((pl.col("source") == "ami") & (pl.col("read_at") >= lo)
                             & (pl.col("read_at") < end + timedelta(minutes=cfg.frozen_read_grace_minutes)))
    remote = pl.concat([recent["meter_id"], ami_reads["meter_id"]]).unique()
    population = meters.filter(pl.col("comm_address").is_not_null()
                               | pl.col("meter_id").is_in(remote.implode()))
    today = rules.prepare(repository.intervals(db, day, day).select("meter_id", "ts", "minutes", "wh"),
                          tz)
    day_counts = (today.filter(pl.col("on_grid") & (pl.col("day") == day))
                  .group_by("meter_id").agg(pl.len().cast(pl.Int64).alias("n"), pl.col("step").first()))
    frozen = ami_reads.filter((pl.col("register") == "total") & (pl.col("read_at") >= end)
                              & (pl.col("read_at") < end + timedelta(
                                  minutes=cfg.frozen_read_grace_minutes)))
    return readrate.outcomes(population, day_counts, frozen, cfg)


def read_rate(db: Database, day: date, *, by: str | None = None) -> pl.DataFrame:
    """采集成功率 of ``day`` overall or per ``region`` / ``station``: meters, succeeded, failed,
    rate (a fraction, 4 places; null without meters). For the KPI dashboards."""
    if by not in (None, "region", "station"):
        raise ValidationError(f"--by must be region or station, got {by!r}")
    from dianfei.metering.vee import readrate

    return readrate.rates(read_outcomes(db, day), by)
