"""Approved bill corrections (cancel, rebill) and tariff changes, through the same door; and a
property of the money kinds: whatever was paid, an approved write-off closes exactly what was
left open and the books stay sound."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dianfei.approvals import service
from dianfei.billing.service import run_bill_run
from dianfei.core.clock import Period
from dianfei.core.errors import ConflictError, TariffError
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.tariffs.service import PRESETS_DIR, load_catalogue
from tests.approvals.helpers import actions, add_staff, books_broken, chain_intact, clock, who
from tests.billing.test_bill_run import issue_clock
from tests.collections.test_collections_e2e import at, pay
from tests.factories import Person, Reads, load_people, month_end

JAN = Period(2026, 1)
DAY = date(2026, 2, 5)


def bills(db: Database) -> list[tuple[object, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT bill_id, status, amount, replaces_bill_id FROM bills ORDER BY bill_id"))]


@pytest.fixture
def billed(db: Database) -> Database:
    """C1 billed 100 kWh for January (53.80 yuan); the read was mistyped, 120 kWh is right."""
    load_people(db, [Person("C1")])
    Reads().add("C1", month_end(Period(2025, 12)), 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    add_staff(db)
    return db


def test_an_approved_correction_cancels_and_rebills(billed: Database) -> None:
    db = billed
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM register_reads WHERE value = 10000"))
    Reads().add("C1", month_end(JAN), 120_00, source="manual").store(db)
    with db.session() as s:
        rid = service.request(s, kind_name="bill_correction",
                              payload={"bill_id": "C1-202601-1", "rebill": True},
                              reason="meter reader mistyped the reading", maker=who(db, "zhou"),
                              clock=clock(DAY)).request_id
    assert bills(db) == [("C1-202601-1", "issued", 5380, None)]  # nothing until approved
    out = service.approve(db, rid, checker=who(db, "wang"), clock=issue_clock(JAN))
    assert (out["state"], out["result"]["cancelled"], out["result"]["rebilled"]) == (
        "executed", "C1-202601-1", 1)
    assert bills(db) == [("C1-202601-1", "cancelled", 5380, None),
                         ("C1-202601-2", "issued", 6456, "C1-202601-1")]
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []
    assert "bill.cancelled" in actions(db)
    assert actions(db, "approval.") == ["approval.requested", "approval.approved"]
    assert chain_intact(db)


def test_a_refused_correction_leaves_the_bill(billed: Database) -> None:
    db = billed
    with db.session() as s:
        rid = service.request(s, kind_name="bill_correction",
                              payload={"bill_id": "C1-202601-1"}, reason="looks high",
                              maker=who(db, "zhou"), clock=clock(DAY)).request_id
        service.reject(s, rid, checker=who(db, "zhao"), reason="the read was checked on site",
                       clock=clock(DAY))
    assert bills(db) == [("C1-202601-1", "issued", 5380, None)]
    assert "bill.cancelled" not in actions(db)


def test_bill_cancel_asks_and_a_second_person_approves(
        billed: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from dianfei.cli.main import app

    monkeypatch.setenv("DIANFEI_NOW", "2026-02-05T10:00:00+08:00")
    monkeypatch.setenv("DIANFEI_USER", "zhou")
    res = CliRunner().invoke(app, ["bill", "cancel", "C1-202601-1", "--reason", "wrong meter",
                                   "--json"])
    assert res.exit_code == 0, res.stderr
    asked = json.loads(res.stdout)
    assert asked["state"] == "pending" and "cancelled" not in asked
    assert bills(billed)[0][1] == "issued"
    res = CliRunner().invoke(app, ["approvals", "approve", str(asked["request_id"]),
                                   "--as", "wang"])
    assert res.exit_code == 0, res.stderr
    assert bills(billed) == [("C1-202601-1", "cancelled", 5380, None)]
    # the one-step form, with its approval step, as before
    res = CliRunner().invoke(app, ["bill", "cancel", "C1-202601-1", "--reason", "again",
                                   "--approved-by", "wang"])
    assert res.exit_code == 2 and "already cancelled" in res.stderr


def _renamed(tariff_id: str, name: str) -> str:
    text_ = (PRESETS_DIR / f"{tariff_id}.toml").read_text(encoding="utf-8")
    old = next(line for line in text_.splitlines() if line.startswith("name = "))
    return text_.replace(old, f'name = "{name}"')


def test_an_approved_tariff_change_is_put_in_force(db: Database, tmp_path: Path) -> None:
    own = tmp_path / "tariffs"
    shutil.copytree(PRESETS_DIR, own)
    db = Database(replace(db.settings, billing=replace(db.settings.billing, tariff_dir=own)),
                  db.engine)
    add_staff(db)
    new = _renamed("cn-zj-residential", "浙江居民 2026")
    with db.session() as s, pytest.raises(TariffError, match="customer_class"):
        service.request(s, kind_name="tariff_change", maker=who(db, "zhou"), clock=clock(DAY),
                        reason="r", payload={"tariff_id": "cn-zj-residential", "toml": new.replace(
                            'customer_class = "residential"', 'customer_class = "домохозяйство"')})
    with db.session() as s:
        rid = service.request(s, kind_name="tariff_change", reason="price notice 2026-1",
                              payload={"tariff_id": "cn-zj-residential", "toml": new},
                              maker=who(db, "zhou"), clock=clock(DAY)).request_id
    assert load_catalogue(own).tariff("cn-zj-residential").name != "浙江居民 2026"
    out = service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY))
    assert out["result"]["sha256_before"] != out["result"]["sha256_after"]
    assert (own / "cn-zj-residential.toml").read_text(encoding="utf-8") == new
    assert load_catalogue(own).tariff("cn-zj-residential").name == "浙江居民 2026"
    assert actions(db)[-2:] == ["tariff.changed", "approval.approved"]
    with db.engine.connect() as conn:
        detail = conn.execute(text("SELECT body FROM audit_records WHERE action = "
                                   "'approval.requested'")).scalar_one()
    assert "toml_sha256" in detail and "price notice" in detail and "[[versions]]" not in detail
    assert chain_intact(db)


def test_the_packaged_presets_are_never_rewritten(db: Database) -> None:
    add_staff(db)
    before = (PRESETS_DIR / "cn-zj-residential.toml").read_bytes()
    with db.session() as s:
        rid = service.request(s, kind_name="tariff_change", reason="r", maker=who(db, "zhou"),
                              payload={"tariff_id": "cn-zj-residential",
                                       "toml": _renamed("cn-zj-residential", "x")},
                              clock=clock(DAY)).request_id
    with pytest.raises(ConflictError, match="never the packaged presets"):
        service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY))
    assert (PRESETS_DIR / "cn-zj-residential.toml").read_bytes() == before
    assert service.show(db, rid)["state"] == "pending"
    assert "tariff.changed" not in actions(db)


_ACCOUNTS: dict[int, itertools.count[int]] = {}
_POOL = 150


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bill=st.integers(1, 2_000_000), paid_share=st.integers(0, 99))
def test_write_off_closes_exactly_what_is_open(db: Database, bill: int, paid_share: int) -> None:
    """Property: bill B, paid P < B (any share) → an approved write-off posts −(B − P), the
    account owes nothing, the write-off plus the payments equal the bill, the books are sound."""
    from dianfei.ledger.service import balance

    counter = _ACCOUNTS.get(id(db))
    if counter is None:  # the database outlives the examples: each takes the next account
        counter = _ACCOUNTS[id(db)] = itertools.count(1)
        add_staff(db)
        load_people(db, [Person(f"W{i:04d}") for i in range(1, _POOL + 1)])
    n = next(counter)
    assume(n <= _POOL)
    acct, ref = f"W{n:04d}", f"W{n:04d}-202512-1"
    with db.session() as s:
        ledger.post_entry(s, clock=clock(date(2026, 1, 3)), account_id=acct, customer_id=acct,
                          kind="bill", amount=bill, reference=ref, due_on=date(2026, 1, 18))
    paid = bill * paid_share // 100
    if paid:
        pay(db, acct, paid, at(date(2026, 1, 20)), f"T-{acct}")
    with db.session() as s:
        rid = service.request(s, kind_name="write_off", payload={"reference": ref},
                              reason="uncollectable", maker=who(db, "zhou"),
                              clock=clock(DAY)).request_id
    service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY))
    with db.engine.connect() as conn:
        assert balance(conn, acct) == 0
        written = conn.execute(text("SELECT amount FROM ledger_entries WHERE kind = 'write_off' "
                                    "AND reference = :r"), {"r": ref}).scalar_one()
    assert -written == bill - paid and -written + paid == bill
    assert [b for b in books_broken(db) if "issued bill" not in b] == []
