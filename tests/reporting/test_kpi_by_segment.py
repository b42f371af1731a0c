"""`dianfei kpi --by segment`: the period's KPIs split by each customer's risk segment at the
period's end (risk's rules, read through risk's service), adding up to the whole — on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
from tests.reporting.conftest import FEB, JAN

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.payments.service import post_payments_frame
from dianfei.reporting.kpi import DIMENSIONS, customer_segments, period_kpis

#: keys whose groups add up to the total (amounts in yuan strings, counts)
ADDITIVE = ("bills", "billed", "collected", "overdue_amount", "bills_paid_in_full",
            "bad_debt_amount", "customers", "complaints", "notices", "cutoffs", "written_off")


def _fen(text: str) -> int:
    return int(Decimal(text) * 100)


def _pay(db: Database, who: str, amount: int, day: date) -> None:
    at = datetime(day.year, day.month, day.day, 10, tzinfo=BUSINESS_TZ).astimezone(UTC)
    frame = pl.DataFrame({"channel": ["counter"], "transaction_id": [f"{who}-{day}"],
                          "account_id": [who], "amount": [amount], "paid_at": [at]},
                         schema_overrides={"amount": pl.Int64, "paid_at": pl.Datetime("us", "UTC")})
    with db.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(at), source="test")


def _due(db: Database, who: str) -> int:
    """The amount of the account's February bill."""
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT amount FROM bills WHERE period = :p AND account_id = :a"),
                                {"p": str(FEB), "a": who}).scalar_one())


def _amounts(db: Database) -> dict[str, int]:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return {str(a): int(x) for a, x in conn.execute(text(
            "SELECT account_id, amount FROM bills WHERE period = :p"), {"p": str(JAN)}).all()}


def test_kpis_by_segment_add_up_to_the_whole(billed: Database) -> None:
    """The January bills (issued 2026-02-03, due 2026-02-18): K1, K4, K5 pay before the due
    date, K2 pays after it, K3 never pays; K0 used nothing (vacant). As of February's end K2
    and K3 are occasionally late, K0 vacant, K5 — the largest user of six, in the top 0.5 % —
    strategic, K1 and K4 on time."""
    amounts = _amounts(billed)
    for who in ("K1", "K4", "K5"):
        _pay(billed, who, amounts[who], date(2026, 2, 10))
    _pay(billed, "K2", amounts["K2"], date(2026, 2, 25))
    assert "segment" in DIMENSIONS
    as_of = date(2026, 3, 25)
    total = period_kpis(billed, FEB, as_of)
    split = period_kpis(billed, FEB, as_of, by="segment")
    assert split["by"] == "segment"
    groups = {g["segment"]: g for g in split["groups"]}
    assert {k: g["customers"] for k, g in groups.items()} == {
        "vacant": 1, "strategic": 1, "on_time": 2, "occasionally_late": 2}
    # nobody paid a February bill by 2026-03-25: the group owes its two accounts' bills
    assert _fen(groups["occasionally_late"]["overdue_amount"]) == _due(billed, "K2") + _due(
        billed, "K3")
    for key in ADDITIVE:
        got = [g[key] for g in split["groups"]]
        if isinstance(total[key], str):
            assert sum(_fen(v) for v in got) == _fen(total[key]), key
        else:
            assert sum(got) == total[key], key
    for bucket in total["aging"]:
        assert sum(_fen(g["aging"][bucket]) for g in split["groups"]) == _fen(
            total["aging"][bucket]), bucket
    # the split's own figures agree with a split by a customer dimension of the same bills
    by_class = period_kpis(billed, FEB, as_of, by="customer_class")["groups"]
    assert sum(_fen(g["billed"]) for g in by_class) == _fen(total["billed"])


def test_the_segment_is_the_one_at_the_period_end(billed: Database) -> None:
    """Nothing was due by the end of January: everyone who used something is on time then."""
    split = period_kpis(billed, JAN, date(2026, 3, 1), by="segment")
    assert {g["segment"]: g["customers"] for g in split["groups"]} == {"on_time": 6}


def test_a_customer_with_accounts_in_two_segments_takes_the_first_in_the_rules_order() -> None:
    customers = pl.DataFrame({"customer_id": ["A", "B", "C"], "region_id": ["R", "R", "R"]})
    segments = pl.DataFrame({"customer_id": ["A", "A", "B"],
                             "segment": ["on_time", "chronic", "occasionally_late"]})
    got = customer_segments(customers, segments).sort("customer_id")
    assert got["segment"].to_list() == ["chronic", "occasionally_late", None]


def test_cli_and_api_accept_segment(billed: Database) -> None:
    from typer.testing import CliRunner

    from dianfei.cli.main import app

    res = CliRunner().invoke(app, ["kpi", "--period", "2026-01", "--as-of", "2026-03-01",
                                   "--by", "segment", "--json"])
    assert res.exit_code == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["by"] == "segment" and [g["segment"] for g in body["groups"]] == ["on_time"]
    bad = CliRunner().invoke(app, ["kpi", "--period", "2026-01", "--by", "mood"])
    assert bad.exit_code == 2 and "channel, segment" in bad.stderr
