"""Scheduled polling of many meters over DL/T 645 (定时远程抄表), into the import path.

A poll reads every meter that has a communication address (or a given list) through the
gateway, with at most ``concurrency`` requests outstanding: each of ``concurrency`` workers holds
one TCP connection and takes the next meter from a shared queue, so a thousand meters cost a
handful of connections, not a thousand. A meter is asked for the registers the meters table says
it has (``total`` and, for time-of-use meters, ``sharp/peak/flat/valley`` — in one block read
where the meter supports it).

The readings then go through :func:`dianfei.metering.ingest.ingest_reads`, the same path as a
``reads.csv`` import: one batch, unknown meters and conflicting values rejected with reasons,
replays counted as duplicates. A meter that could not be read is never silently dropped: it is
in ``failures`` with the reason (timeout, damaged reply, the meter's refusal, no address on file),
and a register the meter refused is in ``unavailable``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from dianfei.core.clock import Clock
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.db.lists import rows_in
from dianfei.metering.dlt645.client import Dlt645Client, Dlt645Config, MeterReading

if TYPE_CHECKING:
    from dianfei.db.engine import Database

#: registers a DL/T 645 poll can fill (forward active energy); others (kvarh, demand) are skipped
POLLABLE = ("total", "sharp", "peak", "flat", "valley")


@dataclass(frozen=True)
class PollTarget:
    meter_id: str
    address: str
    registers: tuple[str, ...] = ("total",)
    #: the meter's gateway (None: the configured one)
    gateway_id: str | None = None


@dataclass(frozen=True)
class PollFailure:
    meter_id: str
    address: str | None
    reason: str
    #: a line fault (try again next round) rather than the meter's refusal or bad master data
    retryable: bool


@dataclass
class PollResult:
    meters: int = 0
    succeeded: int = 0
    failed: int = 0
    reads: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    batch_id: str | None = None
    retries: int = 0
    elapsed_s: float = 0.0
    failures: list[PollFailure] = field(default_factory=list)
    #: (meter_id, register, reason) of registers a meter refused
    unavailable: list[tuple[str, str, str]] = field(default_factory=list)
    #: with ``check_clock``: meters whose clock was read, and the checks stored
    clock_checks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"meters": self.meters, "succeeded": self.succeeded, "failed": self.failed,
                "reads": self.reads, "accepted": self.accepted, "rejected": self.rejected,
                "duplicates": self.duplicates, "batch_id": self.batch_id, "retries": self.retries,
                "elapsed_s": round(self.elapsed_s, 3),
                "failures": [{"meter_id": x.meter_id, "address": x.address, "reason": x.reason,
                              "retryable": x.retryable} for x in self.failures],
                "unavailable": [{"meter_id": m, "register": r, "reason": why}
                                for m, r, why in self.unavailable],
                "clock_checks": self.clock_checks}


def poll_targets_from_db(db: Database, meter_ids: list[str] | None = None,
                         ) -> tuple[list[PollTarget], list[PollFailure]]:
    """The meters to poll and, for a given list, the ones that cannot be (unknown, no address)."""
    sql = "SELECT meter_id, comm_address, registers, gateway_id FROM meters"
    with db.engine.connect() as conn:
        if meter_ids is None:
            rows = conn.execute(text(sql + " WHERE comm_address IS NOT NULL AND removed_on IS NULL "
                                           "ORDER BY meter_id")).all()
        else:
            rows = rows_in(conn, sql + " WHERE {member}", "meter_id", meter_ids)
    found = {str(r[0]): r for r in rows}
    targets, failures = [], []
    for meter_id in (meter_ids if meter_ids is not None else list(found)):
        row = found.get(meter_id)
        if row is None:
            failures.append(PollFailure(meter_id, None, f"meter {meter_id} not found", False))
        elif not row[1]:
            failures.append(PollFailure(meter_id, None, "no communication address (comm_address)", False))
        else:
            wanted = [r.strip() for r in str(row[2] or "total").split(",")]
            registers = tuple(r for r in POLLABLE if r in wanted) or ("total",)
            targets.append(PollTarget(meter_id, str(row[1]), registers,
                                      str(row[3]) if row[3] else None))
    return targets, failures


async def read_targets(cfg: Dlt645Config, targets: list[PollTarget], *, concurrency: int, clock: Clock,
                       check_clock: bool = False,
                       ) -> tuple[list[tuple[PollTarget, MeterReading]], list[PollFailure], int]:
    """Read every target with at most ``concurrency`` connections; never raises for one meter.
    ``check_clock``: also read each meter's own clock into ``reading.meter_time`` (a meter
    without one lists ``clock`` under unavailable)."""
    if concurrency < 1:
        raise ValidationError("--concurrency must be at least 1")
    host, port = cfg.gateway()
    todo: asyncio.Queue[PollTarget] = asyncio.Queue()
    for t in targets:
        todo.put_nowait(t)
    readings: list[tuple[PollTarget, MeterReading]] = []
    failures: list[PollFailure] = []
    retries = 0

    async def worker() -> None:
        nonlocal retries
        async with Dlt645Client(host, port, timeout_s=cfg.timeout_s, retries=cfg.retries,
                                preamble=cfg.preamble) as client:
            while True:
                try:
                    target = todo.get_nowait()
                except asyncio.QueueEmpty:
                    break
                try:
                    reading = await client.read_meter(target.address, target.registers, clock=clock,
                                                      block=True)
                    if check_clock:
                        await _read_clock(client, reading, clock)
                    readings.append((target, reading))
                except DianfeiError as exc:
                    failures.append(PollFailure(target.meter_id, target.address, exc.message,
                                                exc.retryable))
            retries += client.retried

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(targets))))))
    return readings, failures, retries


async def _read_clock(client: Dlt645Client, reading: MeterReading, clock: Clock) -> None:
    """The meter's clock (DI 04000101/04000102) and the instant its reply arrived."""
    try:
        reading.meter_time = await client.read_clock(reading.address, retries=min(client.retries, 1))
        reading.received_at = clock.now().replace(microsecond=0)
    except DianfeiError as exc:
        reading.unavailable["clock"] = exc.message


async def read_routed(cfgs: dict[str | None, Dlt645Config], targets: list[PollTarget], *,
                      concurrency: int, clock: Clock, check_clock: bool = False,
                      ) -> tuple[list[tuple[PollTarget, MeterReading]], list[PollFailure], int]:
    """Read the targets through their own gateways at once, ``concurrency`` connections each
    (gateways are separate buses: one slow concentrator does not hold up the others)."""
    groups: dict[str | None, list[PollTarget]] = {}
    for t in targets:
        groups.setdefault(t.gateway_id, []).append(t)
    done = await asyncio.gather(*(read_targets(cfgs[g], ts, concurrency=concurrency, clock=clock,
                                               check_clock=check_clock)
                                  for g, ts in groups.items()))
    readings = [r for part in done for r in part[0]]
    failures = [x for part in done for x in part[1]]
    return readings, failures, sum(part[2] for part in done)


def poll(db: Database, cfg: Dlt645Config, *, clock: Clock, meter_ids: list[str] | None = None,
         concurrency: int = 16, check_clock: bool = False) -> PollResult:
    """One polling round: read the meters through their gateways (``cfg``: the configured
    one, for meters without their own), store the readings through the import path and, with
    ``check_clock``, each meter's clock against the receive time (``meters drift``)."""
    import polars as pl

    from dianfei.metering.clocks import store_clock_checks
    from dianfei.metering.control import run_sync
    from dianfei.metering.gateways import config_for, gateway_label, gateways
    from dianfei.metering.ingest import ingest_reads
    from dianfei.metering.vee.plausibility import hold_implausible

    started = time.monotonic()
    if concurrency < 1:
        raise ValidationError("--concurrency must be at least 1")
    on_file = gateways(db)
    if not on_file:
        cfg.gateway()  # one gateway, the configured one: refuse early when there is none
    targets, failures = poll_targets_from_db(db, meter_ids)
    cfgs: dict[str | None, Dlt645Config] = {}
    routed = []
    for t in targets:
        if t.gateway_id is None:
            if None not in cfgs:
                cfg.gateway()  # meters without a gateway of their own need the configured one
                cfgs[None] = cfg
        elif t.gateway_id not in on_file:
            failures.append(PollFailure(t.meter_id, t.address, f"meter {t.meter_id} names gateway "
                                        f"{t.gateway_id}, which is not on file", False))
            continue
        else:
            cfgs.setdefault(t.gateway_id, config_for(cfg, on_file[t.gateway_id]))
        routed.append(t)
    targets = routed
    result = PollResult(meters=len(targets) + len(failures))
    readings, read_failures, result.retries = run_sync(
        lambda: read_routed(cfgs, targets, concurrency=concurrency, clock=clock,
                            check_clock=check_clock))
    failures += read_failures
    ends = sorted({f"{c.host}:{c.port}" for c in cfgs.values()})
    origin = f"dlt645://{ends[0]}" if len(ends) == 1 else f"dlt645 ({len(ends)} gateways)"
    rows: dict[str, list[Any]] = {"meter_id": [], "read_at": [], "register": [], "value": []}
    for target, reading in readings:
        for register, value in reading.values.items():
            rows["meter_id"].append(target.meter_id)
            rows["read_at"].append(reading.read_at)
            rows["register"].append(register)
            rows["value"].append(f"{value:.2f}")
        result.unavailable += [(target.meter_id, r, why) for r, why in reading.unavailable.items()]
    result.reads = len(rows["meter_id"])
    if result.reads:
        frame = pl.DataFrame({
            "meter_id": pl.Series(rows["meter_id"], dtype=pl.String),
            "read_at": pl.Series(rows["read_at"], dtype=pl.Datetime("us", "UTC")),
            "register": pl.Series(rows["register"], dtype=pl.String),
            "value": pl.Series(rows["value"], dtype=pl.String),
            "source": pl.Series(["ami"] * result.reads, dtype=pl.String)})
        stored = ingest_reads(db, frame, origin=origin, clock=clock)
        result.accepted, result.rejected, result.duplicates = (stored.accepted, stored.rejected,
                                                               stored.duplicates)
        # a read no meter could register (a spoofed gateway, a corrupt frame) is held for a
        # person and never moves a prepaid balance (metering/vee/plausibility.py)
        hold_implausible(db, clock, frame.select("meter_id", "read_at", "register"))
        result.batch_id = stored.batch_id
    checks = [(t.meter_id, r.received_at, r.meter_time, gateway_label(t.gateway_id))
              for t, r in readings if r.meter_time is not None and r.received_at is not None]
    if checks:
        result.clock_checks = store_clock_checks(db, checks)
    result.succeeded = len(readings)
    result.failures = sorted(failures, key=lambda x: x.meter_id)
    result.failed = len(result.failures)
    result.elapsed_s = time.monotonic() - started
    return result
