"""Plausibility of register reads (示数合理性校验): hold a read no meter could have registered.

A read is judged against the meter's previous read of the same register that is not itself
held (source other than an estimate), with the ``[vee] implausible_*`` settings:

* **register range**: it implies more than half the register's range (10**digits kWh) — a read
  that went backwards, or a value no rollover explains;
* **capacity**: it implies more than ``implausible_max_kw`` × the hours since the previous read
  (at least one hour) — the most a direct meter registers; for an account whose contracted
  ``capacity_kva`` × ``implausible_capacity_factor`` / multiplier is higher, that;
* **history**: with at least ``implausible_min_history_days`` of history, it implies more than
  ``implausible_history_factor`` × the meter's usual daily usage (per day since the previous
  read, at least one day), and more than ``implausible_min_kwh``. In service the usual daily
  usage is the average from the earliest plausible read of the last ``implausible_history_days``
  to the previous one (two index seeks per meter, whatever the read frequency); :func:`judge`
  takes the highest per-day rate between the consecutive reads it is given.

A held read stays stored — what the meter (or whoever published it) said is kept — but is a
finding ``implausible_read`` in ``vee_findings`` (the VEE worklist, ``vee findings --rule
implausible_read``) and every register read of the meter at that instant is left out of what a
prepaid balance and a cut-off are computed from
(:func:`dianfei.metering.repository.reads_of_mode_between`), so it can never warn, cut off or
trip a customer by itself. The MQTT listener judges every reading it stores before it
acknowledges the message; ``meters poll`` judges what it stores.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from dianfei.db.frames import read_frame
from dianfei.db.lists import any_of
from dianfei.metering.vee import names, repository
from dianfei.metering.vee.config import VeeConfig
from dianfei.metering.vee.rules import FINDING_SCHEMA

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database

RULE: Final = names.HELD_RULE
#: cumulative energy registers (demand and kvarh are judged elsewhere or not at all)
ENERGY_REGISTERS: Final = ("total", "sharp", "peak", "flat", "valley")
KEY: Final = ("meter_id", "read_at", "register")


def _kwh(hundredths: int | float) -> str:
    return f"{Decimal(int(hundredths)) / 100:.2f}"


def judge(keys: pl.DataFrame, history: pl.DataFrame, meters: pl.DataFrame,
          cfg: VeeConfig) -> pl.DataFrame:
    """Findings (:data:`FINDING_SCHEMA`) for the reads named by ``keys`` (meter_id, read_at,
    register). ``history``: meter_id, register, read_at, value (0.01 kWh), held (0/1) — the
    stored reads of those meters over the history window, the judged ones included;
    ``meters``: meter_id, multiplier, digits, capacity_kva (the service point's, in 0.01 kVA).
    Pure: no storage."""
    new = history.join(keys, on=list(KEY), how="semi").filter(
        pl.col("register").is_in(list(ENERGY_REGISTERS))).sort("read_at")
    if new.height == 0:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    base = (history.filter(pl.col("held") == 0).join(keys, on=list(KEY), how="anti")
            .sort("meter_id", "register", "read_at"))
    step = pl.col("value") - pl.col("value").shift(1).over("meter_id", "register")
    days = ((pl.col("read_at") - pl.col("read_at").shift(1).over("meter_id", "register"))
            .dt.total_seconds() / 86400)
    usual = (base.with_columns(step.alias("step"), days.alias("days"))
             .filter(pl.col("step") >= 0, pl.col("days") > 0)
             .group_by("meter_id", "register")
             .agg((pl.col("step") / pl.max_horizontal(pl.col("days"), pl.lit(1.0))).max()
                  .alias("max_daily"))
             .join(base.group_by("meter_id", "register").agg(
                 ((pl.col("read_at").max() - pl.col("read_at").min()).dt.total_seconds() / 86400)
                 .alias("span_days")), on=["meter_id", "register"]))
    prev = base.select("meter_id", "register", pl.col("read_at").alias("prev_at"),
                       pl.col("value").alias("prev")).sort("prev_at")
    q = (new.join_asof(prev, left_on="read_at", right_on="prev_at", by=["meter_id", "register"],
                       strategy="backward", allow_exact_matches=False, check_sortedness=False)
         .filter(pl.col("prev").is_not_null())
         .join(meters, on="meter_id", how="left")
         .join(usual, on=["meter_id", "register"], how="left"))
    if q.height == 0:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    wrap = pl.lit(10, pl.Int64).pow(pl.col("digits").fill_null(6).cast(pl.Int64)) * 100
    diff = pl.col("value") - pl.col("prev")
    hours = (pl.col("read_at") - pl.col("prev_at")).dt.total_seconds() / 3600
    kw = pl.max_horizontal(
        pl.lit(cfg.implausible_max_kw),
        (pl.col("capacity_kva").cast(pl.Float64) / 100 * cfg.implausible_capacity_factor
         / pl.col("multiplier").fill_null(1).clip(lower_bound=1)).fill_null(0.0))
    q = q.with_columns(
        pl.when(diff >= 0).then(diff).otherwise(diff + wrap).alias("qty"), wrap.alias("wrap"),
        hours.alias("hours"), kw.alias("kw"))
    q = q.with_columns(
        (pl.col("kw") * pl.max_horizontal(pl.col("hours"), pl.lit(1.0)) * 100).alias("cap"),
        (pl.lit(cfg.implausible_history_factor) * pl.col("max_daily")
         * pl.max_horizontal(pl.col("hours") / 24, pl.lit(1.0))).alias("hist_limit"))
    over_range = pl.col("qty") * 2 >= pl.col("wrap")
    over_cap = pl.col("qty") > pl.col("cap")
    over_history = ((pl.col("span_days") >= cfg.implausible_min_history_days)
                    & (pl.col("qty") > pl.col("hist_limit"))
                    & (pl.col("qty") > cfg.implausible_min_kwh * 100)).fill_null(False)
    flagged = q.filter(over_range | over_cap | over_history).with_columns(
        over_range.alias("r"), over_cap.alias("c"), over_history.alias("h"))
    rows = []
    for r in flagged.iter_rows(named=True):
        since = (f"{_kwh(r['value'])} kWh after {_kwh(r['prev'])} kWh at "
                 f"{r['prev_at'].astimezone(UTC).isoformat()}")
        if r["r"]:
            why = (f"reading {since} implies {_kwh(r['qty'])} kWh, more than half the register's "
                   f"range ({r['digits']} digits): a read that went backwards or a forged value")
        elif r["c"]:
            why = (f"reading {since} implies {_kwh(r['qty'])} kWh in {r['hours']:.2f} h, more than "
                   f"the meter can register ({r['kw']:g} kW × {max(r['hours'], 1.0):.2f} h = "
                   f"{_kwh(r['cap'])} kWh)")
        else:
            why = (f"reading {since} implies {_kwh(r['qty'])} kWh, above "
                   f"{cfg.implausible_history_factor:g} × the meter's usual daily usage "
                   f"({_kwh(r['max_daily'])} kWh a day in the last "
                   f"{cfg.implausible_history_days} days)")
        rows.append({"rule": RULE, "meter_id": r["meter_id"], "ts": r["read_at"],
                     "ref": r["register"], "value_wh": int(r["value"]) * 10,
                     "detail": why + "; held for a person: not used for a prepaid balance"})
    return pl.DataFrame(rows, schema=FINDING_SCHEMA)


_HELD = f"NOT {names.held_read('r2.meter_id', 'r2.read_at')}"


def _ids(conn: Connection, ids: list[str]) -> tuple[str, dict[str, Any]]:
    """A one-column table ``k(m)`` of meter ids, bound as one parameter."""
    if conn.dialect.name == "postgresql":
        return "(SELECT unnest(CAST(:ids AS TEXT[])) AS m) k", {"ids": ids}
    return "(SELECT value AS m FROM json_each(:ids)) k", {"ids": json.dumps(ids)}


def _history(db: Database, keys: pl.DataFrame, days: int) -> pl.DataFrame:
    """What :func:`judge` needs, and no more (a meter read every 15 minutes has 8,640 reads in 90
    days): the judged reads, and per meter and register the latest plausible read before its
    first judged one and the earliest plausible read in the ``days`` before that — two index
    seeks each. The history rule then sees the meter's usage per day over that window."""
    schema = {"meter_id": pl.String, "register": pl.String, "value": pl.Int64}
    cols = "r.meter_id, r.register, r.read_at, r.value"
    regs = ", ".join(f"'{r}'" for r in ENERGY_REGISTERS)
    first = keys.group_by("meter_id", "register").agg(pl.col("read_at").min().alias("t0"))
    parts = []
    with db.engine.connect() as conn:
        member, params = any_of(conn, "r.meter_id", "meters", sorted(set(keys["meter_id"])))
        parts.append(read_frame(
            conn, f"SELECT {cols} FROM register_reads r WHERE {member} AND r.read_at >= :lo "
            f"AND r.read_at <= :hi AND r.register IN ({regs})",
            {**params, "lo": keys["read_at"].min(), "hi": keys["read_at"].max()},
            instants=("read_at",), schema=schema).join(keys, on=list(KEY), how="semi"))
        for (register, t0), group in first.group_by("register", "t0"):
            table, bound = _ids(conn, sorted(group["meter_id"].to_list()))
            for order, window in (("DESC", "r2.read_at < :t"),
                                  ("ASC", "r2.read_at >= :lo AND r2.read_at < :t")):
                parts.append(read_frame(
                    conn, f"SELECT {cols} FROM register_reads r WHERE r.id IN (SELECT (SELECT "
                    "r2.id FROM register_reads r2 WHERE r2.meter_id = k.m AND r2.register = :reg "
                    f"AND {window} AND r2.source <> 'estimated' AND {_HELD} "
                    f"ORDER BY r2.read_at {order} LIMIT 1) FROM {table})",
                    {**bound, "reg": register, "t": t0, "lo": t0 - timedelta(days=days)},
                    instants=("read_at",), schema=schema))
    return (pl.concat([p.select("meter_id", "register", "read_at", "value") for p in parts])
            .unique().with_columns(pl.lit(0, pl.Int64).alias("held")))


def _meters(db: Database, meter_ids: list[str]) -> pl.DataFrame:
    with db.engine.connect() as conn:
        member, params = any_of(conn, "m.meter_id", "meters", meter_ids)
        return read_frame(
            conn, "SELECT m.meter_id, m.multiplier, m.digits, s.capacity_kva FROM meters m "
            "LEFT JOIN service_points s ON s.service_point_id = m.service_point_id "
            f"WHERE {member}", params,
            schema={"meter_id": pl.String, "multiplier": pl.Int64, "digits": pl.Int64,
                    "capacity_kva": pl.Int64})


def hold_implausible(db: Database, clock: Clock, keys: pl.DataFrame) -> int:
    """Judge the stored reads named by ``keys`` (meter_id, read_at, register) and put the
    implausible ones on the VEE worklist (idempotent). Returns how many of them are held."""
    keys = keys.select(*KEY).filter(pl.col("register").is_in(list(ENERGY_REGISTERS))).unique()
    if keys.height == 0:
        return 0
    cfg = VeeConfig.from_raw(db.settings.raw)
    meter_ids = sorted(keys["meter_id"].unique().to_list())
    found = judge(keys, _history(db, keys, cfg.implausible_history_days), _meters(db, meter_ids), cfg)
    if found.height == 0:
        return 0
    run_id = f"H{clock.now().astimezone(UTC):%Y%m%d%H%M%S}{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as conn:
        repository.insert_new(conn, "vee_findings", found.with_columns(pl.lit(run_id).alias("run_id")),
                              ("rule", "meter_id", "ts", "ref"))
    return found.height


def held_findings(db: Database) -> pl.DataFrame:
    """Every stored ``implausible_read`` finding (:data:`FINDING_SCHEMA`)."""
    return (repository.stored_findings(db).filter(pl.col("rule") == RULE)
            .select(list(FINDING_SCHEMA)))


DECISIONS: Final = {"release": "released", "reject": "rejected"}

#: the held reads' listing: one row per (meter, instant), those awaiting a decision first
_HELD_PAGE = (
    "SELECT f.meter_id, f.ts, min(f.ref), count(*), max(f.value_wh), min(f.detail), "
    "r.decision, r.decided_by, r.decided_at, r.reason "
    "FROM vee_findings f LEFT JOIN vee_read_reviews r "
    "ON r.meter_id = f.meter_id AND r.read_at = f.ts "
    "WHERE f.rule = :rule{where} "
    "GROUP BY f.meter_id, f.ts, r.decision, r.decided_by, r.decided_at, r.reason "
    "ORDER BY CASE WHEN r.decision IS NULL THEN 0 ELSE 1 END, f.ts DESC, f.meter_id "
    "LIMIT :limit OFFSET :offset")
_HELD_COUNT = (
    "SELECT count(*) FROM (SELECT DISTINCT f.meter_id, f.ts FROM vee_findings f "
    "LEFT JOIN vee_read_reviews r ON r.meter_id = f.meter_id AND r.read_at = f.ts "
    "WHERE f.rule = :rule{where}) k")


def held_reads(db: Database, offset: int, limit: int, *, awaiting_only: bool = False,
               meter_id: str | None = None, read_at: datetime | None = None
               ) -> tuple[list[dict[str, Any]], int]:
    """One page of the reads held as implausible — (rows, total) — those awaiting a decision
    first, then newest first (``meter_id`` and ``read_at`` narrow it to one meter or read):
    ``meter_id``, ``read_at`` (UTC), ``registers`` (how many of the meter's registers at that
    instant were held), ``register`` (the first), ``value_wh`` (the highest held value,
    watt-hours), ``detail`` (why, in words), and the decision once made: ``decision``
    (released/rejected or None), ``decided_by``, ``decided_at``, ``reason``."""
    from sqlalchemy import text

    from dianfei.db.frames import bind_params

    where = ""
    filters: dict[str, Any] = {"rule": RULE}
    if awaiting_only:
        where += " AND r.decision IS NULL"
    if meter_id is not None:
        where += " AND f.meter_id = :meter_id"
        filters["meter_id"] = meter_id
    if read_at is not None:
        where += " AND f.ts = :ts"
        filters["ts"] = read_at.astimezone(UTC)
    with db.engine.connect() as conn:
        bound = bind_params(conn, filters)
        total = int(conn.execute(text(_HELD_COUNT.format(where=where)), bound).scalar_one())
        found = conn.execute(text(_HELD_PAGE.format(where=where)),
                             {**bound, "limit": int(limit), "offset": int(offset)}).all()
    rows = [{"meter_id": str(r[0]), "read_at": _utc(r[1]), "register": str(r[2]),
             "registers": int(r[3]), "value_wh": int(r[4]) if r[4] is not None else None,
             "detail": str(r[5]), "decision": r[6], "decided_by": r[7],
             "decided_at": _utc(r[8]) if r[8] is not None else None, "reason": r[9]}
            for r in found]
    return rows, total


def _utc(value: Any) -> datetime:
    """An instant read by a text query (SQLite gives text, PostgreSQL a datetime), in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def review_held(db: Database, clock: Clock, *, meter_id: str, read_at: datetime, decision: str,
                by: str, reason: str) -> dict[str, Any]:
    """A person's decision on the read of ``meter_id`` held at ``read_at``: ``release`` (the
    meter did register it: it counts from now on, for a prepaid balance too) or ``reject`` (it
    stays out). Recorded once, with an audit record, in one transaction; the same decision again
    changes nothing, the other one is refused (a released read may already have moved a
    balance)."""
    from sqlalchemy import insert, select

    from dianfei.audit import service as audit
    from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
    from dianfei.metering.vee.models import VeeFinding, VeeReadReview

    if decision not in DECISIONS:
        raise ValidationError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not by.strip():
        raise ValidationError("who decides (by) is required")
    if not reason.strip():
        raise ValidationError("a reason is required: it is kept in the audit record")
    if read_at.tzinfo is None:
        raise ValidationError(f"the read's instant needs a UTC offset, got {read_at.isoformat()}")
    status = DECISIONS[decision]
    with db.engine.begin() as conn:
        held = conn.execute(select(VeeFinding.ref).where(
            VeeFinding.rule == RULE, VeeFinding.meter_id == meter_id, VeeFinding.ts == read_at)
            .order_by(VeeFinding.ref)).scalars().all()
        if not held:
            raise NotFoundError(f"no held read of meter {meter_id} at {read_at.isoformat()} "
                                "(vee findings --rule implausible_read lists them)")
        done = conn.execute(select(VeeReadReview.decision, VeeReadReview.decided_by,
                                   VeeReadReview.reason).where(
            VeeReadReview.meter_id == meter_id, VeeReadReview.read_at == read_at)).first()
        if done is not None:
            if done[0] != status:
                raise ConflictError(
                    f"the read of meter {meter_id} at {read_at.isoformat()} was already "
                    f"{done[0]} by {done[1]}: a decision is not changed")
            return {"meter_id": meter_id, "read_at": read_at, "decision": done[0],
                    "decided_by": done[1], "reason": done[2], "recorded": False}
        conn.execute(insert(VeeReadReview).values(
            meter_id=meter_id, read_at=read_at, decision=status, reason=reason, decided_by=by,
            decided_at=clock.now()))
        audit.record(conn, f"read.{status}", meter_id, {
            "read_at": read_at.astimezone(UTC).isoformat(), "registers": list(held),
            "by": by, "reason": reason})
    return {"meter_id": meter_id, "read_at": read_at, "decision": status, "decided_by": by,
            "reason": reason, "recorded": True}
