"""Meters with communication addresses behind a simulated concentrator, for live-metering tests."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering.dlt645.simulator import MeterSimulator, SimMeter
from tests.factories import Person, load_people


def address(i: int) -> str:
    return f"{i:012d}"


def load_meters(db: Database, n: int, *, registers: str = "total") -> list[str]:
    """Customers C001… with meters MC001… whose comm_address is 000000000001…"""
    people = [Person(f"C{i:03d}", registers=registers) for i in range(1, n + 1)]
    load_people(db, people)
    with db.engine.begin() as conn:
        for i in range(1, n + 1):
            conn.execute(text("UPDATE meters SET comm_address = :a WHERE meter_id = :m"),
                         {"a": address(i), "m": f"MC{i:03d}"})
    return [f"MC{i:03d}" for i in range(1, n + 1)]


@pytest.fixture
def sim() -> Iterator[MeterSimulator]:
    meters = [SimMeter(address(i), total=Decimal(f"{1000 * i}.25"),
                       tou=(Decimal(f"{100 * i}.00"), Decimal(f"{300 * i}.00"), Decimal(f"{400 * i}.00"),
                            Decimal(f"{200 * i}.25")))
              for i in range(1, 6)]
    with MeterSimulator(meters) as s:
        yield s
