"""A small utility for worklist tests: two stations, four collectors, customers in arrears with
open collector visits (tasks written as the ladder writes them)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.crypto import PiiCipher
from dianfei.customers.service import load_population
from dianfei.db.bulk import write_frame
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger

DAY = date(2026, 3, 2)

#: customer → (station, own collector, overdue fen, days overdue, language)
PEOPLE = {
    "C01": ("S1", "K1", 50_000, 40, None),
    "C02": ("S1", "K1", 12_000, 35, None),
    "C03": ("S1", "K2", 300_000, 90, "bo"),
    "C04": ("S1", "K2", 8_000, 31, None),
    "C05": ("S2", "K3", 20_000, 45, None),
    "C06": ("S2", "K4", 150_000, 60, "bo"),
    "C07": ("S2", "K4", 4_000, 30, None),
}


def at(day: date, hh: int = 9) -> datetime:
    return datetime.combine(day, time(hh), tzinfo=BUSINESS_TZ)


def load(db: Database, people: dict[str, tuple[str, str, int, int, str | None]] = PEOPLE) -> None:
    customers = pl.DataFrame([{
        "customer_id": cid, "name": f"用户{cid}", "customer_class": "residential",
        "region_id": "R1" if st == "S1" else "R2", "station_id": st, "collector_id": k,
        "address": "测试路1号", "phone": "13800138000", "id_number": None,
        "tariff_id": "cn-zj-residential", "low_income": False, "protected": False,
        "payment_mode": "postpaid", "opened_on": date(2020, 1, 1), "capacity_kva": None,
        "demand_basis": None} for cid, (st, k, _a, _d, _l) in people.items()],
        schema_overrides={"id_number": pl.String, "capacity_kva": pl.Int64,
                          "demand_basis": pl.String})
    meters = pl.DataFrame([{"meter_id": f"M{cid}", "customer_id": cid, "multiplier": 1,
                            "digits": 6, "installed_on": date(2020, 1, 1), "registers": "total"}
                           for cid in people])
    with db.engine.begin() as conn:
        load_population(
            conn, PiiCipher(b"k" * 32),
            regions=pl.DataFrame({"region_id": ["R1", "R2"], "name": ["城关镇", "河口镇"]}),
            stations=pl.DataFrame({"station_id": ["S1", "S2"], "region_id": ["R1", "R2"],
                                   "name": ["城关供电所", "河口供电所"]}),
            collectors=pl.DataFrame({"collector_id": ["K1", "K2", "K3", "K4"],
                                     "name": ["张三", "李四", "王五", "赵六"],
                                     "station_id": ["S1", "S1", "S2", "S2"]}),
            customers=customers, meters=meters)
        for cid, (_s, _k, _a, _d, lang) in people.items():
            if lang:
                conn.execute(text("UPDATE customers SET language = :l WHERE customer_id = :c"),
                             {"l": lang, "c": cid})
    with db.session() as s:
        for cid, (_s, _k, amount, days, _l) in people.items():
            due = DAY - timedelta(days=days)
            ledger.post_entry(s, clock=FixedClock(at(due - timedelta(days=15))), account_id=cid,
                              customer_id=cid, kind="bill", amount=amount,
                              reference=f"{cid}-B1", due_on=due)
    add_tasks(db, list(people))


def add_tasks(db: Database, accounts: list[str], kind: str = "collector_visit",
              when: date = DAY) -> None:
    now = at(when, 8).astimezone(UTC)
    frame = pl.DataFrame({
        "key": [f"test:{a}:{kind}:{when}" for a in accounts], "account_id": accounts,
        "customer_id": accounts, "kind": [kind] * len(accounts), "status": ["open"] * len(accounts),
        "created_at": [now] * len(accounts), "due_at": [now + timedelta(days=3)] * len(accounts),
        "detail": [json.dumps({"level": "test"})] * len(accounts)},
        schema={"key": pl.String, "account_id": pl.String, "customer_id": pl.String,
                "kind": pl.String, "status": pl.String, "created_at": pl.Datetime("us", "UTC"),
                "due_at": pl.Datetime("us", "UTC"), "detail": pl.String})
    with db.engine.begin() as conn:
        write_frame(conn, "collection_tasks", frame)
