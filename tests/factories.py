"""Small, explicit populations for database tests (the synthetic utility is for scale)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

import polars as pl
from sqlalchemy import Engine

from dianfei.core.clock import BUSINESS_TZ, Period
from dianfei.core.crypto import PiiCipher
from dianfei.customers.service import load_population
from dianfei.db.engine import Database
from dianfei.metering.service import store_reads


@dataclass
class Person:
    customer_id: str
    tariff_id: str = "cn-zj-residential"
    customer_class: str = "residential"
    low_income: bool = False
    multiplier: int = 1
    digits: int = 6
    registers: str = "total"
    capacity_kva: int | None = None  # 0.01 kVA
    demand_basis: str | None = None
    opened_on: date = date(2020, 1, 1)
    name: str | None = None


def month_end(period: Period) -> datetime:
    """The monthly frozen read instant of a period: 00:00 on the 1st of the next month."""
    return datetime.combine(period.end_date, time(0), tzinfo=BUSINESS_TZ).astimezone(UTC)


def load_people(db: Database, people: list[Person]) -> None:
    customers = pl.DataFrame([{
        "customer_id": p.customer_id, "name": p.name or f"用户{p.customer_id}",
        "customer_class": p.customer_class, "region_id": "R1", "station_id": "S1",
        "collector_id": "K1", "address": "测试路1号", "phone": "13800138000",
        "id_number": None, "tariff_id": p.tariff_id, "low_income": p.low_income,
        "protected": False, "payment_mode": "postpaid", "opened_on": p.opened_on,
        "capacity_kva": p.capacity_kva, "demand_basis": p.demand_basis,
    } for p in people], schema_overrides={"id_number": pl.String, "capacity_kva": pl.Int64,
                                          "demand_basis": pl.String})
    meters = pl.DataFrame([{
        "meter_id": f"M{p.customer_id}", "customer_id": p.customer_id,
        "multiplier": p.multiplier, "digits": p.digits, "installed_on": p.opened_on,
        "registers": p.registers,
    } for p in people])
    with db.engine.begin() as conn:
        load_population(
            conn, PiiCipher(b"k" * 32),
            regions=pl.DataFrame({"region_id": ["R1"], "name": ["城关镇"]}),
            stations=pl.DataFrame({"station_id": ["S1"], "region_id": ["R1"], "name": ["城关供电所"]}),
            collectors=pl.DataFrame({"collector_id": ["K1"], "name": ["张三"], "station_id": ["S1"]}),
            customers=customers, meters=meters)


@dataclass
class Reads:
    rows: list[dict[str, object]] = field(default_factory=list)

    def add(self, customer_id: str, at: datetime, value: int, register: str = "total",
            source: str = "ami") -> Reads:
        self.rows.append({"meter_id": f"M{customer_id}", "read_at": at, "register": register,
                          "value": value, "source": source})
        return self

    def store(self, db: Database) -> None:
        frame = pl.DataFrame(self.rows, schema={
            "meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"), "register": pl.String,
            "value": pl.Int64, "source": pl.String})
        with db.engine.begin() as conn:
            store_reads(conn, frame)
        self.rows.clear()


def scalar(engine: Engine, sql: str, **params: object) -> object:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
