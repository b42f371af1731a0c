"""Risk intelligence on a database: where the pure functions of ``anomaly`` and ``forecast`` get
their data (billing's issued bills and customers' account facts, through their services) and
where inspection outcomes are kept. ``risk.service`` is the public face of all of it.
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from dianfei.core.clock import Clock, Period
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.risk import anomaly
from dianfei.risk.insight_models import OUTCOMES, InspectionOutcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    import polars as pl
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from dianfei.db.engine import Database

PAYMENT_MODES = ("postpaid", "prepaid")
#: what an inspection can find (theft, meter_fault, no_finding)
INSPECTION_OUTCOMES = OUTCOMES


def consumption_history(engine: Engine, since: Period) -> pl.DataFrame:
    """account_id, period, kwh (0.01 kWh) of every live (issued, not cancelled) bill from
    ``since`` on — imported history and native bills alike, read through billing's service."""
    import polars as pl

    from dianfei.billing import service as billing

    parts = [billing.issued_bills_of_mode(engine, mode, str(since)) for mode in PAYMENT_MODES]
    return (pl.concat(parts).group_by("account_id", "period")
            .agg(pl.col("kwh").sum().cast(pl.Int64)).sort("account_id", "period"))


def account_facts(engine: Engine, day: date) -> pl.DataFrame:
    """account_id, customer_id, name, customer_class, low_income, protected, payment_mode,
    tariff_id (the assignment in force on ``day``; null when none) of every open account."""
    import polars as pl

    from dianfei.customers import service as customers

    facts = customers.open_account_facts(engine)
    tariffs = (pl.concat([customers.open_accounts_of_mode(engine, m, day) for m in PAYMENT_MODES])
               .filter(pl.col("tariff_id").is_not_null())
               .sort("account_id", "tariff_from", descending=[False, True])
               .unique("account_id", keep="first").select("account_id", "tariff_id"))
    return facts.join(tariffs, on="account_id", how="left")


def months_back(period: Period, n: int) -> Period:
    p = period
    for _ in range(n):
        p = p.prev()
    return p


# -- theft and anomaly warnings --------------------------------------------------------------------

def theft_scan(db: Database, as_of: Period, *, top: int | None = None) -> pl.DataFrame:
    """The inspection worklist (用电检查工单) as of the end of ``as_of``: every account with
    enough history, most suspicious first. Columns: rank, account_id, customer_class, score
    (points 0–100), iforest (0–1), supervised (probability, null without enough inspections),
    reasons (en) and reasons_zh (zh-CN) and the signals (``anomaly.FEATURE_COLUMNS``, the night
    and station columns). Ranked by the supervised probability when a model could be trained,
    else by the points score.

    Besides the bills' kWh it reads the bills' time-of-use lines (the night/day signal) and the
    supply stations' metered supply (``dianfei import stations``; the line-loss signal) through
    billing's and metering's services; without them those signals are null and score nothing."""
    import polars as pl

    since = months_back(as_of, 23)
    history = consumption_history(db.engine, since)
    facts = account_facts(db.engine, as_of.last_day)
    extra = signal_sources(db.engine, since)
    extra["interrupted"] = interrupted_months(db.engine, since, as_of)
    scored = _scored(history, facts, as_of, **extra)
    if scored.height == 0:
        return scored.with_columns(pl.lit(None, dtype=pl.Float64).alias("supervised"),
                                   pl.lit(0, dtype=pl.UInt32).alias("rank"))
    train = _training_rows(db, history, facts, before=as_of.next().first_day, **extra)
    sup = anomaly.supervised_scores(train, scored) if train.height else None
    scored = scored.with_columns(sup if sup is not None
                                 else pl.lit(None, dtype=pl.Float64).alias("supervised"))
    order = ["supervised", "score"] if sup is not None else ["score", "iforest"]
    out = (scored.sort(order, descending=True, nulls_last=True)
           .with_row_index("rank", offset=1))
    return out.head(top) if top is not None else out


def signal_sources(engine: Engine, since: Period) -> dict[str, pl.DataFrame]:
    """The inputs of the night/day and station signals from ``since`` on, each only when there
    is any: ``tou`` (billing's time-of-use lines: account_id, period, valley, kwh), ``supply``
    (metering's station supply: station_id, period, kwh) with ``stations`` (account_id,
    station_id of every account, closed ones too, from customers)."""
    import polars as pl

    from dianfei.billing import service as billing
    from dianfei.customers import service as customers
    from dianfei.metering import service as metering

    out: dict[str, pl.DataFrame] = {}
    tou = billing.tou_energy(engine, str(since))
    if tou.height:
        out["tou"] = tou
    supply = metering.station_supply(engine, str(since))
    if supply.height:
        out["supply"] = supply
        out["stations"] = customers.account_profiles(engine).select(
            "account_id", "station_id").filter(pl.col("station_id").is_not_null())
    return out


def interrupted_months(engine: Engine, since: Period, until: Period) -> pl.DataFrame:
    """account_id, period of the months from ``since`` to ``until`` in which an account's supply
    was off (customers' supply interruptions): no evidence of its use (``anomaly.features``)."""
    from dianfei.customers import service as customers

    return customers.interrupted_periods(engine, since, until)


def station_losses(db: Database, as_of: Period) -> pl.DataFrame:
    """Every supply station's line loss (台区线损) as of the end of ``as_of``
    (``anomaly.station_losses``: loss before and now, the rise, its z-score, the extra energy
    lost a month), from the stored station supply and the 24 months of bills up to ``as_of``;
    empty without station supply."""
    import polars as pl

    since = months_back(as_of, 23)
    extra = signal_sources(db.engine, since)
    if "supply" not in extra:
        return pl.DataFrame(schema={"station_id": pl.String, "loss_before": pl.Float64,
                                    "loss_now": pl.Float64, "rise": pl.Float64,
                                    "rise_z": pl.Float64, "extra_lost_kwh": pl.Float64,
                                    "supply_now": pl.Float64, "months_before": pl.UInt32,
                                    "months_now": pl.UInt32})
    history = consumption_history(db.engine, since)
    return anomaly.station_losses(history, extra["stations"], extra["supply"], as_of)


def _scored(history: pl.DataFrame, facts: pl.DataFrame, as_of: Period,
            **extra: pl.DataFrame) -> pl.DataFrame:
    feats = anomaly.features(history, facts, as_of, tou=extra.get("tou"),
                             supply=extra.get("supply"), stations=extra.get("stations"),
                             interrupted=extra.get("interrupted"))
    return anomaly.score(feats).with_columns(anomaly.isolation_scores(feats))


def _training_rows(db: Database, history: pl.DataFrame, facts: pl.DataFrame,
                   before: date, **extra: pl.DataFrame) -> pl.DataFrame:
    """Signals of every inspected account as of the month before its inspection, with
    ``theft``; only inspections before ``before`` (the scan's own horizon)."""
    import polars as pl

    done = inspections(db).filter(pl.col("inspected_on") < before)
    parts = []
    for (month,), rows in done.with_columns(pl.col("inspected_on").dt.strftime("%Y-%m")
                                            .alias("month")).group_by("month"):
        as_of = Period.parse(str(month)).prev()
        feats = _scored(history, facts, as_of, **extra)
        parts.append(feats.join(rows.select("account_id", (pl.col("outcome") == "theft")
                                            .alias("theft")), on="account_id", how="inner"))
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def record_inspection(session: Session, *, account_id: str, inspected_on: date, outcome: str,
                      clock: Clock, inspector: str | None = None, note: str | None = None) -> int:
    """Record what an on-site inspection found; the same account and day twice is refused."""
    from dianfei.customers import service as customers

    if outcome not in OUTCOMES:
        raise ValidationError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}",
                              where=f"inspection of {account_id} on {inspected_on}")
    customers.customer_of_account(session.connection(), account_id)  # NotFoundError if unknown
    try:
        with session.begin_nested():
            row = session.execute(insert(InspectionOutcome).values(
                account_id=account_id, inspected_on=inspected_on, outcome=outcome,
                inspector=inspector, note=note, recorded_at=clock.now())
                .returning(InspectionOutcome.inspection_id)).scalar_one()
    except IntegrityError:
        raise ConflictError("an inspection of this account on this day is already recorded",
                            where=f"{account_id} {inspected_on}") from None
    return int(row)


def inspections(db: Database) -> pl.DataFrame:
    """Every recorded inspection: account_id, inspected_on, outcome, inspector, note."""
    import polars as pl

    with db.engine.connect() as conn:
        rows = conn.execute(select(InspectionOutcome.account_id, InspectionOutcome.inspected_on,
                                   InspectionOutcome.outcome, InspectionOutcome.inspector,
                                   InspectionOutcome.note)
                            .order_by(InspectionOutcome.inspection_id)).all()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", schema={
        "account_id": pl.String, "inspected_on": pl.Date, "outcome": pl.String,
        "inspector": pl.String, "note": pl.String})


# -- next-bill forecast ----------------------------------------------------------------------------

def forecast_next_bill(db: Database, period: Period, *, accounts: list[str] | None = None,
                       tariff_dir: Path | None = None) -> pl.DataFrame:
    """The forecast of every open account's bill for ``period`` (see ``forecast.forecast_bills``
    for the columns), from the 24 months of bills before it."""
    import polars as pl

    from dianfei.risk import forecast
    from dianfei.tariffs.service import load_catalogue

    # the whole history even for a few accounts: a class's season is learnt from the class
    history = consumption_history(db.engine, months_back(period, 24)).filter(
        pl.col("period") < str(period))
    facts = account_facts(db.engine, period.first_day)
    catalogue = load_catalogue(tariff_dir or db.settings.billing.tariff_dir)
    out = forecast.forecast_bills(history, facts, period, catalogue)
    out = out.join(facts.select("account_id"), on="account_id", how="inner")
    if accounts is not None:
        wanted = pl.Series("account_id", sorted(set(accounts)), dtype=pl.String)
        out = out.filter(pl.col("account_id").is_in(wanted.implode()))
    return out


def store_forecasts(db: Database, period: Period, *, clock: Clock,
                    tariff_dir: Path | None = None) -> dict[str, Any]:
    """Forecast every open account's bill for ``period`` and store it (``bill_forecasts``),
    replacing the period's rows in one transaction: what the ``forecast_store`` job does after a
    bill run, so a bill page reads its forecast by key. The forecaster reads the whole history
    however few accounts are asked for, so all of them at once costs what one does."""
    import polars as pl
    from sqlalchemy import delete

    from dianfei.db.bulk import write_frame
    from dianfei.risk.insight_models import BillForecast

    frame = forecast_next_bill(db, period, tariff_dir=tariff_dir)
    rated = frame.filter(pl.col("amount").is_not_null()).select(
        pl.lit(str(period)).alias("period"), "account_id", "kwh", "amount", "amount_low",
        "amount_high", pl.col("basis").fill_null("").alias("method"),
        pl.lit(clock.now()).alias("computed_at"))
    with db.engine.begin() as conn:
        conn.execute(delete(BillForecast).where(BillForecast.period == str(period)))
        write_frame(conn, "bill_forecasts", rated)
    return {"period": str(period), "stored": rated.height,
            "not_rated": frame.height - rated.height}


def stored_forecasts(engine: Engine, accounts: Sequence[str],
                     period: Period) -> pl.DataFrame | None:
    """The stored forecasts of ``accounts`` for ``period`` (None: the period was never stored,
    so the caller computes them)."""
    import polars as pl

    from dianfei.db.frames import read_frame
    from dianfei.db.lists import any_of

    with engine.connect() as conn:
        member, params = any_of(conn, "account_id", "accounts", accounts)
        found = read_frame(conn, "SELECT account_id, kwh, amount, amount_low, amount_high, "
                           f"method AS basis FROM bill_forecasts WHERE period = :p AND {member}",
                           {"p": str(period), **params},
                           schema={"kwh": pl.Int64, "amount": pl.Int64, "amount_low": pl.Int64,
                                   "amount_high": pl.Int64})
        if found.height:
            return found
        # none of these accounts: was the period stored at all (they were not rated), or never?
        known = conn.execute(text("SELECT 1 FROM bill_forecasts WHERE period = :p LIMIT 1"),
                             {"p": str(period)}).first()
        return found if known is not None else None


def queue_forecast_notices(db: Database, period: Period, *, clock: Clock, channel: str = "sms",
                           tariff_dir: Path | None = None) -> int:
    """Queue the advance notice (``bill_forecast``) for every account whose ``period`` bill is
    forecast unusually high; idempotent (key ``forecast:{account}:{period}``). Returns how many
    notices the forecast asked for (already-queued keys are skipped by notify)."""
    import polars as pl

    from dianfei.core.money import fmt_yuan
    from dianfei.notify import service as notify

    f = forecast_next_bill(db, period, tariff_dir=tariff_dir).filter(pl.col("high"))
    names = account_facts(db.engine, period.first_day).select("account_id", "customer_id", "name")
    rows = f.join(names, on="account_id", how="inner").to_dicts()
    notices = [notify.Notice(
        key=f"forecast:{r['account_id']}:{period}", account_id=r["account_id"],
        customer_id=r["customer_id"], notice="bill_forecast", channel=channel,
        context=_context(r, str(period), fmt_yuan)) for r in rows]
    with db.session() as s:
        notify.enqueue_many(s, notices, clock=clock)
    return len(notices)


def _context(r: dict[str, Any], period: str, fmt_yuan: Any) -> dict[str, str]:
    from decimal import Decimal

    return {"customer_name": str(r["name"] or r["account_id"]), "account_id": r["account_id"],
            "period": period, "amount": fmt_yuan(r["amount"]),
            "amount_low": fmt_yuan(r["amount_low"]), "amount_high": fmt_yuan(r["amount_high"]),
            "usual_amount": fmt_yuan(r["usual_amount"]),
            "kwh": str((Decimal(r["kwh"]) / 100).quantize(Decimal("0.01")))}



# -- segments --------------------------------------------------------------------------------------

def bill_payments(engine: Engine, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(bills: account_id, bill_id, amount, due_on — the live bill debits of the ledger;
    paid: bill_id, paid_in_full_on — the Asia/Shanghai date of the allocation that completed
    each bill), through the ledger's and payments' services."""
    import polars as pl

    from dianfei.ledger import service as ledger
    from dianfei.payments import service as payments

    entries = ledger.entries(engine)
    reversed_ids = entries["reverses_entry_id"].drop_nulls().implode()
    bills = (entries.filter((pl.col("kind") == "bill") & ~pl.col("entry_id").is_in(reversed_ids)
                            & pl.col("due_on").is_not_null())
             .select("account_id", pl.col("reference").alias("bill_id"), "amount", "due_on"))
    allocs = payments.bill_payment_state(engine)
    if allocs.height == 0:
        return bills, pl.DataFrame(schema={"bill_id": pl.String, "paid_in_full_on": pl.Date})
    allocs = (allocs.with_columns(
        pl.col("amount").cast(pl.Int64),
        pl.col("allocated_at").dt.convert_time_zone("Asia/Shanghai").dt.date().alias("day"))
        .filter(pl.col("day") <= as_of)
        .with_columns(pl.col("amount").cum_sum().over("bill_id").alias("cum")))
    paid = (allocs.join(bills.select("bill_id", pl.col("amount").alias("owed")), on="bill_id")
            .filter(pl.col("cum") >= pl.col("owed")).group_by("bill_id")
            .agg(pl.col("day").min().alias("paid_in_full_on")))
    return bills, paid


def segments(db: Database, day: date, *, rules_file: Path | None = None,
             stored_facts: bool = False) -> pl.DataFrame:
    """Every open account's segment on ``day``: account_id, customer_id, customer_class,
    segment, label, why (the rule that matched) and the facts the rules read
    (``segments.COLUMNS``).

    The payment facts are as of ``day`` (bills due and allocations made before it). The
    consumption facts are computed from the bills of the 24 months before ``day``'s month, or,
    with ``stored_facts``, read from the file the daily collections run reads
    (:func:`segment_consumption_facts`, the same figures: computed once per billing state) —
    what ``dianfei kpi --by segment`` does, so that splitting a period by segment does not
    scan the theft signals again."""
    import polars as pl

    from dianfei.risk import segments as seg

    as_of = Period(day.year, day.month).prev()
    accounts = account_facts(db.engine, day)
    if stored_facts:
        usage = segment_consumption_facts(db, day).select(
            "account_id", *[c for c in seg.CONSUMPTION_COLUMNS if c != "bills_12m"])
    else:
        since = months_back(as_of, 23)
        # the months without power say nothing of an account's usual use nor of theft
        history = consumption_history(db.engine, since).filter(
            pl.col("period") <= str(as_of)).join(interrupted_months(db.engine, since, as_of),
                                                 on=["account_id", "period"], how="anti")
        theft = _scored(history, accounts, as_of) if history.height else pl.DataFrame(
            schema={"account_id": pl.String, "score": pl.Float64, "months_low": pl.Int32})
        usage = seg.usual_consumption(history.sort("account_id", "period")).drop(
            "bills_12m").join(theft.select("account_id", pl.col("score").alias("theft_score"),
                                           "months_low"), on="account_id", how="full",
                              coalesce=True)
    bills, paid = bill_payments(db.engine, day)
    facts = seg.facts_with_usage(accounts, seg.payment_facts(bills, paid, day), usage)
    out = seg.assign(facts, seg.load_rules(rules_file))
    return out.join(facts, on="account_id", how="left").join(
        accounts.select("account_id", "customer_id"), on="account_id", how="left").select(
        "account_id", "customer_id", "customer_class", "segment", "label", "why",
        *[c for c in seg.COLUMNS if c != "customer_class"])


#: the version of :func:`segment_consumption_facts`' computation (part of its file's name)
SEGMENT_FACTS_VERSION = 2


def segment_consumption_facts(db: Database, day: date, *, accounts: Sequence[str] | None = None,
                              refresh: bool = False) -> pl.DataFrame:
    """The facts of the segment rules that come from the consumption history, one row per
    account with a bill in the 24 months up to the latest billed period before ``day``:
    account_id, theft_score, months_low (the theft warnings' points score and sustained months),
    usual_kwh, kwh_percentile, bills_12m (``segments.CONSUMPTION_COLUMNS``).

    They change only when bills are issued, yet need the whole book (the theft signals compare
    each account with its class, the percentile ranks it among all): so they are computed once
    per billing state and kept as Parquet under ``DATA_DIR/risk/segment_facts/`` — the daily
    collections run reads the file and pays nothing for history. A file is named by the period
    and billing's stamp (the newest billed period, the last completed bill run), so a bill run
    completed since — or one that was still running — makes it be computed again; so does
    ``refresh``. ``accounts``: only their rows (read from the file without loading the rest)."""
    import hashlib

    import polars as pl

    from dianfei.billing.service import billing_stamp
    from dianfei.risk import segments as seg

    before = Period(day.year, day.month).prev()
    stamp = billing_stamp(db.engine)
    latest = None if stamp is None else Period.parse(stamp[:7])
    as_of = before if latest is None or latest > before else latest
    # the figures' own version too: a file made by an older computation (before the months
    # without power were left out) is not read for a newer one
    key = hashlib.sha256(f"{stamp}:{SEGMENT_FACTS_VERSION}".encode()).hexdigest()[:12]
    path = Path(db.settings.data_dir) / "risk" / "segment_facts" / f"{as_of}-{key}.parquet"
    if path.exists() and not refresh:
        if accounts is None:
            return pl.read_parquet(path)
        return pl.scan_parquet(path).filter(
            pl.col("account_id").is_in(pl.Series(list(accounts), dtype=pl.String).implode())
        ).collect()
    since = months_back(as_of, 23)
    # the months without power say nothing of an account's usual use nor of theft
    history = consumption_history(db.engine, since).filter(
        pl.col("period") <= str(as_of)).join(
        interrupted_months(db.engine, since, as_of), on=["account_id", "period"],
        how="anti").sort("account_id", "period")
    empty = pl.DataFrame(schema={"account_id": pl.String, "theft_score": pl.Float64,
                                 "months_low": pl.Int32})
    theft = empty
    if history.height:
        from dianfei.risk import anomaly

        feats = anomaly.features(history, account_facts(db.engine, day), as_of)
        if feats.height:
            theft = anomaly.score(feats).select("account_id", pl.col("score").alias("theft_score"),
                                                pl.col("months_low").cast(pl.Int32))
    out = (seg.usual_consumption(history)
           .join(theft, on="account_id", how="full", coalesce=True)
           .select("account_id", *seg.CONSUMPTION_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own per writer: two pages (threads of one process) may make it at once
    tmp = path.with_suffix(f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    out.write_parquet(tmp)
    tmp.replace(path)  # readers see the old file or the whole new one, never half of it
    # one file per bill run would pile up (≈ 20 MB each at a million accounts): keep the three
    # newest, enough for a reader that found an older one a moment ago
    kept = sorted(path.parent.glob("*.parquet"), key=lambda f: f.stat().st_mtime_ns)
    for old in kept[:-3]:
        old.unlink(missing_ok=True)
    if accounts is None:
        return out
    return out.filter(pl.col("account_id").is_in(pl.Series(list(accounts), dtype=pl.String)
                                                  .implode()))


def assign_segments(facts: pl.DataFrame, *, rules_file: Path | None = None) -> pl.DataFrame:
    """account_id, segment, label, why of each row of ``facts`` (account_id and any of
    ``segments.COLUMNS``; a missing column or a null is 'not known', so a condition on it does
    not hold) by the ordered rules of ``rules_file`` (default: the packaged segments.toml)."""
    from dianfei.risk import segments as seg

    return seg.assign(facts, seg.load_rules(rules_file))


def segment_labels(rules_file: Path | None = None) -> dict[str, str]:
    """segment → its label (zh-CN and en), from the first rule of each segment."""
    from dianfei.risk import segments as seg

    out: dict[str, str] = {}
    for r in seg.load_rules(rules_file):
        out.setdefault(r.segment, r.label)
    return out


# -- strategy experiments --------------------------------------------------------------------------

def create_experiment(session: Session, *, experiment_id: str, description: str,
                      arms: list[tuple[str, float]], seed: int, started_on: date, clock: Clock,
                      accounts: list[str]) -> pl.DataFrame:
    """Assign ``accounts`` at random to ``arms`` (``experiments.assign``) and persist the
    experiment and every assignment; an id used before is refused. Returns the assignment."""
    import json

    import polars as pl

    from dianfei.db.bulk import write_frame
    from dianfei.risk import experiments
    from dianfei.risk.insight_models import Experiment

    if not experiments.ARM_ID.match(experiment_id):
        raise ValidationError("experiment id: letters, digits, '-' and '_' (≤ 64)",
                              where=repr(experiment_id))
    if not accounts:
        raise ValidationError("no accounts to assign", where=f"experiment {experiment_id}")
    assigned = experiments.assign(pl.Series("account_id", accounts, dtype=pl.String), arms, seed)
    try:
        with session.begin_nested():
            session.execute(insert(Experiment).values(
                experiment_id=experiment_id, description=description,
                arms=json.dumps([{"arm": a, "share": s} for a, s in arms]), seed=seed,
                started_on=started_on, created_at=clock.now()))
    except IntegrityError:
        raise ConflictError("an experiment with this id exists already",
                            where=experiment_id) from None
    write_frame(session.connection(), "experiment_assignments",
                assigned.select(pl.lit(experiment_id).alias("experiment_id"), "account_id",
                                "arm"))
    return assigned


def experiment(db: Database, experiment_id: str) -> dict[str, Any]:
    """The experiment's row: experiment_id, description, arms [(arm, share)], seed, started_on."""
    import json

    from dianfei.core.errors import NotFoundError
    from dianfei.risk.insight_models import Experiment

    with db.session() as s:
        row = s.get(Experiment, experiment_id)
        if row is None:
            raise NotFoundError(f"no experiment {experiment_id!r}")
        return {"experiment_id": row.experiment_id, "description": row.description,
                "arms": [(a["arm"], float(a["share"])) for a in json.loads(row.arms)],
                "seed": int(row.seed), "started_on": row.started_on}


def list_experiments(db: Database) -> list[dict[str, Any]]:
    """Every experiment, newest start first: experiment_id, description, arms [(arm, share)],
    seed, started_on, accounts (how many are assigned)."""
    import json

    from sqlalchemy import func, select

    from dianfei.risk.insight_models import Experiment, ExperimentAssignment

    with db.session() as s:
        sizes = {str(e): int(n) for e, n in s.execute(
            select(ExperimentAssignment.experiment_id, func.count())
            .group_by(ExperimentAssignment.experiment_id)).all()}
        rows = s.scalars(select(Experiment).order_by(Experiment.started_on.desc(),
                                                     Experiment.experiment_id)).all()
        return [{"experiment_id": r.experiment_id, "description": r.description,
                 "arms": [(a["arm"], float(a["share"])) for a in json.loads(r.arms)],
                 "seed": int(r.seed), "started_on": r.started_on,
                 "accounts": int(sizes.get(r.experiment_id, 0))} for r in rows]


def experiment_arms(engine: Engine, experiment_id: str) -> pl.DataFrame:
    """account_id, arm of every account in the experiment — what collections reads to give
    each account its arm's ladder or treatment."""
    import polars as pl

    from dianfei.db.frames import read_frame

    return read_frame(engine, "SELECT account_id, arm FROM experiment_assignments "
                      "WHERE experiment_id = :e ORDER BY account_id", {"e": experiment_id},
                      schema={"account_id": pl.String, "arm": pl.String})


def experiment_report(db: Database, experiment_id: str, as_of: date) -> dict[str, Any]:
    """The seed's KPIs per arm with 95 % intervals (``experiments.arm_kpis``) over the bills
    issued from the experiment's start to ``as_of``; contacts are the notices notify sent to
    the experiment's accounts since the start, priced by ``experiments.CONTACT_COST_FEN``."""
    import polars as pl

    from dianfei.notify import service as notify
    from dianfei.risk import experiments

    info = experiment(db, experiment_id)
    arms = experiment_arms(db.engine, experiment_id)
    bills, paid_full = bill_payments(db.engine, as_of)
    collected = bill_collected(db.engine, as_of)
    start = info["started_on"]
    b = (bills.join(arms, on="account_id", how="inner")
         .filter(pl.col("due_on") >= start)
         .join(paid_full, on="bill_id", how="left")
         .join(collected, on="bill_id", how="left")
         .join(bill_issue_days(db.engine), on="bill_id", how="left")
         .with_columns(pl.col("collected").fill_null(0))
         .filter(pl.col("issued_on").is_not_null() & (pl.col("issued_on") <= as_of)))
    sent = [d for d in notify.deliveries(db) if d.status in ("sent", "delivered")
            and d.sent_at is not None and start <= d.sent_at.date() <= as_of]
    contacts = pl.DataFrame(
        {"account_id": [d.account_id for d in sent],
         "cost": [experiments.CONTACT_COST_FEN.get(d.channel, 0) for d in sent]},
        schema={"account_id": pl.String, "cost": pl.Int64})
    contacts = contacts.join(arms, on="account_id", how="inner")
    report = experiments.arm_kpis(b, contacts, as_of)
    report["experiment_id"] = experiment_id
    report["started_on"] = start.isoformat()
    return report


def bill_collected(engine: Engine, as_of: date) -> pl.DataFrame:
    """bill_id, collected: fen allocated to each bill by payments up to ``as_of`` (Asia/Shanghai)."""
    import polars as pl

    from dianfei.payments import service as payments

    allocs = payments.bill_payment_state(engine)
    if allocs.height == 0:
        return pl.DataFrame(schema={"bill_id": pl.String, "collected": pl.Int64})
    return (allocs.filter(pl.col("allocated_at").dt.convert_time_zone("Asia/Shanghai").dt.date()
                          <= as_of)
            .group_by("bill_id").agg(pl.col("amount").cast(pl.Int64).sum().alias("collected")))


def bill_issue_days(engine: Engine) -> pl.DataFrame:
    """bill_id, issued_on: the business date of each live bill's ledger debit."""
    import polars as pl

    from dianfei.ledger import service as ledger

    e = ledger.entries(engine)
    return e.filter(pl.col("kind") == "bill").group_by("reference").agg(
        pl.col("business_date").min().alias("issued_on")).rename({"reference": "bill_id"})


def bill_document_forecast(engine: Engine, accounts: Sequence[str],
                           period: Period) -> dict[str, dict[str, str]]:
    """The forecast as the bill document asks for it (billing's ``ForecastProvider``): for the
    bill of ``period``, each account's NEXT bill — {"period", "kwh", "amount", "low", "high",
    "method"} as strings (kWh with two places, yuan with two places). Accounts the forecaster
    cannot rate (no history, a two-part tariff without capacity) are left out: their bill shows
    no forecast rather than a guess."""
    from dianfei.core.money import fmt_qty, fmt_yuan
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import Database

    nxt = period.next()
    frame = stored_forecasts(engine, accounts, nxt)
    if frame is None:  # not stored yet (no forecast_store run since the bill run): computed
        frame = forecast_next_bill(Database(load_settings(), engine), nxt, accounts=list(accounts))
    out: dict[str, dict[str, str]] = {}
    for r in frame.iter_rows(named=True):
        if r["amount"] is None:
            continue
        item = {"period": str(nxt), "kwh": fmt_qty(int(r["kwh"])), "amount": fmt_yuan(int(r["amount"])),
                "method": str(r.get("basis") or "")}
        if r.get("amount_low") is not None and r.get("amount_high") is not None:
            item["low"], item["high"] = fmt_yuan(int(r["amount_low"])), fmt_yuan(int(r["amount_high"]))
        out[str(r["account_id"])] = item
    return out
