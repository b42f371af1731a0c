"""Per-meter routing (采集通道): which gateway or concentrator (集中器 / 串口服务器) reaches a meter.

Gateways are data (``meter_gateways``: host, port, protocol and, where DL/T 645 needs them, the
password and operator code of the meters behind it); a meter names its gateway in
``meters.gateway_id``. A meter without one is reached through the configured gateway
(``[metering.dlt645]`` / ``DIANFEI_DLT645_*``), so a deployment with one gateway keeps working
unchanged. The configured gateway is called ``default`` in reports, and that id is reserved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from dianfei.audit import service as audit
from dianfei.core.clock import Clock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.frames import bind_params
from dianfei.db.lists import rows_in
from dianfei.metering.dlt645 import frame as f
from dianfei.metering.models import GATEWAY_PROTOCOLS

if TYPE_CHECKING:
    from dianfei.db.engine import Database
    from dianfei.metering.dlt645.client import Dlt645Config

#: the name of the configured gateway in reports; no gateway on file may take it
DEFAULT = "default"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$")


@dataclass(frozen=True)
class Gateway:
    gateway_id: str
    host: str
    port: int
    protocol: str = "dlt645"
    password: str | None = None
    operator: str | None = None

    def to_json(self) -> dict[str, Any]:
        # the password is a credential: reports say whether one is set, never what it is
        return {"gateway": self.gateway_id, "host": self.host, "port": self.port,
                "protocol": self.protocol, "password_set": self.password is not None,
                "operator": self.operator}


@dataclass(frozen=True)
class Route:
    """How to reach one meter: its address and its gateway (None: the configured default)."""

    meter_id: str
    address: str | None
    gateway_id: str | None


def check_gateway(gw: Gateway) -> None:
    """Refuse a gateway that cannot work, naming the field and the value."""
    if not _ID.match(gw.gateway_id):
        raise ValidationError(f"gateway id {gw.gateway_id!r} must be 1–32 letters, digits or _ . : -")
    if gw.gateway_id == DEFAULT:
        raise ValidationError(f"gateway id {DEFAULT!r} is reserved for the configured gateway "
                              "([metering.dlt645] host/port)")
    if not gw.host.strip():
        raise ValidationError(f"gateway {gw.gateway_id}: host must not be empty")
    if not 0 < gw.port < 65536:
        raise ValidationError(f"gateway {gw.gateway_id}: port {gw.port} is not a TCP port")
    if gw.protocol not in GATEWAY_PROTOCOLS:
        raise ValidationError(f"gateway {gw.gateway_id}: protocol {gw.protocol!r} is not supported "
                              f"(known: {', '.join(GATEWAY_PROTOCOLS)})")
    try:
        if gw.password is not None:
            f.parse_password(gw.password)
        if gw.operator is not None:
            f.parse_operator(gw.operator)
    except f.FrameError as exc:
        raise ValidationError(f"gateway {gw.gateway_id}: {exc.message}") from None


def _row(r: Any) -> Gateway:
    return Gateway(str(r[0]), str(r[1]), int(r[2]), str(r[3]), r[4], r[5])


def add_gateway(db: Database, clock: Clock, gw: Gateway) -> Gateway:
    """Put a gateway on file. The same gateway again is stored once (a retried request); the
    same id with other settings is refused — change a gateway by a new id and reassigning."""
    check_gateway(gw)
    with db.engine.begin() as conn:
        old = conn.execute(text("SELECT gateway_id, host, port, protocol, password, operator "
                                "FROM meter_gateways WHERE gateway_id = :g"),
                           {"g": gw.gateway_id}).first()
        if old is not None:
            if _row(old) == gw:
                return gw
            raise ConflictError(f"gateway {gw.gateway_id} is on file with other settings "
                                f"({old[1]}:{old[2]}); use a new id and reassign its meters")
        # where trip/close commands go is a change to supply: on the audit chain
        audit.record(conn, "meters.gateway_added", gw.gateway_id, gw.to_json())
        conn.execute(text("INSERT INTO meter_gateways (gateway_id, host, port, protocol, password, "
                          "operator, created_at) VALUES (:g, :h, :p, :pr, :pw, :op, :at)"),
                     bind_params(conn, {"g": gw.gateway_id, "h": gw.host, "p": gw.port,
                                        "pr": gw.protocol, "pw": gw.password, "op": gw.operator,
                                        "at": clock.now()}))
    return gw


def gateways(db: Database) -> dict[str, Gateway]:
    """Every gateway on file, by id."""
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT gateway_id, host, port, protocol, password, operator "
                                 "FROM meter_gateways ORDER BY gateway_id")).all()
    return {str(r[0]): _row(r) for r in rows}


def assign_gateway(db: Database, meter_id: str, gateway_id: str | None) -> Route:
    """Route a meter through ``gateway_id`` (None or ``default``: the configured gateway)."""
    gid = None if gateway_id in (None, DEFAULT) else gateway_id
    if gid is not None and gid not in gateways(db):
        raise NotFoundError(f"gateway {gid} is not on file (dianfei meters gateway add)")
    with db.engine.begin() as conn:
        found = conn.execute(text("SELECT comm_address FROM meters WHERE meter_id = :m"),
                             {"m": meter_id}).first()
        if found is None:
            raise NotFoundError(f"meter {meter_id} not found")
        conn.execute(text("UPDATE meters SET gateway_id = :g WHERE meter_id = :m"),
                     {"g": gid, "m": meter_id})
        audit.record(conn, "meters.gateway_assigned", meter_id, {"gateway": gateway_label(gid)})
    return Route(meter_id, found[0], gid)


def routes(db: Database, meter_ids: list[str] | None = None) -> dict[str, Route]:
    """meter_id → its route; ``meter_ids`` None: every meter with an address, not removed."""
    sql = "SELECT meter_id, comm_address, gateway_id FROM meters"
    with db.engine.connect() as conn:
        if meter_ids is None:
            rows = conn.execute(text(sql + " WHERE comm_address IS NOT NULL AND removed_on IS NULL "
                                           "ORDER BY meter_id")).all()
        else:
            rows = rows_in(conn, sql + " WHERE {member}", "meter_id", meter_ids)
    return {str(r[0]): Route(str(r[0]), str(r[1]) if r[1] else None,
                             str(r[2]) if r[2] else None) for r in rows}


def config_for(base: Dlt645Config, gw: Gateway | None) -> Dlt645Config:
    """The DL/T 645 settings to reach meters behind ``gw``: its host, port and (when set) its
    password and operator code; timeouts and retries from the configuration. None: ``base``."""
    if gw is None:
        return base
    return replace(base, host=gw.host, port=gw.port, password=gw.password or base.password,
                   operator=gw.operator or base.operator)


def gateway_label(gateway_id: str | None) -> str:
    return gateway_id or DEFAULT


def gateways_of(db: Database, meter_ids: list[str]) -> dict[str, str | None]:
    """meter_id → its gateway id (None: the configured default) for the meters on file among
    ``meter_ids``; one query, for the MQTT listener's binding check of a whole batch."""
    import polars as pl

    from dianfei.db.frames import read_frame
    from dianfei.db.lists import any_of

    with db.engine.connect() as conn:
        member, params = any_of(conn, "meter_id", "meters", sorted(set(meter_ids)))
        frame = read_frame(conn, f"SELECT meter_id, gateway_id FROM meters WHERE {member}", params,
                           schema={"meter_id": pl.String, "gateway_id": pl.String})
    return dict(zip(frame["meter_id"].to_list(), frame["gateway_id"].to_list(), strict=True))
