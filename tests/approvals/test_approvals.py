"""Maker-checker on a real database: a request changes nothing until a second person with the
right role approves it; the approval executes the change through its owner's service in the same
transaction; a refusal, an expiry, a wrong role, the maker themself or a second approval change
nothing; the audit chain records each step and stays intact."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from dianfei.approvals import service
from dianfei.approvals.models import ApprovalRequest
from dianfei.approvals.service import (
    AlreadyDecided,
    AlreadyRequested,
    ApprovalForbidden,
    MakerIsChecker,
    RequestExpired,
)
from dianfei.cli.main import app
from dianfei.collections.service import amount_due, pending_fee
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from tests.approvals.helpers import actions, add_staff, books_broken, chain_intact, clock, who
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, pay, run, setup

BILL = "A-202512-1"
DAY = date(2026, 2, 2)


@pytest.fixture
def fees(db: Database) -> Database:
    """A owes a 200-yuan bill due 18 January and 3.00 yuan of late fees on it by 2 February."""
    setup(db, {"A": {}, "B": {"amount": 50_000}})
    run(db, date(2026, 1, 18), DAY, FakeSwitch(), FakeNotifier())
    add_staff(db)
    return db


def due(db: Database, account: str = "A") -> int:
    with db.engine.connect() as conn:
        return amount_due(conn, account)


def ask_waiver(db: Database, maker: str = "li", day: date = DAY) -> int:
    with db.session() as s:
        return service.request(s, kind_name="waiver", payload={"bill_id": BILL},
                               reason="hospital stay", maker=who(db, maker),
                               clock=clock(day)).request_id


def entries(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM ledger_entries")).scalar_one())


def test_a_waiver_waits_for_a_supervisor_and_then_waives(fees: Database) -> None:
    db = fees
    before = due(db)
    assert before == 20_000 + 300
    # when li asks for the waiver, nothing is waived yet
    rid = ask_waiver(db)
    req = service.show(db, rid)
    assert (req["state"], req["amount"], req["requested_by"], req["subject"]) == (
        "pending", "3.00", "li", BILL)
    assert due(db) == before
    # then wang approves: the fees are reversed in the approval's transaction
    out = service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY, 11))
    assert (out["state"], out["decided_by"], out["result"]["amount"]) == ("executed", "wang",
                                                                          "3.00")
    assert due(db) == before - 300
    assert books_broken(db) == []
    with db.engine.connect() as conn:
        waiver = conn.execute(text("SELECT requested_by, approved_by, amount FROM "
                                   "late_fee_waivers")).one()
    assert tuple(waiver) == ("li", "wang", 300)
    assert actions(db, "approval.") == ["approval.requested", "approval.approved"]
    assert actions(db)[-3:] == ["ledger.posting", "late_fee.waived", "approval.approved"]
    assert chain_intact(db)


def test_the_maker_cannot_decide_their_own_request(fees: Database) -> None:
    db = fees
    rid = ask_waiver(db, maker="wang")  # a supervisor may ask too
    with pytest.raises(MakerIsChecker, match="a second person") as exc:
        service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY))
    assert exc.value.http_status == 403 and exc.value.code == "maker_is_checker"
    with db.session() as s, pytest.raises(MakerIsChecker):
        service.reject(s, rid, checker=who(db, "wang"), reason="changed my mind", clock=clock(DAY))
    assert service.show(db, rid)["state"] == "pending"
    service.approve(db, rid, checker=who(db, "zhao"), clock=clock(DAY))
    assert service.show(db, rid)["state"] == "executed"


def test_a_role_without_the_permission_is_refused(fees: Database) -> None:
    db = fees
    rid = ask_waiver(db)
    for name in ("li", "zhou", "sun", "qian"):  # collector, clerk, auditor, cashier: no decide
        with pytest.raises(ApprovalForbidden, match="approvals:decide:waiver") as exc:
            service.approve(db, rid, checker=who(db, name), clock=clock(DAY))
        assert exc.value.http_status == 403
    with db.session() as s, pytest.raises(ApprovalForbidden, match="approvals:request:write_off"):
        service.request(s, kind_name="write_off", payload={"reference": BILL}, reason="x",
                        maker=who(db, "li"), clock=clock(DAY))
    with db.session() as s, pytest.raises(ApprovalForbidden):
        service.request(s, kind_name="waiver", payload={"bill_id": BILL}, reason="x",
                        maker=who(db, "sun"), clock=clock(DAY))
    assert service.show(db, rid)["state"] == "pending"
    assert actions(db, "approval.") == ["approval.requested"]


def test_a_request_is_decided_once(fees: Database) -> None:
    db = fees
    rid = ask_waiver(db)
    service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY))
    after = due(db)
    with pytest.raises(AlreadyDecided, match="already executed by wang") as exc:
        service.approve(db, rid, checker=who(db, "zhao"), clock=clock(DAY))
    assert exc.value.http_status == 409
    with db.session() as s, pytest.raises(AlreadyDecided):
        service.reject(s, rid, checker=who(db, "zhao"), reason="late", clock=clock(DAY))
    assert due(db) == after
    assert actions(db, "approval.") == ["approval.requested", "approval.approved"]


def test_one_pending_request_per_subject(fees: Database) -> None:
    db = fees
    rid = ask_waiver(db)
    with pytest.raises(AlreadyRequested, match=f"request {rid}, pending"):
        ask_waiver(db, maker="qian")
    with db.session() as s:
        service.reject(s, rid, checker=who(db, "wang"), reason="not eligible", clock=clock(DAY))
    assert ask_waiver(db, maker="qian") != rid  # decided: it may be asked for again


def test_a_refusal_changes_nothing(fees: Database) -> None:
    db = fees
    before, rows = due(db), entries(db)
    rid = ask_waiver(db)
    with db.session() as s, pytest.raises(ValidationError, match="needs a reason"):
        service.reject(s, rid, checker=who(db, "wang"), reason="  ", clock=clock(DAY))
    with db.session() as s:
        service.reject(s, rid, checker=who(db, "wang"), reason="no proof of the stay",
                       clock=clock(DAY))
    req = service.show(db, rid)
    assert (req["state"], req["decided_by"], req["decision_reason"], req["result"]) == (
        "rejected", "wang", "no proof of the stay", None)
    assert (due(db), entries(db)) == (before, rows)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM late_fee_waivers")).scalar_one() == 0
    assert actions(db, "approval.") == ["approval.requested", "approval.rejected"]
    assert chain_intact(db)


def test_requests_expire(fees: Database) -> None:
    db = fees
    rid = ask_waiver(db)  # waivers wait 7 days (kinds.toml)
    late = clock(DAY + timedelta(days=7), 10)
    with pytest.raises(RequestExpired, match="ask again") as exc:
        service.approve(db, rid, checker=who(db, "wang"), clock=late)
    assert exc.value.http_status == 409
    assert service.show(db, rid)["state"] == "pending"  # until the sweep closes it
    service.housekeeping(db, late)
    req = service.show(db, rid)
    assert (req["state"], req["decided_by"]) == ("expired", "system")
    with pytest.raises(AlreadyDecided, match="already expired"):
        service.approve(db, rid, checker=who(db, "wang"), clock=late)
    assert due(db) > 20_000
    assert actions(db, "approval.") == ["approval.requested", "approval.expired"]
    page = service.list_requests(db, state="expired")
    assert page["total"] == 1 and page["items"][0]["request_id"] == rid


def test_the_daily_job_expires_requests_nobody_looks_at(fees: Database) -> None:
    """Expiry no longer waits for someone to list or decide: the worker's daily
    ``approvals_housekeeping`` run (the built-in calendar's entry) closes the overdue request,
    on the audit chain as the listing did, and leaves a request still in time alone."""
    from dianfei.cli.jobs import KINDS, calendar
    from dianfei.jobs import service as jobs

    db = fees
    old = ask_waiver(db)  # waivers wait 7 days (kinds.toml)
    with db.session() as s:  # a write-off for B, which waits 14 days
        young = service.request(s, kind_name="write_off", payload={"reference": "B-202512-1"},
                                reason="bankrupt", maker=who(db, "zhou"),
                                clock=clock(DAY)).request_id
    entry = [e for e in calendar(db) if e.kind == "approvals_housekeeping"]
    assert [(e.name, e.every) for e in entry] == [("approvals-housekeeping", "day")]
    late = clock(DAY + timedelta(days=7), 10)  # past the first's expiry, before the second's
    report = jobs.work(db, entry, KINDS, clock=late, worker="w1")
    assert [r["status"] for r in report.ran] == ["done"]
    assert report.ran[0]["result"] == {"expired": 1, "raised": 0}
    # read without the listing's own housekeeping: the job did it
    with db.session() as s:
        states = {r.request_id: (r.state, r.decided_by)
                  for r in s.scalars(select(ApprovalRequest))}
    assert states == {old: ("expired", "system"), young: ("pending", None)}
    assert actions(db, "approval.") == ["approval.requested", "approval.requested",
                                        "approval.expired"]
    assert chain_intact(db)
    # the next day's run finds nothing more to do (the second waits until its own expiry)
    again = jobs.work(db, entry, KINDS, clock=clock(DAY + timedelta(days=8), 10), worker="w1")
    assert [r["result"] for r in again.ran] == [{"expired": 0, "raised": 0}]


def test_bad_requests_name_the_field_and_store_nothing(fees: Database) -> None:
    db = fees
    cases = [
        ("waiver", {"bill_id": ""}, ValidationError, "payload.bill_id"),
        ("waiver", {"bill_id": BILL, "amount": "1"}, ValidationError, "unknown key"),
        ("waiver", {"bill_id": "NO-SUCH"}, NotFoundError, "no late fees"),
        ("write_off", {"reference": "NO-SUCH"}, NotFoundError, "NO-SUCH"),
        ("bill_correction", {"bill_id": BILL, "rebill": "yes"}, ValidationError, "rebill"),
        ("tariff_change", {"tariff_id": "../etc", "toml": "x"}, ValidationError, "tariff id"),
        ("suspension", {"case_id": 1}, ValidationError, "raised by the collections rules"),
        ("refund", {}, ValidationError, "kind: one of"),
    ]
    for kind, payload, error, match in cases:
        with db.session() as s, pytest.raises(error, match=match):
            service.request(s, kind_name=kind, payload=payload, reason="r",
                            maker=who(db, "wang"), clock=clock(DAY))
    with db.session() as s, pytest.raises(ValidationError, match="needs a reason"):
        service.request(s, kind_name="waiver", payload={"bill_id": BILL}, reason=" ",
                        maker=who(db, "li"), clock=clock(DAY))
    assert service.list_requests(db)["total"] == 0
    assert actions(db, "approval.") == []


def test_an_approved_write_off_closes_the_debit(fees: Database) -> None:
    db = fees
    # B paid 100 of its 500 yuan; the rest is written off
    pay(db, "B", 10_000, at(DAY, 9), "T-B-1")
    with db.engine.connect() as conn:
        open_before = ledger.open_amount(conn, "B-202512-1")
    assert open_before == 40_000
    with db.session() as s:
        rid = service.request(s, kind_name="write_off", payload={"reference": "B-202512-1"},
                              reason="customer deceased, no estate", maker=who(db, "zhou"),
                              clock=clock(DAY)).request_id
    with db.engine.connect() as conn:
        pending = pending_fee(conn, "B-202512-1")
    assert pending > 0  # the late fee B's bill accrued since the month end goes with it
    assert service.show(db, rid)["amount"] == fmt_yuan(40_000 + pending)
    out = service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY, 11))
    assert out["result"]["amount"] == "400.00"
    assert out["result"]["total"] == fmt_yuan(40_000 + pending)
    with db.engine.connect() as conn:
        assert ledger.open_amount(conn, "B-202512-1") == 0
        rows = conn.execute(text("SELECT reference, amount, reason FROM ledger_entries "
                                 "WHERE kind = 'write_off' ORDER BY entry_id")).all()
    assert [(r[0], r[1]) for r in rows] == [
        ("B-202512-1", -40_000), (out["result"]["late_fee"]["reference"], -pending)]
    assert all("customer deceased" in r[2] for r in rows)
    assert books_broken(db) == []
    written = ledger.write_offs(db.engine)
    assert written.select("reference", "amount").rows() == [
        ("B-202512-1", 40_000), (out["result"]["late_fee"]["reference"], pending)]
    assert chain_intact(db)


def test_a_change_that_fails_leaves_the_request_pending(fees: Database) -> None:
    db = fees
    with db.session() as s:
        rid = service.request(s, kind_name="write_off", payload={"reference": "B-202512-1"},
                              reason="uncollectable", maker=who(db, "zhou"),
                              clock=clock(DAY)).request_id
    # B pays everything before the supervisor looks: nothing is left to write off
    pay(db, "B", 50_000, at(DAY, 10), "T-B-all")
    rows = entries(db)
    with pytest.raises(ConflictError, match="nothing open"):
        service.approve(db, rid, checker=who(db, "wang"), clock=clock(DAY, 11))
    req = service.show(db, rid)
    assert (req["state"], req["decided_by"]) == ("pending", None)
    assert entries(db) == rows
    assert "approval.approved" not in actions(db)
    assert chain_intact(db)


def test_an_approved_suspension_order_lets_the_stop_execute(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from dianfei.collections.rules import policy
    from dianfei.collections.service import events_json, run_day

    setup(db, {"A": {}, "B": {}})
    add_staff(db)
    rules = replace(policy(), approval_required_for=frozenset({"residential"}))
    switch, notifier = FakeSwitch(), FakeNotifier()

    def days(first: date, last: date) -> None:
        d = first
        while d <= last:
            run_day(db, d, clock=clock(d, 9), switch=switch, notifier=notifier, policy_=rules)
            d += timedelta(days=1)

    # the orders are raised on 19 March (day 60) and wait for approval over the next run
    days(date(2026, 1, 18), date(2026, 3, 20))
    assert [e["type"] for e in events_json(db) if e["type"] == "suspended"] == []
    service.housekeeping(db, clock(date(2026, 3, 20), 10))
    page = service.list_requests(db, kind_name="suspension", state="pending")
    assert sorted(r["subject"] for r in page["items"]) == ["A", "B"]
    req = next(r for r in page["items"] if r["subject"] == "A")
    assert req["requested_by"] == "system:collections"
    service.housekeeping(db, clock(date(2026, 3, 20), 10))  # raised once, not again
    assert service.list_requests(db, kind_name="suspension")["total"] == 2
    # B pays everything: its order is cancelled by the next run and its request withdrawn
    with db.engine.connect() as conn:
        owed_b = amount_due(conn, "B")
    pay(db, "B", owed_b, at(date(2026, 3, 20), 11), "T-B-all")
    days(date(2026, 3, 21), date(2026, 3, 21))
    service.housekeeping(db, clock(date(2026, 3, 21), 10))
    [b] = service.list_requests(db, kind_name="suspension", state="withdrawn")["items"]
    assert (b["subject"], b["decided_by"]) == ("B", "system")
    assert "approval.withdrawn" in actions(db)
    with pytest.raises(ApprovalForbidden):
        service.approve(db, req["request_id"], checker=who(db, "zhou"),
                        clock=clock(date(2026, 3, 20), 10))
    # the supervisor approves with the command they used before (collect approve CASE)
    monkeypatch.setenv("DIANFEI_NOW", "2026-03-21T10:00:00+08:00")
    case = req["payload"]["case_id"]
    res = CliRunner().invoke(app, ["collect", "approve", str(case), "--approver", "wang"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == f"stop case {case} approved by wang (request {req['request_id']})"
    assert service.show(db, req["request_id"])["result"]["approved_by"] == "wang"
    res = CliRunner().invoke(app, ["collect", "approve", str(case), "--approver", "zhao"])
    assert res.exit_code == 2 and "not a suspension order awaiting approval" in res.stderr
    days(date(2026, 3, 23), date(2026, 3, 23))  # the next working day's run trips the meter
    assert [e["account"] for e in events_json(db) if e["type"] == "suspended"] == ["A"]
    assert "supply.stop_approved" in actions(db)
    assert chain_intact(db)


def test_two_checkers_at_once_execute_the_change_once(fees: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    db = fees
    rid = ask_waiver(db)
    before = due(db)
    checkers = [who(db, "wang"), who(db, "zhao")]

    def decide(i: int) -> str:
        try:
            service.approve(db, rid, checker=checkers[i], clock=clock(DAY, 11))
            return "executed"
        except AlreadyDecided:
            return "409"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(decide, range(2)))
    assert outcomes == ["409", "executed"]
    assert due(db) == before - 300
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM late_fee_waivers")).scalar_one() == 1
    assert actions(db, "approval.") == ["approval.requested", "approval.approved"]
    assert chain_intact(db)
