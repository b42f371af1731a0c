"""Meter time (表计时钟): broadcast time sync per gateway and the clock drift found in reads.

A meter keeps its own clock for its time-of-use switching and its daily and monthly frozen
reads (日冻结/月冻结): a clock minutes off bills energy in the wrong band and freezes at the
wrong instant, and a trip whose expiry (命令有效截止时间) looks past to the meter is refused.

* :func:`sync_time` sends DL/T 645-2007 broadcast time sync (control 0x08, address
  99 99 99 99 99 99, data ``ssmmhhDDMMYY`` in Beijing time) through each gateway. Meters never
  answer a broadcast, so what is known is that the gateway took the frame; whether the clocks
  moved shows in the next clock check. Meters take a broadcast only when it moves their clock by
  at most 5 minutes, and a sync near midnight would disturb the daily frozen reads, so none is
  sent within ``MIDNIGHT_GUARD`` of 00:00.
* :func:`store_clock_checks` keeps what a poll with ``check_clock`` read (DI 04000101 date,
  04000102 time) against the receive time; :func:`drift` lists the meters whose latest check is
  beyond the tolerance (``[metering.dlt645] clock_tolerance_s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from dianfei.core.clock import BUSINESS_TZ, Clock
from dianfei.core.errors import DianfeiError, NotFoundError, ValidationError
from dianfei.db.bulk import write_frame
from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.metering.dlt645.client import Dlt645Config

#: no broadcast time sync this close to local midnight (the daily freeze, 日冻结)
MIDNIGHT_GUARD = timedelta(minutes=5)


@dataclass(frozen=True)
class TimeSyncResult:
    gateway: str
    host: str | None
    port: int | None
    #: the Beijing time the frame carried
    sent_time: datetime | None
    #: the bytes written, hex (for the operator and the vendor's log)
    frame: str | None
    ok: bool
    error: str | None = None
    retryable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "host": self.host, "port": self.port,
                "sent_time": self.sent_time.isoformat() if self.sent_time else None,
                "frame": self.frame, "ok": self.ok, "error": self.error,
                "retryable": self.retryable}


def meter_local_time(clock: Clock) -> datetime:
    """Now as a meter keeps it: Beijing wall time, whole seconds, naive."""
    return clock.now().astimezone(BUSINESS_TZ).replace(tzinfo=None, microsecond=0)


def check_sync_window(local: datetime) -> None:
    since = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second)
    if since < MIDNIGHT_GUARD or timedelta(days=1) - since < MIDNIGHT_GUARD:
        raise ValidationError(f"no broadcast time sync within {MIDNIGHT_GUARD.seconds // 60} minutes "
                              f"of midnight (it is {local:%H:%M:%S} Beijing time): it would "
                              "disturb the meters' daily frozen reads (日冻结); try again later")


def sync_time(db: Database, cfg: Dlt645Config, clock: Clock, *,
              gateway_id: str | None = None) -> list[TimeSyncResult]:
    """Broadcast time sync through ``gateway_id`` (``default``: the configured gateway), or
    through every gateway on file and the configured one when there is one. One result per
    gateway; a gateway that cannot be reached is a result (``ok`` false), not an exception."""
    from dianfei.audit import service as audit
    from dianfei.metering.control import run_sync
    from dianfei.metering.dlt645.client import Dlt645Client
    from dianfei.metering.gateways import DEFAULT, config_for, gateways

    on_file = gateways(db)
    targets: list[tuple[str, Dlt645Config]] = []
    if gateway_id is not None and gateway_id != DEFAULT:
        if gateway_id not in on_file:
            raise NotFoundError(f"gateway {gateway_id} is not on file (dianfei meters gateway list)")
        targets.append((gateway_id, config_for(cfg, on_file[gateway_id])))
    else:
        if cfg.host and cfg.port is not None:
            targets.append((DEFAULT, cfg))
        elif gateway_id == DEFAULT or not on_file:
            cfg.gateway()  # raises: no configured gateway, and none asked for on file
        if gateway_id is None:
            targets += [(g, config_for(cfg, gw)) for g, gw in on_file.items()]
    check_sync_window(meter_local_time(clock))
    results = []
    for name, c in targets:
        # the time is taken per gateway, just before sending: a slow gateway does not delay
        # the time the next one sends
        local = meter_local_time(clock)

        async def send(c: Dlt645Config = c, local: datetime = local) -> bytes:
            host, port = c.gateway()
            client = Dlt645Client(host, port, timeout_s=c.timeout_s, retries=c.retries,
                                  preamble=c.preamble)
            return await client.broadcast_time(local)

        try:
            raw = run_sync(send)
            results.append(TimeSyncResult(name, c.host, c.port, local, raw.hex(" ").upper(), True))
        except DianfeiError as exc:
            results.append(TimeSyncResult(name, c.host, c.port, local, None, False, exc.message,
                                          exc.retryable))
    with db.engine.begin() as conn:
        audit.record(conn, "meters.timesync", ",".join(r.gateway for r in results),
                     {"gateways": [r.to_json() for r in results]})
    return results


def store_clock_checks(db: Database, checks: Sequence[tuple[str, datetime, datetime, str]]) -> int:
    """Store (meter_id, received_at UTC, meter local time naive, gateway) clock readings; the
    drift is meter − received, whole seconds."""
    rows = []
    for meter_id, received, local, gateway in checks:
        meter_time = local.replace(tzinfo=BUSINESS_TZ)
        rows.append({"meter_id": meter_id, "received_at": received, "meter_time": meter_time,
                     "drift_s": round((meter_time - received).total_seconds()),
                     "gateway_id": gateway})
    frame = pl.DataFrame(rows, schema={"meter_id": pl.String, "received_at": pl.Datetime("us", "UTC"),
                                       "meter_time": pl.Datetime("us", "UTC"), "drift_s": pl.Int32,
                                       "gateway_id": pl.String})
    with db.engine.begin() as conn:
        return write_frame(conn, "meter_clock_checks", frame)


def drift(db: Database, tolerance_s: int) -> pl.DataFrame:
    """Meters whose latest clock check is more than ``tolerance_s`` seconds off: meter_id,
    gateway, received_at, meter_time, drift_s — furthest off first."""
    if tolerance_s < 0:
        raise ValidationError(f"clock tolerance must be ≥ 0 seconds, got {tolerance_s}")
    checks = read_frame(db.engine, "SELECT meter_id, gateway_id, received_at, meter_time, drift_s, id "
                        "FROM meter_clock_checks", instants=("received_at", "meter_time"),
                        schema={"meter_id": pl.String, "gateway_id": pl.String, "drift_s": pl.Int64,
                                "id": pl.Int64})
    latest = checks.sort("meter_id", "received_at", "id").group_by("meter_id").last()
    return (latest.filter(pl.col("drift_s").abs() > tolerance_s)
            .sort(pl.col("drift_s").abs(), "meter_id", descending=[True, False])
            .select("meter_id", pl.col("gateway_id").alias("gateway"), "received_at", "meter_time",
                    "drift_s"))
