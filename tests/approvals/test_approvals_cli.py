"""``dianfei approvals list|show|request|approve|reject`` and the older commands that now ask
(``waiver``, ``bill cancel``, ``collect approve``): the acting user is ``--as`` or DIANFEI_USER,
refusals are one line on stderr (exit 2), and `audit verify` stays intact."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.collections.service import amount_due
from dianfei.db.engine import Database
from tests.approvals.helpers import actions, add_staff
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import run, setup

BILL = "A-202512-1"


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def fees(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    setup(db, {"A": {}})
    run(db, date(2026, 1, 18), date(2026, 2, 2), FakeSwitch(), FakeNotifier())
    add_staff(db)
    monkeypatch.setenv("DIANFEI_NOW", "2026-02-02T10:00:00+08:00")
    monkeypatch.delenv("DIANFEI_USER", raising=False)
    return db


def due(db: Database) -> int:
    with db.engine.connect() as conn:
        return amount_due(conn, "A")


def test_request_list_show_approve(fees: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db = fees
    before = due(db)
    code, _, err = cli("approvals", "request", "waiver", "--payload", f'{{"bill_id": "{BILL}"}}',
                       "--reason", "hospital stay")
    assert code == 2 and "--as NAME or DIANFEI_USER" in err
    code, out, err = cli("approvals", "request", "waiver", "--payload", f'{{"bill_id": "{BILL}"}}',
                         "--reason", "hospital stay", "--as", "li", "--json")
    assert code == 0, err
    req = json.loads(out)
    assert (req["state"], req["amount"], req["requested_by"]) == ("pending", "3.00", "li")
    rid = str(req["request_id"])
    code, out, _ = cli("approvals", "list", "--state", "pending", "--json")
    assert code == 0 and [r["request_id"] for r in json.loads(out)["items"]] == [int(rid)]
    code, out, _ = cli("approvals", "show", rid)
    assert code == 0 and f"request {rid}: waiver of {BILL}, 3.00 yuan — pending" in out
    code, _, err = cli("approvals", "approve", rid, "--as", "li")
    assert code == 2 and "approvals:decide:waiver" in err
    code, _, err = cli("approvals", "approve", rid, "--as", "nobody")
    assert code == 2 and "no enabled user 'nobody'" in err
    assert due(db) == before
    monkeypatch.setenv("DIANFEI_USER", "wang")
    code, out, err = cli("approvals", "approve", rid, "--json")
    assert code == 0, err
    assert (json.loads(out)["state"], json.loads(out)["decided_by"]) == ("executed", "wang")
    assert due(db) == before - 300
    code, _, err = cli("approvals", "approve", rid, "--as", "zhao")
    assert code == 2 and "already executed by wang" in err
    code, out, _ = cli("audit", "verify")
    assert code == 0, out


def test_reject_needs_a_reason_and_changes_nothing(fees: Database) -> None:
    db = fees
    before = due(db)
    code, out, _ = cli("waiver", "--bill", BILL, "--reason", "hospital stay",
                       "--requested-by", "li", "--json")
    assert code == 0
    w = json.loads(out)
    assert (w["state"], w["bill_id"], w["amount"]) == ("pending", BILL, "3.00")
    code, out, err = cli("approvals", "reject", str(w["request_id"]), "--reason",
                         "no proof", "--as", "zhao")
    assert code == 0, err
    assert "rejected by zhao" in out and "reason: no proof" in out
    assert due(db) == before
    assert actions(db, "approval.") == ["approval.requested", "approval.rejected"]


def test_the_waiver_command_with_its_approval_step(fees: Database) -> None:
    db = fees
    before = due(db)
    code, _, err = cli("waiver", "--bill", BILL, "--reason", "hospital stay",
                       "--requested-by", "wang", "--approved-by", "wang")
    assert code == 2 and "a second person must decide it" in err
    # the request made before the refusal stays pending; the second person approves it
    code, out, _ = cli("approvals", "list", "--kind", "waiver", "--json")
    [pending] = json.loads(out)["items"]
    assert pending["state"] == "pending" and due(db) == before
    code, out, err = cli("approvals", "approve", str(pending["request_id"]), "--as", "zhao")
    assert code == 0, err
    assert due(db) == before - 300


def test_the_old_one_step_waiver_still_works(fees: Database) -> None:
    db = fees
    before = due(db)
    code, out, err = cli("waiver", "--bill", BILL, "--reason", "hospital stay",
                         "--requested-by", "li", "--approved-by", "wang")
    assert code == 0, err
    assert out.startswith("waived 3.00 yuan on A-202512-1 (request ")
    assert due(db) == before - 300
    assert actions(db, "approval.") == ["approval.requested", "approval.approved"]


def test_a_bad_payload_is_named(fees: Database) -> None:
    code, _, err = cli("approvals", "request", "waiver", "--payload", "{bill", "--reason", "r",
                       "--as", "li")
    assert code == 2 and "--payload: not JSON" in err
    code, _, err = cli("approvals", "request", "write_off", "--payload", '{"reference": 5}',
                       "--reason", "r", "--as", "zhou")
    assert code == 2 and "payload.reference: required text" in err
    code, _, err = cli("approvals", "list", "--state", "done")
    assert code == 2 and "state: one of pending" in err
