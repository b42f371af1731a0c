"""`dianfei collect run` and meter control: a missing or unusable remote switch is refused (exit 2,
the reason, nothing done) unless `--no-meter-control` says to run without it; then the meter
commands that are owed — above all a reconnection after payment — go to the field-crew worklist
instead of being skipped."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dianfei.cli.main import app
from dianfei.collections.service import events_json, run_day, tasks_json
from dianfei.collections.suspension import FieldCrew
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_collections_e2e import at, run, setup
from tests.factories import scalar

PAID = at(date(2026, 3, 20), 15)
NEXT = date(2026, 3, 21)  # the run after the payment: a reconnection is owed


def _pay_all(db: Database, cid: str) -> None:
    """The customer pays everything through a channel."""
    with db.session() as s:
        owed = ledger.balance(s.connection(), cid)
        payments.post_channel_payment(s, ChannelPayment("alipay", f"T-{cid}", owed, PAID,
                                                        account_id=cid),
                                      clock=FixedClock(PAID), source="callback")


@pytest.fixture
def owed_reconnection(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    """A's remote meter was tripped for arrears on 2026-03-20 and A paid everything that
    afternoon: the next run owes A a reconnection."""
    setup(db, {"A": {}})
    switch = FakeSwitch()
    run(db, date(2026, 1, 18), date(2026, 3, 20), switch, FakeNotifier())
    assert switch.calls == [("trip", "MA")]
    _pay_all(db, "A")
    for k in [k for k in os.environ if k.startswith("DIANFEI_DLT645_")]:
        monkeypatch.delenv(k)
    monkeypatch.delenv("DIANFEI_CONFIG", raising=False)
    monkeypatch.setenv("DIANFEI_NOW", at(NEXT).isoformat())
    return db


def _collect(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["collect", "run", "--date", NEXT.isoformat(), *args])
    return res.exit_code, res.stdout, res.stderr


#: (environment, config file, what the refusal says)
BROKEN: list[tuple[dict[str, str], str | None, str]] = [
    ({}, None, "meter control is not configured"),
    ({"DIANFEI_DLT645_HOST": "10.20.0.15"}, None, "host '10.20.0.15' is set but no port"),
    ({"DIANFEI_DLT645_PORT": "8899"}, None, "port 8899 is set but no host"),
    ({}, '[metering.dlt645]\nhost = "10.20.0.15"\nport = 8899\npassword = "not-hex"\n', "password"),
    ({}, '[metering.dlt645]\nhost = "10.20.0.15"\nport = "eighty"\n', "[metering.dlt645] settings"),
    ({}, '[metering.dlt645]\nhost = "10.20.0.15"\nport = 70000\n', "not a TCP port"),
]


def test_collect_run_refuses_without_usable_meter_control(
        owed_reconnection: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    db = owed_reconnection
    before = events_json(db, "A")
    for i, (env, config, says) in enumerate(BROKEN):
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            if config is not None:
                (tmp_path / f"dianfei{i}.toml").write_text(config, encoding="utf-8")
                m.setenv("DIANFEI_CONFIG", str(tmp_path / f"dianfei{i}.toml"))
            code, out, err = _collect("--json")
        assert code == 2 and out == "", (says, out)
        assert err.startswith("error: ") and says in err and "--no-meter-control" in err, err
        # nothing was done: no collections day, no reconnection ordered, no task
        assert events_json(db, "A") == before
        assert scalar(db.engine, "SELECT count(*) FROM collection_runs WHERE day = :d", d=NEXT) == 0
        assert tasks_json(db) == []


def test_no_meter_control_puts_the_owed_reconnection_on_the_field_worklist(
        owed_reconnection: Database) -> None:
    db = owed_reconnection
    code, out, err = _collect("--no-meter-control", "--json")
    assert code == 0, err
    assert json.loads(out)["reconnected"] == 0  # not by a meter: by a crew, later
    [task] = tasks_json(db)
    assert (task["account"], task["kind"], task["status"]) == ("A", "field_reconnect", "open")
    # due within 24 hours of the reconnection order (the law: within 24 h of payment)
    ordered = [e for e in events_json(db, "A") if e["type"] == "reconnection_ordered"]
    assert [e["at"] for e in ordered] == [at(NEXT).isoformat()]
    assert datetime.fromisoformat(task["due_at"]) == at(NEXT) + timedelta(hours=24)
    assert task["detail"]["meter_id"] == "MA" and "no meter control" in task["detail"]["reason"]
    # the close command was not sent and says where it went
    assert scalar(db.engine, "SELECT status FROM meter_commands WHERE action = 'close'") == "cancelled"
    assert "field_reconnect" in str(scalar(db.engine, "SELECT last_error FROM meter_commands "
                                                      "WHERE action = 'close'"))
    # a re-run raises nothing new; the crew's report reconnects
    assert _collect("--no-meter-control")[0] == 0
    assert len(tasks_json(db, None)) == 1
    res = CliRunner().invoke(app, ["collect", "complete-task", str(task["task_id"]), "--by", "crew 3"])
    assert res.exit_code == 0, res.output
    last = events_json(db, "A")[-1]
    assert (last["type"], last.get("method")) == ("reconnected", "field")


def test_field_crew_switch_hands_an_owed_trip_to_the_field_crew(db: Database) -> None:
    # given A's meter is remote-capable but the run has no meter control
    setup(db, {"A": {}})
    run(db, date(2026, 1, 18), date(2026, 3, 20), FieldCrew(), FakeNotifier())  # type: ignore[arg-type]
    # then the stop ordered on 2026-03-19 went to a crew (re-checked first), and A is not
    # recorded as suspended until the crew reports it
    types = [e["type"] for e in events_json(db, "A")]
    assert "suspension_ordered" in types and "suspended" not in types
    [task] = [t for t in tasks_json(db) if t["kind"] == "field_stop"]
    assert task["account"] == "A" and task["detail"]["reason"].startswith("no meter control")
    assert scalar(db.engine, "SELECT status FROM meter_commands WHERE action = 'trip'") == "cancelled"
    # and a direct call never passes for a confirmation
    assert FieldCrew().close("MA").ok is False
    # run_day with the same switch the next day adds nothing
    run_day(db, date(2026, 3, 21), clock=FixedClock(at(date(2026, 3, 21))), switch=FieldCrew(),
            notifier=FakeNotifier())
    assert len([t for t in tasks_json(db, None) if t["kind"] == "field_stop"]) == 1
