"""Remote switching of supply (远程拉合闸): the meter relay that collections opens to suspend a
customer for arrears (欠费停电) and closes again to reconnect (复电).

Collections decides *whether* to switch (notice periods, protected customers, working hours);
this module only carries the decision to the meter and says what happened. Every call returns a
:class:`CommandResult` instead of raising, because a failed trip is an expected business outcome
that the caller records and schedules again: ``retryable`` tells a line fault (timeout, damaged
reply — try later) from the meter's refusal (wrong password, command refused — a person must
look) and from bad master data (no such meter, no communication address).

The meter is addressed by the ``comm_address`` of the meters table and reached through its own
gateway (``meters.gateway_id``, see :mod:`dianfei.metering.gateways`) with that gateway's password
and operator code where set; a meter without one goes through the configured gateway,
``[metering.dlt645]`` / ``DIANFEI_DLT645_*`` (see :mod:`dianfei.metering.dlt645.client`). A trip
carries an expiry (命令有效截止时间) a few minutes ahead, so a command stuck in a gateway's queue
cannot cut a customer off hours later.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import text

from dianfei.core.clock import Clock, SystemClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.metering.dlt645 import frame as f
from dianfei.metering.dlt645.client import Dlt645Client, Dlt645Config, load_config, valid_until

ACTIONS = ("trip", "close")
T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one trip or close."""

    meter_id: str
    #: trip (跳闸, supply cut) or close (合闸, supply restored)
    action: str
    #: True only when the meter confirmed (DL/T 645 reply 0x9C)
    ok: bool
    #: what happened, in words fit for an operator's worklist
    detail: str
    #: a transient failure (no reply, damaged reply): the same command may succeed later
    retryable: bool


class RemoteSwitch(Protocol):
    def trip(self, meter_id: str) -> CommandResult: ...

    def close(self, meter_id: str) -> CommandResult: ...


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, also when the caller is itself
    inside an event loop (a web request): then it runs on a worker thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def comm_addresses(db: Database, meter_ids: list[str] | None = None) -> dict[str, str | None]:
    """meter_id → 12-digit communication address (None when the meter has none on file).

    ``meter_ids`` None: every meter that has an address and is not removed.
    """
    with db.engine.connect() as conn:
        if meter_ids is None:
            rows = conn.execute(text(
                "SELECT meter_id, comm_address FROM meters WHERE comm_address IS NOT NULL "
                "AND removed_on IS NULL ORDER BY meter_id")).all()
        else:
            rows = []
            for i in range(0, len(meter_ids), 500):
                chunk = meter_ids[i:i + 500]
                marks = ", ".join(f":m{j}" for j in range(len(chunk)))
                rows += conn.execute(text(
                    f"SELECT meter_id, comm_address FROM meters WHERE meter_id IN ({marks})"),
                    {f"m{j}": m for j, m in enumerate(chunk)}).all()
    return {str(r[0]): (str(r[1]) if r[1] else None) for r in rows}


class Dlt645RemoteSwitch:
    """Trip and close over DL/T 645-2007 through each meter's gateway (or the configured one)."""

    def __init__(self, db: Database, config: Dlt645Config, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.clock = clock

    def trip(self, meter_id: str) -> CommandResult:
        return self.command(meter_id, "trip")

    def close(self, meter_id: str) -> CommandResult:
        return self.command(meter_id, "close")

    def command(self, meter_id: str, action: str) -> CommandResult:
        if action not in ACTIONS:
            return CommandResult(meter_id, action, False, f"unknown action {action!r}", False)
        from dianfei.metering.gateways import config_for, gateways, routes

        route = routes(self.db, [meter_id]).get(meter_id)
        if route is None:
            return CommandResult(meter_id, action, False, f"meter {meter_id} not found", False)
        address = route.address
        if address is None:
            return CommandResult(meter_id, action, False,
                                 f"meter {meter_id} has no communication address (comm_address)", False)
        if route.gateway_id is not None:
            gw = gateways(self.db).get(route.gateway_id)
            if gw is None:
                return CommandResult(meter_id, action, False, f"meter {meter_id} names gateway "
                                     f"{route.gateway_id}, which is not on file", False)
            cfg = config_for(self.config, gw)
        elif not self.config.host or self.config.port is None:
            return CommandResult(meter_id, action, False, "no DL/T 645 gateway configured "
                                 "([metering.dlt645] host/port or DIANFEI_DLT645_HOST/PORT)", False)
        else:
            cfg = self.config

        async def send() -> f.Frame:
            async with Dlt645Client.from_config(cfg) as client:
                return await client.control(
                    address, action, password=f.parse_password(cfg.password),
                    operator=f.parse_operator(cfg.operator), valid_until=valid_until(cfg, self.clock))

        try:
            reply = run_sync(send)
        except f.Dlt645Error as exc:
            return CommandResult(meter_id, action, False, exc.message, exc.retryable)
        return CommandResult(meter_id, action, True,
                             f"meter {address} confirmed {action} (reply 0x{reply.control:02X})", False)


def check_meter_control(config: Dlt645Config) -> None:
    """Raise :class:`ValidationError` naming what makes meter control unusable: not configured
    (no gateway host and port) or configured by halves (a host without a port or the reverse).
    The settings' values themselves are checked by ``load_config``. A gateway that is down is
    not checked here: that is a line fault each command retries and then puts on the worklist."""
    where = "[metering.dlt645] / DIANFEI_DLT645_*"
    if not config.host and config.port is None:
        raise ValidationError("meter control is not configured: no DL/T 645 gateway (host and port "
                              "under [metering.dlt645], or DIANFEI_DLT645_HOST/PORT)", where=where)
    if not config.host:
        raise ValidationError(f"meter control is unusable: DL/T 645 gateway port {config.port} is "
                              "set but no host", where=where)
    if config.port is None:
        raise ValidationError(f"meter control is unusable: DL/T 645 gateway host {config.host!r} "
                              "is set but no port", where=where)


def checked_remote_switch(db: Database, *, clock: Clock | None = None) -> RemoteSwitch:
    """:func:`remote_switch` from the deployment's settings, refused (``ValidationError`` naming
    the problem) when those settings cannot work: invalid values (``load_config``), no gateway,
    half a gateway. For callers that must not run on without meter control (``collect run``)."""
    from dianfei.metering.gateways import gateways

    config = load_config(db.settings)
    if config.host or config.port is not None or not gateways(db):
        # gateways on file route their meters; without a default, a meter routed nowhere is
        # refused per command (non-retryable, on the worklist) rather than the whole run
        check_meter_control(config)
    return remote_switch(db, config=config, clock=clock)


def remote_switch(db: Database, *, config: Dlt645Config | None = None,
                  clock: Clock | None = None) -> RemoteSwitch:
    """The remote switch for this deployment: DL/T 645 over TCP, settings from the database's
    configuration unless ``config`` is given (tests pass the simulator's host and port)."""
    return Dlt645RemoteSwitch(db, config or load_config(db.settings), clock or SystemClock())
